"""Which of the ``tokens`` decoder's two groups of blocks the score map should read: trained runs re-scored.

The default's map sums 1 - cosine over two groups of the frozen ViT-Ti's blocks (2-5 and 6-9, each averaged).
Each variant here keeps the trained model and changes only that sum: one group alone, or both with each divided
by its mean over the category's normal training images ("balanced": each weighs the same, as the pixel presets'
score kinds do with ``ScoreConfig.scales``), or both weighted by a fixed share.

    python benchmarks/token_groups.py --runs DIR [DIR ...] --data ROOT [--photo PHOTO_ROOT] \\
        --out benchmarks/token_groups.md

Each DIR is an ``anovit benchmark`` MVTec-layout folder (DIR/runs/<category>/anovit); its categories are read
from ROOT (or, for brick / grass / gravel, from PHOTO_ROOT, ``benchmarks/photo_sets.py``'s output). Writes a
table of image / pixel AUROC per run and variant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from anovit.data import ImageDataset, mvtec_samples  # noqa: E402
from anovit.data.oneclass import one_class_data  # noqa: E402
from anovit.evaluation.evaluate import evaluate  # noqa: E402
from anovit.models.checkpoint import load_trained_model  # noqa: E402
from anovit.runtime.precision import autocast, cpu_name, resolve_precision  # noqa: E402

PHOTOS = ("brick", "grass", "gravel")
VARIANTS = {  # name -> weight of each group's (scaled) distance; "balanced" divides each by its normal mean
    "base (sum)": (1.0, 1.0),
    "blocks 2-5": (1.0, 0.0),
    "blocks 6-9": (0.0, 1.0),
    "balanced": (1.0, 1.0),
    "2-5 + half 6-9": (1.0, 0.5),
    "balanced by normal peaks": (1.0, 1.0),
    "max of peak-balanced": (1.0, 1.0),
}


@torch.no_grad()
def group_levels(model: torch.nn.Module, normal: ImageDataset, precision: str) -> tuple[list[float], list[float]]:
    """Each group's 1 - cosine over the normal training images (first 64): its mean, and the mean of each image's
    highest 1 % of patches (its peaks)."""
    means, peaks = [], []
    device = torch.device("cpu")
    for start in range(0, min(len(normal), 64), 16):
        x = torch.stack([normal[i]["image"] for i in range(start, min(start + 16, len(normal)))]).float()
        with autocast(device, precision):
            groups = [g.float() for g in type(model).distances(model, x)]  # per group (B, N)
        k = max(1, round(0.01 * groups[0].shape[1]))
        means.append(torch.stack([g.mean(dim=1) for g in groups]))  # (G, B)
        peaks.append(torch.stack([g.topk(k, dim=1).values.mean(dim=1) for g in groups]))  # (G, B)
    return torch.cat(means, 1).mean(1).tolist(), torch.cat(peaks, 1).mean(1).tolist()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--photo", type=Path, default=None)
    parser.add_argument(
        "--dataset", default="mvtec", choices=("mvtec", "mnist", "cifar10", "folder"), help="the runs' dataset"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help="a comma-separated subset of the variants")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    precision = resolve_precision("auto", device)
    names = args.variants.split(",")
    rows = []
    for bench in args.runs:
        for run in sorted((bench / "runs").glob("*/anovit")):
            category = run.parent.name
            root = args.photo if category in PHOTOS else args.data
            cfg, model = load_trained_model(run)
            if cfg.train.objective != "tokens":
                continue
            size = cfg.data.image_size
            if args.dataset == "mvtec":
                normal = ImageDataset(mvtec_samples(root, category, "train"), size, progress=False)
                test = ImageDataset(mvtec_samples(root, category, "test"), size, progress=False)
            else:
                data = one_class_data(args.dataset, args.data, category, size)
                normal, test = data.train, data.test
            means, peaks = group_levels(model, normal, precision)
            every = type(model).distances
            row = [f"{category} ({bench.name})"]
            for name in names:
                weights = VARIANTS[name]
                scale = {"balanced": means, "balanced by normal peaks": peaks, "max of peak-balanced": peaks}
                w = [a / b for a, b in zip(weights, scale.get(name, [1.0, 1.0]))]
                if name.startswith("max"):
                    model.distances = lambda x, m=model, w=w, every=every: [  # type: ignore[method-assign]
                        torch.stack([wi * d for wi, d in zip(w, every(m, x))]).amax(dim=0)
                    ]
                else:
                    model.distances = lambda x, m=model, w=w, every=every: [  # type: ignore[method-assign]
                        wi * d for wi, d in zip(w, every(m, x)) if wi
                    ]
                ev = evaluate(model, test, cfg.score, device, precision, progress=False)
                pixel = "-" if ev.pixel_auroc is None else f"{ev.pixel_auroc:.3f}"
                row.append(f"{ev.image_auroc:.3f} / {pixel}")
                print(category, bench.name, name, row[-1], flush=True)
            model.__dict__.pop("distances", None)
            row.append(" / ".join(f"{m:.3f}" for m in means) + "; peaks " + " / ".join(f"{p:.3f}" for p in peaks))
            rows.append(row)
    lines = [
        f"Image / pixel AUROC of trained `tokens` runs re-scored per group of blocks; {cpu_name()}, {precision}.",
        "",
        "| run | " + " | ".join(names) + " | normal mean of each group |",
        "|---|" + "---|" * (len(names) + 1),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
