"""Every backend x precision on trained default (``tiny``) runs of real categories: image and pixel AUROC against
torch fp32, and the seconds each test took.

    python benchmarks/backends_real.py --runs bottle=RUN,tire=RUN [--data ../shared/data/mvtec]

Each RUN is a finished ``anovit train`` of that category (the default preset). Its four exports are written into
it (int8 calibrated and rank-checked on its own training images), then ``test`` runs on every backend x precision
of benchmarks/backends.py. Writes benchmarks/backends_real.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from anovit.deploy.export import export_model  # noqa: E402
from anovit.runs.test import test_run  # noqa: E402
from anovit.runtime.precision import cpu_flags, cpu_name  # noqa: E402
from backends import VARIANTS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="CATEGORY=RUN_DIR,...")
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/mvtec")
    parser.add_argument("--out", type=Path, default=HERE / "backends_real")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    for item in args.runs.split(","):
        category, run = item.split("=")
        run = Path(run)
        checks = {}
        for fmt, int8 in (("onnx", False), ("onnx", True), ("openvino", False), ("openvino", True)):
            e = export_model(run, fmt, int8)  # type: ignore[arg-type]
            checks[f"{fmt}{' int8' if int8 else ''}"] = e.rank_correlation
        rows = {}
        for label, backend, file, precision in VARIANTS:
            start = time.perf_counter()
            result, _ = test_run(
                run,
                args.data,
                category,
                args.out / f"{category}-{label.replace(' ', '_')}",
                "cpu",
                precision,
                progress=False,
                backend=backend,
                model_file=run / file if file else None,
            )  # type: ignore[arg-type]
            rows[label] = {
                "image_auroc": result.image_auroc,
                "pixel_auroc": result.pixel_auroc,
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(category, label, rows[label], flush=True)
        results[category] = {"rows": rows, "int8_spearman": checks}
    lines = [
        "# Backends on the default preset, real categories",
        "",
        f"`python benchmarks/backends_real.py --runs ...` on {cpu_name()} ({', '.join(cpu_flags()) or 'no bf16'}),"
        " 2 cores: `anovit test` of a trained `tiny` run on every backend x precision; delta = against torch fp32.",
        "",
        "| set | backend | image AUROC | pixel AUROC | delta image | delta pixel | test s |",
        "|---|---|---|---|---|---|---|",
    ]
    for category, r in results.items():
        ref = r["rows"]["torch fp32"]
        for label, m in r["rows"].items():
            di = m["image_auroc"] - ref["image_auroc"]
            dp = (m["pixel_auroc"] or 0) - (ref["pixel_auroc"] or 0)
            lines.append(
                f"| {category} | {label} | {m['image_auroc']:.4f} | {m['pixel_auroc']:.4f} | {di:+.4f} | {dp:+.4f} |"
                f" {m['seconds']} |"
            )
        rho = ", ".join(f"{k} {v:.3f}" for k, v in r["int8_spearman"].items() if v is not None)
        lines.append(f"| {category} | int8 rank check on its training images (Spearman) | {rho} | | | | |")
    (HERE / "backends_real.md").write_text("\n".join(lines) + "\n")
    (HERE / "backends_real.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
