"""The demo: built-in data, AnoViT and the l2-CAE with the small preset, a side-by-side table and Figure 3."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from .config import resolve_config
from .data import make_synthetic_mvtec
from .runs import figure_indices, format_table, test_run, train_run
from .viz import figure3

log = logging.getLogger(__name__)

CATEGORY = "weave"
MODELS = ("cae", "anovit")  # the paper's column order: baseline, then AnoViT
N_FIGURE_ROWS = 4


def run_demo(out: Path, epochs: int | None = None, device: str = "auto", force: bool = False, progress: bool = True) -> dict[str, dict]:
    """Generate the data (once), train both models (unless already trained), test them, draw Figure 3."""
    out = Path(out)
    data = out / "data"
    if not (data / CATEGORY).is_dir():
        make_synthetic_mvtec(data, categories=(CATEGORY,), progress=progress)
    metrics: dict[str, dict] = {}
    maps: dict[str, list[np.ndarray]] = {}
    test_set = None
    for name in MODELS:
        run_dir = out / name
        if force or not (run_dir / ckpt.WEIGHTS_FILE).exists():
            cfg = resolve_config("small", model=name, epochs=epochs)
            result = train_run(cfg, data, CATEGORY, run_dir, device, force=True, progress=progress)
            log.info("%s trained in %.0f s", name, result.seconds)
        evaluation, test_set = test_run(run_dir, data, CATEGORY, device=device, keep_maps=N_FIGURE_ROWS, progress=progress)
        metrics[name] = evaluation.metrics()
        maps[name] = [evaluation.maps[i] for i in sorted(evaluation.maps)]
    assert test_set is not None
    shown = figure_indices(test_set.samples, N_FIGURE_ROWS)
    images = [test_set.images[i].permute(1, 2, 0).numpy() / 255.0 for i in shown]
    masks = [test_set.masks[i].numpy().astype(float) for i in shown]
    labels = {"cae": "l2-CAE", "anovit": "AnoViT"}
    fig = figure3(images, masks, {labels[k]: v for k, v in maps.items()}, out / "figure3.png",
                  titles=[test_set.samples[i].defect for i in shown])  # fmt: skip
    ckpt.write_json(out / "metrics.json", metrics)
    print(format_table({labels[k]: v for k, v in metrics.items()}))
    print(f"figure: {fig}\nruns: {out / 'cae'}, {out / 'anovit'}")
    return metrics
