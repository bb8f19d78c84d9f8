"""Image scores read as a peak against the part's own level, on trained runs of MVTec-layout sets.

MVTec AD's good screw test images are darker than its training images, which lifts their whole map: a score that
subtracts (or divides by) each map's own median or mean sees only local peaks. Measured on runs that already exist
(``anovit benchmark --dataset mvtec ... --out DIR``: DIR/runs/<category>/anovit), no training:

    python benchmarks/image_score_contrast.py --out benchmarks/image_score_contrast.md \
        DIR/runs/screw/anovit:ROOT:screw DIR/runs/tire/anovit:ROOT:tire ...

Each map is the run's own (``score_batch``: its smoothing, border and precision as ``auto`` picks); the table gives
the image AUROC of each reading of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from anovit.data.datasets import ImageDataset  # noqa: E402
from anovit.data.mvtec import mvtec_samples  # noqa: E402
from anovit.evaluation.evaluate import score_images  # noqa: E402
from anovit.models.checkpoint import load_trained_model  # noqa: E402
from anovit.runtime.device import resolve_device  # noqa: E402
from anovit.runtime.precision import resolve_precision  # noqa: E402

READINGS = ("top1", "max", "mean", "top1 - median", "top1 - mean", "top1 / median", "max - median")


def readings(maps: torch.Tensor) -> torch.Tensor:
    """Smoothed maps (B, H, W), border already cut -> (B, len(READINGS)) image scores."""
    flat = maps.flatten(1).float()  # (B, P)
    top1 = flat.topk(max(1, int(0.01 * flat.shape[1])), dim=1).values.mean(dim=1)
    peak, mean, median = flat.amax(dim=1), flat.mean(dim=1), flat.median(dim=1).values
    return torch.stack([top1, peak, mean, top1 - median, top1 - mean, top1 / median, peak - median], dim=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="RUN:ROOT:CATEGORY, an MVTec-layout category and a run trained on it")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/image_score_contrast.md"))
    args = parser.parse_args(argv)
    dev = resolve_device("auto")
    lines = ["| run | set | " + " | ".join(READINGS) + " |", "|---|---|" + "---|" * len(READINGS)]
    for spec in args.runs:
        run, root, category = spec.rsplit(":", 2)
        cfg, model = load_trained_model(Path(run), dev)
        test = ImageDataset(mvtec_samples(Path(root), category, "test"), cfg.data.image_size, progress=False)
        precision = resolve_precision(cfg.train.precision, dev)
        got, labels = [], []
        for batch in DataLoader(test, batch_size=16):
            maps = score_images(model, batch["image"], cfg.score, dev, precision).maps  # (B, S, S)
            b = int(round(cfg.score.border * maps.shape[-1]))
            got.append(readings(maps[:, b : maps.shape[-2] - b, b : maps.shape[-1] - b]).cpu())
            labels.append(batch["label"])
        scores, y = torch.cat(got).numpy(), torch.cat(labels).numpy()
        aurocs = [roc_auc_score(y, scores[:, i]) for i in range(len(READINGS))]
        lines.append(f"| {run} | {category} | " + " | ".join(f"{a:.3f}" for a in aurocs) + " |")
        print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
