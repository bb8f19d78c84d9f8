"""Ablation for the CPU default: objective x score x resolution x {random, pretrained ViT-Ti} (issue 10).

Each training setting is trained once per dataset; every score that the trained model supports is
then evaluated on the same model (the scales of combined scores are measured on the validation
hold-out, as ``anovit train`` does). The l2-CAE (the paper's baseline) is trained with the same
epochs and size. Rows already in the results file are skipped, so the script resumes.

    python benchmarks/ablation.py --sets mvtec:../shared/data/mvtec:bottle,synthetic \
        --settings tiny-restore,tiny-reconstruct,... --out benchmarks/ablation

Writes OUT/results.json (one row per dataset x setting x score) and OUT/ablation.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from anovit import checkpoint as ckpt  # noqa: E402
from anovit.config import RunConfig, resolve_config  # noqa: E402
from anovit.data import ImageDataset, make_synthetic_mvtec, mvtec_samples, split_train_val  # noqa: E402
from anovit.engine import evaluate, measure_scales, resolve_device  # noqa: E402
from anovit.runs import train_on  # noqa: E402

WEIGHTS = os.environ.get("ANOVIT_ENCODER_WEIGHTS", str(Path(__file__).resolve().parents[2] / "shared/weights/vit_tiny_patch16_224.safetensors"))
SYNTHETIC = ("weave", "sand", "fibres", "tiles", "capsule", "nut")

# name -> (preset, overrides for resolve_config, pretrained?)
SETTINGS: dict[str, tuple[str, dict, bool]] = {
    "small-reconstruct": ("small", dict(objective="reconstruct"), False),
    "small-restore": ("small", dict(objective="restore"), False),
    "small-inpaint": ("small", dict(objective="inpaint"), False),
    "tiny-reconstruct": ("tiny", dict(objective="reconstruct"), True),
    "tiny-restore": ("tiny", dict(objective="restore"), True),
    "tiny-inpaint": ("tiny", dict(objective="inpaint"), True),
    "tiny-restore-random": ("tiny", dict(objective="restore"), False),
    "tiny-restore-224": ("tiny", dict(objective="restore", image_size=224), True),
    "tiny-restore-floss": ("tiny", dict(objective="restore", feature_loss=0.5), True),
    "tiny-restore-floss1": ("tiny", dict(objective="restore", feature_loss=1.0), True),
    "cae": ("tiny", dict(model="cae", objective="reconstruct"), False),
}
SCORES = ("l2", "ssim", "gms", "feature", "l2+feature", "gms+feature", "l2+gms+feature")


def config_for(setting: str, epochs: int | None) -> RunConfig:
    preset, overrides, pretrained = SETTINGS[setting]
    kw = dict(overrides)
    if pretrained:
        kw["encoder_weights"] = WEIGHTS
        kw["score"] = ("l2", "gms", "feature")  # keeps the reference encoder; every score is evaluated below
    else:
        kw["score"] = ("l2",)
        if "model" not in kw:
            kw["pretrained"] = False
    return resolve_config(preset, epochs=epochs, **kw)


def datasets(spec: str, root: Path) -> list[tuple[str, Path, str]]:
    """'mvtec:ROOT:cat1+cat2' or 'synthetic' -> [(label, root, category)]."""
    out = []
    for item in spec.split(","):
        if item == "synthetic":
            data = root / "synthetic"
            if not all((data / c).is_dir() for c in SYNTHETIC):
                make_synthetic_mvtec(data, categories=SYNTHETIC, progress=True)
            out += [(f"synthetic/{c}", data, c) for c in SYNTHETIC]
        else:
            _, path, cats = item.split(":")
            out += [(f"mvtec/{c}", Path(path), c) for c in cats.split("+")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="mvtec:../shared/data/mvtec:bottle,synthetic")
    ap.add_argument("--settings", default="cae,tiny-reconstruct,tiny-restore,tiny-inpaint")
    ap.add_argument("--scores", default=",".join(SCORES))
    ap.add_argument("--epochs", type=int, help="override every setting's epochs")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/ablation"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(os.cpu_count() or 2)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    rows = json.loads(results_file.read_text()) if results_file.is_file() else []
    done = {(r["data"], r["setting"], r["score"]) for r in rows}
    dev = resolve_device("auto")
    for label, root, category in datasets(args.sets, out):
        for setting in args.settings.split(","):
            cfg = config_for(setting, args.epochs)
            scores = ["l2"] if cfg.model.name == "cae" else [s for s in args.scores.split(",") if "feature" not in s or cfg.model.reference_layers]
            todo = [s for s in scores if (label, setting, s) not in done]
            if not todo:
                continue
            run_dir = out / "runs" / label.replace("/", "_") / setting
            normal = ImageDataset(mvtec_samples(root, category, "train"), cfg.data.image_size, progress=False)
            test = ImageDataset(mvtec_samples(root, category, "test"), cfg.data.image_size, progress=False)
            if (run_dir / ckpt.WEIGHTS_FILE).is_file() and (run_dir / "train_seconds.txt").is_file():
                seconds = float((run_dir / "train_seconds.txt").read_text())
            else:
                result = train_on(cfg, normal, run_dir, progress=True, calibrate=False)
                seconds = result.seconds
                (run_dir / "train_seconds.txt").write_text(f"{seconds:.1f}")
            cfg, model = ckpt.load_trained_model(run_dir, dev)
            _, val_idx = split_train_val(len(normal), cfg.data.val_fraction, cfg.train.seed)
            val = normal.subset(val_idx)
            for score in todo:
                s = replace(cfg.score, kinds=tuple(score.split("+")), scales=())
                if len(s.kinds) > 1:
                    s = replace(s, scales=measure_scales(model, val, s, dev, cfg.train.precision))
                start = time.perf_counter()
                ev = evaluate(model, test, s, dev, cfg.train.precision, progress=False)
                row = dict(data=label, setting=setting, score=score, image_auroc=ev.image_auroc, pixel_auroc=ev.pixel_auroc,
                           size=cfg.data.image_size, epochs=cfg.train.epochs, train_seconds=round(seconds, 1),
                           test_seconds=round(time.perf_counter() - start, 1))  # fmt: skip
                rows.append(row)
                print(f"{label:20s} {setting:22s} {score:18s} image {ev.image_auroc:.3f} pixel {ev.pixel_auroc:.3f} "
                      f"train {seconds:.0f} s", flush=True)  # fmt: skip
                results_file.write_text(json.dumps(rows, indent=1))
            write_table(rows, out / "ablation.md")


def write_table(rows: list[dict], path: Path) -> None:
    lines = ["| data | setting | score | size | epochs | train s | image AUROC | pixel AUROC |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['setting']} | {r['score']} | {r['size']} | {r['epochs']} | {r['train_seconds']:.0f} | "
                     f"{r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} |")  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
