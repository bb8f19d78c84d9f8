"""The pixel variant's feature score read at a larger input: trained runs re-scored, no training.

The one-class rule's pixel variant (drawings: MNIST, scikit-learn's digits) inpaints at 32 px and compares the
image with its reconstruction twice: pixel by pixel (``l2``) and through the frozen ViT-Ti's tokens of blocks 2,
5 and 8 (``feature``). At 32 px that ViT sees a 2 x 2 grid, far from the 14 x 14 it learnt on; the knn baseline,
which reads the same ViT at 224 px, is ahead on real MNIST. Here both images are upsampled to S px before the
frozen ViT (a second reference built at S from the same weights file), for S in ``--sizes``.

The image score is the mean of the combined map (the rule's), i.e. the mean over kinds of each map's mean divided
by its scale, the scale being the map's mean over the class's normal training images (as calibration does on the
validation split); the Gaussian leaves a map's mean unchanged, so no smoothing is needed for it.

    python benchmarks/feature_scale.py --benchmark DIR --dataset mnist --data MNIST [--sizes 112,224] \\
        --out benchmarks/ablation/semantic/feature_scale-mnist.md

Writes the table (image AUROC per class and variant; the run's own metrics.json beside it) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from anovit.data.oneclass import one_class_data  # noqa: E402
from anovit.evaluation.metrics import image_auroc  # noqa: E402
from anovit.models.checkpoint import load_trained_model  # noqa: E402
from anovit.models.encoder import FeatureReference, ViTEncoder  # noqa: E402
from anovit.runtime.precision import autocast, cpu_name, resolve_precision  # noqa: E402
from anovit.scoring.maps import feature_map, reconstruct, reconstruction_error  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[2] / "shared/weights/vit_tiny_patch16_224.safetensors"


@torch.no_grad()
def per_image_means(model, refs: dict[int, FeatureReference], dataset: Dataset, masks: int, amp) -> dict:
    """A dataset of the run's inputs -> {kind: (N,) the mean of each image's map}."""
    out: dict[str, list[torch.Tensor]] = {}
    for batch in DataLoader(dataset, batch_size=32):
        x = batch["image"].float()  # (B, 3, S, S) in [0, 1]
        with amp():
            recon = reconstruct(model, x, masks).float()  # (B, 3, S, S)
            maps = {"l2": reconstruction_error(x, recon), "feature": feature_map(model.reference, x, recon)}
            for size, ref in refs.items():
                up = [F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False) for t in (x, recon)]
                maps[f"feature@{size}"] = feature_map(ref, *up)
        for k, m in maps.items():
            out.setdefault(k, []).append(m.float().mean(dim=(1, 2)))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", type=Path, required=True, help="an anovit benchmark folder (runs/CLASS/anovit)")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "digits", "cifar10", "folder"))
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--sizes", default="112,224")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    torch.manual_seed(0)
    refs: dict[int, FeatureReference] = {}
    for size in sizes:
        refs[size] = FeatureReference(ViTEncoder("vit_tiny_patch16_224", size, 16, weights=WEIGHTS), (2, 5, 8)).eval()
    device = torch.device("cpu")
    precision = resolve_precision("auto", device)
    variants = {
        "l2+feature (the run's kinds)": ("l2", "feature"),
        "l2": ("l2",),
        **{f"l2+feature@{s}": ("l2", f"feature@{s}") for s in sizes},
        **{f"l2+feature+feature@{s}": ("l2", "feature", f"feature@{s}") for s in sizes},
        **{f"feature@{s}": (f"feature@{s}",) for s in sizes},
    }
    rows = []
    for run in sorted((args.benchmark / "runs").glob("*/anovit"), key=lambda p: p.parent.name):
        cfg, model = load_trained_model(run)
        data = one_class_data(args.dataset, args.data, run.parent.name, cfg.data.image_size)
        amp = lambda: autocast(device, precision)  # noqa: E731
        normal = per_image_means(model, refs, data.train, cfg.score.test_masks, amp)
        test = per_image_means(model, refs, data.test, cfg.score.test_masks, amp)
        labels = np.asarray([s.label for s in data.test.samples])
        row = {"class": run.parent.name, "run": json.loads((run / "metrics.json").read_text())["image_auroc"]}
        for name, kinds in variants.items():
            score = np.mean([test[k] / normal[k].mean() for k in kinds], axis=0)
            row[name] = image_auroc(score, labels)
        rows.append(row)
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    names = ["run", *variants]
    lines = [
        f"Image AUROC of trained pixel-variant runs (`{args.benchmark}`, {args.dataset}) re-scored; the feature score "
        f"also read at {', '.join(map(str, sizes))} px; {cpu_name()}, {precision}.",
        "",
        "| class | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *("| " + r["class"] + " | " + " | ".join(f"{r[n]:.3f}" for n in names) + " |" for r in rows),
        "| mean | " + " | ".join(f"{np.mean([r[n] for r in rows]):.3f}" for n in names) + " |",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
