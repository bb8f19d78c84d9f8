"""Quality against training minutes for a preset (the default's by default): ``anovit train --epochs N`` then
``anovit test`` on real MVTec-layout categories, for a few epoch counts (``tiny``'s own is 30 epochs, at least 300
steps; ``tokens``' at least 600 steps).

Each point is a whole `anovit train` process (start-up, training, score scales and thresholds),
timed on the wall clock. Writes OUT/train_minutes.md and OUT/train_minutes.json (rows kept between calls, so an
interrupted sweep goes on where it stopped):

    export ANOVIT_ENCODER_WEIGHTS=../shared/weights/vit_tiny_patch16_224.safetensors
    python benchmarks/train_minutes.py --preset tiny --categories bottle,tire --epochs 3,6,9,15
    python benchmarks/train_minutes.py --preset tokens --categories bottle,tire --epochs 15,30

``--schedule cosine --lr 4e-4`` trains with a warm-up and a cosine decay to 0 at the last epoch (``anovit train
--lr-schedule``) instead of the preset's own schedule; the table keeps one row per (preset, set, epochs, seed,
schedule).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ablation import _num, _write_markdown  # noqa: E402
from anovit.config import LR_SCHEDULES  # noqa: E402
from anovit.presets import DEFAULT_PRESET, PRESETS  # noqa: E402
from anovit.runtime.precision import cpu_name  # noqa: E402


def anovit(*args: str) -> float:
    """Run ``anovit ARGS`` (quiet), failing loudly; its wall seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "anovit", "--quiet", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"anovit {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mvtec"))
    ap.add_argument("--categories", default="bottle,tire")
    ap.add_argument("--epochs", default="3,6,9,15")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET)
    ap.add_argument("--schedule", choices=LR_SCHEDULES, help="the learning-rate schedule (default: the preset's)")
    ap.add_argument("--lr", type=float, help="the peak learning rate (default: the preset's)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/train_minutes"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "train_minutes.json"
    rows = json.loads(results.read_text()) if results.is_file() else []
    for r in rows:  # rows from before the schedule and the preset were choices: tiny's constant rate
        r.setdefault("schedule", "constant")
        r.setdefault("lr", None)
        r.setdefault("preset", "tiny")
    schedule = args.schedule or PRESETS[args.preset].train.lr_schedule
    done = {(r["preset"], r["set"], r["epochs"], r["seed"], r["schedule"], r["lr"]) for r in rows}
    extra = ["--preset", args.preset, "--lr-schedule", schedule] + (["--lr", str(args.lr)] if args.lr else [])
    for category in args.categories.split(","):
        for epochs in (int(e) for e in args.epochs.split(",")):
            if (args.preset, category, epochs, args.seed, schedule, args.lr) in done:
                continue
            tag = "" if schedule == "constant" and not args.lr else f"-{schedule}{args.lr or ''}"
            prefix = "" if args.preset == "tiny" else f"{args.preset}-"  # tiny's runs were named before the option
            run = args.out / "runs" / f"{prefix}{category}-e{epochs}-s{args.seed}{tag}"
            data = ["--data", str(args.data), "--category", category]
            seconds = anovit(
                "train", *data, "--model", "anovit", "--epochs", str(epochs), "--seed", str(args.seed),
                "--out", str(run), "--force", *extra,
            )  # fmt: skip
            anovit("test", "--run", str(run), *data)
            metrics = json.loads((run / "metrics.json").read_text())
            rows.append(
                {
                    "preset": args.preset,
                    "set": category,
                    "epochs": epochs,
                    "seed": args.seed,
                    "schedule": schedule,
                    "lr": args.lr,
                    "train_minutes": round(seconds / 60, 2),
                    "image_auroc": metrics["image_auroc"],
                    "pixel_auroc": metrics["pixel_auroc"],
                }
            )
            results.write_text(json.dumps(rows, indent=1))
            quality = f"{_num(metrics['image_auroc'])} / {_num(metrics['pixel_auroc'])}"
            print(f"{args.preset} {category} {epochs} epochs ({schedule}): {seconds / 60:.1f} min, {quality}")
    body = [
        [
            r["preset"],
            r["set"],
            str(r["epochs"]),
            str(r["seed"]),
            r["schedule"] + (f", peak {r['lr']:g}" if r["lr"] else ""),
            f"{r['train_minutes']:.1f}",
            _num(r["image_auroc"]),
            _num(r["pixel_auroc"]),
        ]  # fmt: skip
        for r in sorted(rows, key=lambda r: (r["preset"], r["set"], r["schedule"], r["epochs"], r["seed"]))
    ]
    path = args.out / "train_minutes.md"
    head = ["preset", "set", "epochs", "seed", "learning rate", "train minutes", "image AUROC", "pixel AUROC"]
    _write_markdown(path, head, body)
    cpu = cpu_name()
    path.write_text(f"`anovit train --preset P --epochs N` then `anovit test`; CPU: {cpu}.\n\n" + path.read_text())
    print(f"table: {path}")


if __name__ == "__main__":
    main()
