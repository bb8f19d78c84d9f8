"""The one-class rule's training budget: AnoViT and the l2-CAE on every scikit-learn digits class, per number of
optimiser steps (issue 28).

Each budget is one ``anovit benchmark --dataset digits --models anovit,cae`` with the rule's settings and
``min_steps`` set to it (both models take the same budget; a digits class has ~70 training images, 4 steps an
epoch). Finished runs are kept, so the script resumes. Writes OUT/steps-N/ (the benchmark folders) and
OUT/steps.md + OUT/steps.json: image AUROC per class and budget, and the classes where AnoViT is higher, equal or
lower than the l2-CAE at three decimals.

    python benchmarks/semantic_steps.py --steps 300,1000 --out benchmarks/ablation/semantic
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from anovit.experiments.benchmark import run_benchmark  # noqa: E402

WEIGHTS = os.environ.get(
    "ANOVIT_ENCODER_WEIGHTS",
    str(Path(__file__).resolve().parents[2] / "shared/weights/vit_tiny_patch16_224.safetensors"),
)


def compare(a: float, b: float) -> int:
    """+1, 0 or -1 as ``a`` is above, equal to or below ``b`` at three decimals."""
    ra, rb = round(a, 3), round(b, 3)
    return (ra > rb) - (ra < rb)


def table(budgets: dict[int, dict[str, dict[str, float]]]) -> str:
    """budgets {steps: {class: {"anovit": auroc, "cae": auroc}}} -> markdown: a row per class, two columns per
    budget, then the means and the tally of AnoViT against the l2-CAE."""
    classes = list(next(iter(budgets.values())))
    head = "| class | " + " | ".join(f"AnoViT, {n} steps | l2-CAE, {n} steps" for n in budgets) + " |"
    lines = [head, "|---" * (1 + 2 * len(budgets)) + "|"]
    for c in classes:
        cells = [f"{budgets[n][c][m]:.3f}" for n in budgets for m in ("anovit", "cae")]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    means = [f"{sum(r[m] for r in budgets[n].values()) / len(classes):.3f}" for n in budgets for m in ("anovit", "cae")]
    lines.append("| mean | " + " | ".join(means) + " |")
    tallies = []
    for n in budgets:
        signs = [compare(r["anovit"], r["cae"]) for r in budgets[n].values()]
        tallies += [f"higher / equal / lower: {signs.count(1)} / {signs.count(0)} / {signs.count(-1)}", ""]
    lines.append("| AnoViT vs l2-CAE | " + " | ".join(tallies) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="300,1000", help="comma-separated budgets (optimiser steps)")
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/ablation/semantic"))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    budgets: dict[int, dict[str, dict[str, float]]] = {}
    for steps in (int(s) for s in args.steps.split(",")):
        results = run_benchmark(
            "digits",
            None,
            ["anovit", "cae"],
            args.out / f"steps-{steps}",
            categories=args.classes.split(","),
            min_steps=steps,
            encoder_weights=WEIGHTS,
        )
        budgets[steps] = {r["category"]: {m: r[m]["image_auroc"] for m in ("anovit", "cae")} for r in results["rows"]}
    (args.out / "steps.json").write_text(json.dumps(budgets, indent=1))
    head = (
        "# The one-class rule's training budget on scikit-learn digits\n\n"
        "Image AUROC per normal class, AnoViT and the l2-CAE at each budget (both models take it; "
        "`python benchmarks/semantic_steps.py`).\n\n"
    )
    (args.out / "steps.md").write_text(head + table(budgets))
    print(table(budgets))


if __name__ == "__main__":
    main()
