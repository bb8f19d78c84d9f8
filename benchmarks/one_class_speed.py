"""Seconds to score a one-class test set with a trained run, at each precision (issue 28's 5,000 small images).

    python benchmarks/one_class_speed.py --run RUN [--run RUN2 ...] --dataset mnist --data MNIST --category 8 \
        --precisions fp32,bf16 --out benchmarks/one_class_speed.md

Scores the whole test split of ``--data`` (for the 5,000-image figure: an MNIST root whose t10k files hold
5,000 digits) with ``anovit test``'s path, once per run and precision, and writes a table of the run's objective,
images, wall seconds (loading the test set included) and images/s. The CPU it ran on goes in the table's header.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from anovit.data.oneclass import one_class_data  # noqa: E402
from anovit.files import load_config  # noqa: E402
from anovit.runs.test import test_on  # noqa: E402
from anovit.runtime.precision import cpu_name  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run", type=Path, action="append", required=True, help="a run folder trained on the dataset (repeatable)"
    )
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "cifar10", "digits", "folder"))
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--category", required=True)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/one_class_speed.md"))
    args = parser.parse_args(argv)
    rows = []
    for run in args.run:
        cfg = load_config(run)
        for precision in args.precisions.split(","):
            start = time.perf_counter()
            test = one_class_data(args.dataset, args.data, args.category, cfg.data.image_size).test
            with tempfile.TemporaryDirectory() as tmp:  # the run's own metrics.json stays as it is
                test_on(run, test, out_dir=Path(tmp), precision=precision, progress=False)  # type: ignore[arg-type]
            wall = time.perf_counter() - start
            rows.append(
                f"| {cfg.preset}: {cfg.train.objective} at {cfg.data.image_size} px | {precision} | {len(test):,} "
                f"| {wall:.1f} | {len(test) / wall:.1f} |"
            )
            print(rows[-1], flush=True)
    lines = [
        f"Scoring a one-class test set ({args.dataset}, class {args.category}) with trained runs; {cpu_name()}, "
        f"{torch.get_num_threads()} threads.",
        "",
        "| run | precision | images | seconds | images/s |",
        "|---|---|---|---|---|",
        *rows,
    ]
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
