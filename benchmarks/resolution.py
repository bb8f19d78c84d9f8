"""The default (``tokens``) at a finer patch grid: the ViT-Ti at 320 or 448 px (its position embedding resampled by
timm), or at 224 px on 2 x 2 tiles of a 448-px image (``--tiles 2``), against 224 px, on real MVTec-layout categories
(issue 24: small defects on tire and screw).

Each setting but 448-tiles keeps the tokens per batch near 224 px x 16 images (3,136) and the default's 600 steps; a
step still costs more at a finer grid (attention grows with the square of the tokens), and so do the cached views and
scoring.

    python benchmarks/resolution.py --data ../shared/data/mvtec --categories screw,tire \
        --settings 320 --seeds 0 --runs RUNS --out benchmarks/resolution

Each setting x seed is one ``anovit benchmark`` folder under RUNS (finished runs are kept, so the script resumes).
Writes OUT/TABLE.json and OUT/TABLE.md (``--table``, default resolution): image / pixel AUROC (AUPRO), the wall
minutes of training (reading the images, encoding the views, the steps) and the scoring seconds per category.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ablation import WEIGHTS, _num, _write_markdown  # noqa: E402
from anovit.experiments.benchmark import run_benchmark  # noqa: E402

# name -> options over the default preset: image size, the batch that keeps ~3,136 tokens per step, and the preset's
# floor of 30 epochs at 16 images a batch (epochs x batch = 480) beside its 600 steps
SETTINGS: dict[str, dict[str, int]] = {
    "224": {},
    "320": dict(image_size=320, batch_size=8, epochs=15, min_steps=600),
    "448": dict(image_size=448, batch_size=4, epochs=8, min_steps=600),
    "448-v4": dict(image_size=448, batch_size=4, epochs=8, min_steps=600, token_views=4),
    # the ViT-Ti at its own 224 px on 2 x 2 tiles of the 448-px image (--tiles 2): 4x the tokens of a step and a view
    "448-tiles": dict(image_size=448, tiles=2),
}


def _minutes(row: dict) -> str:
    """'training minutes / scoring seconds' of a row; '-' for the minutes of a run this script did not time."""
    minutes = "-" if row["train_minutes"] is None else f"{row['train_minutes']:.1f}"
    return f"{minutes} / {row['score_seconds']:.0f} s"


def _metrics(run: Path) -> dict:
    path = run / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def main(
    settings: dict[str, dict] = SETTINGS,
    doc: str | None = __doc__,
    default_settings: str = "224,320,448",
    out: str = "benchmarks/resolution",
    table: str = "resolution",
) -> None:
    """Run the settings asked for (from ``settings``: name -> options of :func:`run_benchmark` over the default) and
    write their table; the defaults are this script's, which other scripts of settings reuse with their own."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="an MVTec-layout root")
    ap.add_argument("--categories", default="screw,tire,bottle")
    ap.add_argument("--settings", default=default_settings, help=f"comma-separated, from {','.join(settings)}")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--runs", type=Path, required=True, help="where the benchmark folders go (weights: not the repo)")
    ap.add_argument("--out", type=Path, default=Path(out), help="where the table goes")
    ap.add_argument("--table", default=table, help="the table's name: OUT/TABLE.md and OUT/TABLE.json")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    categories = args.categories.split(",")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.settings.split(","):
            bench = args.runs / f"{name}-seed{seed}"
            for category in categories:
                run = bench / "runs" / category / "anovit"
                timed = run / "wall_seconds.json"  # training + scoring, measured when the run was made
                made_here = not (run / "metrics.json").is_file()  # a finished run is skipped: its time is not ours
                start = time.perf_counter()
                run_benchmark(
                    "mvtec",
                    args.data,
                    ["anovit"],
                    bench,
                    categories=[category],
                    seed=seed,
                    encoder_weights=WEIGHTS,
                    **settings[name],
                )
                if made_here:
                    timed.write_text(json.dumps(time.perf_counter() - start))
                m = _metrics(run)
                wall = json.loads(timed.read_text()) if timed.is_file() else None  # None: made elsewhere, untimed
                rows.append(
                    dict(
                        setting=name,
                        seed=seed,
                        category=category,
                        image_auroc=m.get("image_auroc"),
                        pixel_auroc=m.get("pixel_auroc"),
                        aupro=m.get("aupro"),
                        train_minutes=None if wall is None else (wall - m.get("seconds", 0)) / 60,
                        score_seconds=m.get("seconds"),
                    )
                )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.table}.json").write_text(json.dumps(rows, indent=1))
    head = ["setting", "seed", *categories, "training minutes (reading, encoding, steps) / scoring seconds"]
    body = []
    for seed in sorted({r["seed"] for r in rows}):
        for name in dict.fromkeys(r["setting"] for r in rows):
            got = {r["category"]: r for r in rows if r["setting"] == name and r["seed"] == seed}
            cells = [
                f"{_num(got[c]['image_auroc'])} / {_num(got[c]['pixel_auroc'])} ({_num(got[c]['aupro'])})"
                for c in categories
            ]
            cells += [", ".join(_minutes(got[c]) for c in categories)]
            mean = sum(got[c]["image_auroc"] for c in categories) / len(categories)
            body.append([name, seed, *cells, f"{mean:.3f}"])
    _write_markdown(args.out / f"{args.table}.md", [*head, "mean image AUROC"], body)
    print((args.out / f"{args.table}.md").read_text())


if __name__ == "__main__":
    main()
