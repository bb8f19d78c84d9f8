"""The position norm (``ModelConfig.position_norm``) measured on trained runs of real MVTec-layout sets.

For each run: the raw score maps of its own validation hold-out (the split training made) and of the test set;
the image AUROC with the image score read from the raw map (the default before the norm) and from the map
standardised by the hold-out's per-pixel statistics (``anovit.scoring.position``); the pixel metrics, which read
the raw map in both. A run trained with the norm is scored with it switched off for the first column, so runs with
and without it, and several seeds, can share one table. Writes OUT/position_norm.md and OUT/position_norm.json:

    python benchmarks/position_norm.py --data ../shared/data/mvtec \\
        --runs bottle=RUN_A,tire=RUN_B,tire=RUN_C,screw=RUN_D
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ablation import _num, _write_markdown  # noqa: E402
from anovit.data import ImageDataset, mvtec_samples, split_train_val  # noqa: E402
from anovit.evaluation.evaluate import evaluate  # noqa: E402
from anovit.evaluation.metrics import image_auroc  # noqa: E402
from anovit.evaluation.position import fit_position_norm  # noqa: E402
from anovit.models.checkpoint import load_trained_model  # noqa: E402
from anovit.models.position import PositionNorm  # noqa: E402
from anovit.runtime.device import resolve_device  # noqa: E402
from anovit.runtime.precision import cpu_name, resolve_precision  # noqa: E402


def measure(run: Path, root: Path, category: str, dev: torch.device) -> dict:
    """The run's test image AUROC without and with the position norm fitted on its hold-out, and its pixel metrics.

    The norm is measured as training measures it (:func:`fit_position_norm`, replacing one the run may have); one
    test pass gives both image scores: from the normed map (``image_scores``) and from the raw one (``map_peaks``)."""
    cfg, model = load_trained_model(run, dev)
    size, score = cfg.data.image_size, cfg.score
    at = resolve_precision(cfg.train.precision, dev)
    normal = ImageDataset(mvtec_samples(root, category, "train"), size, progress=False)
    _, val_idx = split_train_val(len(normal), cfg.data.val_fraction, cfg.train.seed)
    model.position = PositionNorm(size).to(dev)
    fit_position_norm(model, normal.subset(val_idx), score, dev, at, progress=False)
    test = ImageDataset(mvtec_samples(root, category, "test"), size, progress=False)
    ev = evaluate(model, test, score, dev, at, progress=False)
    return {
        "set": category,
        "seed": cfg.train.seed,
        "run": str(run),
        "hold_out": len(val_idx),
        "image_auroc_raw": image_auroc(ev.map_peaks, ev.labels),
        "image_auroc_position_norm": ev.image_auroc,
        "pixel_auroc": ev.pixel_auroc,
        "aupro": ev.aupro,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mvtec"))
    ap.add_argument("--runs", required=True, help="CATEGORY=RUN pairs joined by commas (a category may repeat)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks"))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    dev = resolve_device("auto")
    rows = []
    for pair in args.runs.split(","):
        category, run = pair.split("=", 1)
        rows.append(measure(Path(run), args.data, category, dev))
        r = rows[-1]
        print(
            f"{category:8s} seed {r['seed']}: image {_num(r['image_auroc_raw'])} -> "
            f"{_num(r['image_auroc_position_norm'])}, pixel {_num(r['pixel_auroc'])}",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "position_norm.json").write_text(json.dumps(rows, indent=1))
    body = [
        [
            r["set"],
            str(r["seed"]),
            str(r["hold_out"]),
            _num(r["image_auroc_raw"]),
            _num(r["image_auroc_position_norm"]),
            _num(r["pixel_auroc"]),
            _num(r["aupro"]),
        ]
        for r in rows
    ]
    means = [sum(r[k] for r in rows) / len(rows) for k in ("image_auroc_raw", "image_auroc_position_norm")]
    body.append(["**mean**", "", "", _num(means[0]), _num(means[1]), "", ""])
    _write_markdown(
        args.out / "position_norm.md",
        [
            "set",
            "seed",
            "hold-out images",
            "image AUROC, raw map",
            "image AUROC, position norm",
            "pixel AUROC",
            "AUPRO",
        ],
        body,
    )
    path = args.out / "position_norm.md"
    head = (
        f"`python benchmarks/position_norm.py --runs ...` on {cpu_name()}: each run's "
        "test set scored once, its image score read from the raw map and from the map standardised by its own "
        "hold-out's per-pixel statistics; the pixel metrics read the raw map in both.\n\n"
    )
    path.write_text(head + path.read_text())
    print(f"table: {path}")


if __name__ == "__main__":
    main()
