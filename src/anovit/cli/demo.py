"""The demo: built-in data, AnoViT (the CPU default preset) and the l2-CAE, a side-by-side table, Figure 3 and reports.

The quick demo (the default, a few minutes on 2 CPU cores): one built-in texture (weave), both models
trained for ``QUICK_EPOCHS`` epochs of the default preset. ``full``: two categories, a texture (weave) and an
object (capsule), at the preset's full training (the default: about 5 minutes each for AnoViT). ``anovit synth``
writes the others (sand, fibres, tiles, nut).

It is the benchmark sweep on the synthetic MVTec-layout set, so it resumes the same way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from anovit.cli.output import format_table
from anovit.data import make_synthetic_mvtec
from anovit.experiments.benchmark import run_benchmark
from anovit.experiments.tables import MODEL_LABELS
from anovit.presets import DEFAULT_PRESET

CATEGORIES = ("weave", "capsule")
QUICK_CATEGORIES = ("weave",)
QUICK_EPOCHS = 15  # 60 steps of 16 images for the quick demo's 64 training images
MODELS = ("cae", "anovit")  # the paper's column order: baseline, then AnoViT


def run_demo(
    out: Path,
    epochs: int | None = None,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    full: bool = False,
) -> dict[str, Any]:
    """Generate the data (once), train both models (unless already trained), test them, draw Figure 3."""
    out = Path(out)
    data = out / "data"
    categories = CATEGORIES if full else QUICK_CATEGORIES
    if not full and epochs is None:
        epochs = QUICK_EPOCHS
    missing = tuple(c for c in categories if not (data / c).is_dir())
    if missing:
        make_synthetic_mvtec(data, categories=missing, progress=progress)
    if force:
        for finished in (out / "runs", out / "figures"):
            shutil.rmtree(finished, ignore_errors=True)
    results = run_benchmark(
        "mvtec",
        data,
        MODELS,
        out,
        categories=categories,
        preset=DEFAULT_PRESET,
        epochs=epochs,
        device=device,
        progress=progress,
        report=True,
    )
    for row in results["rows"]:
        category = row["category"]
        print(f"\n{category}:")
        print(format_table({MODEL_LABELS[m]: row[m] | {"n_images": _n_images(out, category, m)} for m in MODELS}))
    print(f"\nfigures: {', '.join(str(out / 'figures' / f'{c}.png') for c in categories)}\nruns: {out / 'runs'}")
    print(
        f"reports: {out / 'runs' / categories[0] / 'anovit' / 'report.html'} and beside every run (open in a browser)"
    )
    return results


def _n_images(out: Path, category: str, model: str) -> int:
    return int(json.loads((out / "runs" / category / model / "metrics.json").read_text())["n_images"])
