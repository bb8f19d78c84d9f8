"""The one-class rule's training budget: AnoViT and the l2-CAE on every scikit-learn digits class, per number of
optimiser steps (issue 28).

Each budget is one ``anovit benchmark --dataset digits --models anovit,cae`` with the rule's settings and
``min_steps`` set to it (both models take the same budget; a digits class has ~70 training images, 4 steps an
epoch). Finished runs are kept, so the script resumes. Writes OUT/steps-N[-cosine][-seedS]/ (the benchmark
folders) and OUT/steps[-cosine][-seedsS..].md + .json: image AUROC per class and budget (and seed, and the mean over
seeds), and the classes where AnoViT is higher, equal or lower than the l2-CAE at three decimals.

    python benchmarks/semantic_steps.py --steps 300,1000 --out benchmarks/ablation/semantic
    python benchmarks/semantic_steps.py --steps 1000 --seeds 0,1   # the rule's budget over two seeds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ablation import WEIGHTS, _num, _write_markdown  # noqa: E402
from anovit.config import LR_SCHEDULES  # noqa: E402
from anovit.experiments.benchmark import run_benchmark  # noqa: E402

MODELS = ("anovit", "cae")


def compare(a: float, b: float) -> int:
    """+1, 0 or -1 as ``a`` is above, equal to or below ``b`` at three decimals."""
    ra, rb = round(a, 3), round(b, 3)
    return (ra > rb) - (ra < rb)


def table(budgets: dict[str, dict[str, dict[str, float]]]) -> tuple[list[str], list[list[str]]]:
    """budgets {label: {class: {"anovit": auroc, "cae": auroc}}} -> (header, rows): a row per class, two columns per
    label (a budget, a seed, a mean over seeds), then the means and the tally of AnoViT against the l2-CAE."""
    classes = list(next(iter(budgets.values())))
    head = ["class"] + [f"{label}, {n}" for n in budgets for label in ("AnoViT", "l2-CAE")]
    body = [[c] + [_num(budgets[n][c][m]) for n in budgets for m in MODELS] for c in classes]
    body.append(
        ["mean"] + [_num(sum(r[m] for r in budgets[n].values()) / len(classes)) for n in budgets for m in MODELS]
    )
    tallies = []
    for n in budgets:
        signs = [compare(r["anovit"], r["cae"]) for r in budgets[n].values()]
        tallies += [f"higher / equal / lower: {signs.count(1)} / {signs.count(0)} / {signs.count(-1)}", ""]
    body.append(["AnoViT vs l2-CAE"] + tallies)
    return head, body


def seed_mean(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per class and model, the mean image AUROC over the seeds' runs."""
    return {c: {m: sum(r[c][m] for r in runs) / len(runs) for m in MODELS} for c in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="300,1000", help="comma-separated budgets (optimiser steps)")
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/ablation/semantic"))
    ap.add_argument("--schedule", default="constant", choices=LR_SCHEDULES, help="both models' rate")
    ap.add_argument("--seeds", default="0", help="comma-separated; with several, a column of their mean per budget")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    seeds = [int(s) for s in args.seeds.split(",")]
    schedule = "" if args.schedule == "constant" else f"-{args.schedule}"
    budgets: dict[str, dict[str, dict[str, float]]] = {}
    for steps in (int(s) for s in args.steps.split(",")):
        runs = []
        for seed in seeds:
            results = run_benchmark(
                "digits",
                None,
                list(MODELS),
                args.out / f"steps-{steps}{schedule}{f'-seed{seed}' if seed else ''}",
                categories=args.classes.split(","),
                min_steps=steps,
                lr_schedule=args.schedule,
                seed=seed,
                encoder_weights=WEIGHTS,
            )
            runs.append({r["category"]: {m: r[m]["image_auroc"] for m in MODELS} for r in results["rows"]})
            budgets[f"{steps} steps" + (f", seed {seed}" if len(seeds) > 1 else "")] = runs[-1]
        if len(seeds) > 1:
            budgets[f"{steps} steps, mean of seeds {args.seeds}"] = seed_mean(runs)
    name = f"steps{schedule}" + (f"-seeds{args.seeds.replace(',', '')}" if len(seeds) > 1 else "")
    (args.out / f"{name}.json").write_text(json.dumps(budgets, indent=1))
    head = (
        "# The one-class rule's training budget on scikit-learn digits\n\n"
        "Image AUROC per normal class, AnoViT and the l2-CAE at each budget (both models take it; "
        f"`python benchmarks/semantic_steps.py --steps {args.steps} --seeds {args.seeds} --schedule {args.schedule}`)."
        "\n\n"
    )
    path = args.out / f"{name}.md"
    _write_markdown(path, *table(budgets))
    path.write_text(head + path.read_text())
    print(path.read_text())


if __name__ == "__main__":
    main()
