"""The demo: built-in data, AnoViT and the l2-CAE with the small preset, a side-by-side table, Figure 3 and reports.

It is the benchmark sweep on the synthetic MVTec-layout set, so it resumes the same way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .benchmark import MODEL_LABELS, run_benchmark
from .data import make_synthetic_mvtec
from .runs import format_table

CATEGORY = "weave"
MODELS = ("cae", "anovit")  # the paper's column order: baseline, then AnoViT


def run_demo(out: Path, epochs: int | None = None, device: str = "auto", force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Generate the data (once), train both models (unless already trained), test them, draw Figure 3."""
    out = Path(out)
    data = out / "data"
    if not (data / CATEGORY).is_dir():
        make_synthetic_mvtec(data, categories=(CATEGORY,), progress=progress)
    if force:
        for finished in (out / "runs", out / "figures"):
            shutil.rmtree(finished, ignore_errors=True)
    results = run_benchmark("mvtec", data, MODELS, out, preset="small", epochs=epochs, device=device, progress=progress, report=True)
    row = results["rows"][0]
    print(format_table({MODEL_LABELS[m]: row[m] | {"n_images": _n_images(out, m)} for m in MODELS}))
    runs = out / "runs" / CATEGORY
    print(f"figure: {out / 'figures' / f'{CATEGORY}.png'}\nruns: {runs}")
    print(f"reports: {runs / 'anovit' / 'report.html'}, {runs / 'cae' / 'report.html'} (open in a browser)")
    return results


def _n_images(out: Path, model: str) -> int:
    return int(json.loads((out / "runs" / CATEGORY / model / "metrics.json").read_text())["n_images"])
