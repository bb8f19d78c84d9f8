"""Test a run: score a labelled test set on any backend; ``metrics.json``, ``scores.csv`` and the report."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anovit.config import CacheMode, Precision
from anovit.data import ImageDataset, Sample, mvtec_samples
from anovit.data.datasets import SplittableDataset
from anovit.deploy.backends import Backend, Scorer, load_scorer
from anovit.evaluation.evaluate import Evaluation, evaluate
from anovit.evaluation.thresholds import decision_metrics, load_thresholds, scoring_precision
from anovit.files import METRICS_FILE, REPORT_FILE, SCORES_FILE, THRESHOLDS_FILE, load_config, write_json, write_text
from anovit.models.checkpoint import load_trained_model
from anovit.runtime import distributed as dist
from anovit.runtime.device import resolve_device
from anovit.runtime.precision import usable_precision
from anovit.scoring.maps import Scores

log = logging.getLogger(__name__)


def test_on(
    run_dir: Path,
    test_set: SplittableDataset,
    out_dir: Path | None = None,
    device: str = "auto",
    precision: Precision | None = None,
    batch_size: int = 16,
    keep_maps: int = 0,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
    report: bool = False,
    backend: Backend = "torch",
    model_file: Path | None = None,
) -> Evaluation:
    """Evaluate a trained run on ``test_set``; write ``metrics.json`` and ``scores.csv`` to ``out_dir`` (default: the
    run).

    ``keep_maps`` keeps the score maps of that many anomalous images (for figures); ``report``
    also writes ``report.html``. With ``thresholds.json`` in the run, the metrics include the F1
    reached at those thresholds.
    """
    dev = resolve_device(device)
    if backend == "torch":
        cfg, model = load_trained_model(run_dir, dev)
        scorer = None
        asked = scoring_precision(run_dir, precision, cfg.train.precision)  # the thresholds', unless told otherwise
        at: Precision | None = usable_precision(asked, dev)  # type: ignore[arg-type]
    else:  # the exported file scores; the torch weights are not loaded
        cfg, model = load_config(run_dir), None
        scorer = backend_scores(load_scorer(run_dir, backend, model_file, device, precision))
        at = None  # the backend chose its precision (the same rule) and names it in its description
    thresholds = load_thresholds(run_dir) if (Path(run_dir) / THRESHOLDS_FILE).is_file() else None
    keep = figure_indices(test_set.samples, keep_maps)
    start = time.perf_counter()
    result = evaluate(model, test_set, cfg.score, dev, at or "fp32", batch_size, keep, progress, scorer)
    seconds = time.perf_counter() - start
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    metrics = (
        result.metrics()
        | (decision_metrics(result, thresholds) if thresholds else {})
        | (extra or {})
        | {
            "model": cfg.model.name,
            "backend": backend if model_file is None else f"{backend} ({Path(model_file).name})",
            "precision": at,
            "n_anomalous": int(result.labels.sum()),
            "seconds": round(seconds, 3),
        }
    )
    if dist.is_main():
        write_json(out / METRICS_FILE, metrics)
        rows = ["image,kind,label,score"] + [
            f"{s.image},{s.defect},{s.label},{score:.8g}" for s, score in zip(test_set.samples, result.image_scores)
        ]
        write_text(out / SCORES_FILE, "\n".join(rows) + "\n")
        if report:
            from anovit.evaluation.report import write_report

            path = write_report(
                out / REPORT_FILE, model, cfg, test_set, result, metrics, thresholds, dev, at, scorer=scorer
            )
            log.info("report: %s", path)
    return result


def backend_scores(scorer: Scorer) -> Callable[[torch.Tensor], Scores]:
    """A backend's scorer as :func:`anovit.evaluation.evaluate.evaluate` calls it: images (B, 3, S, S) in [0, 1] ->
    Scores."""

    def scores(images: torch.Tensor) -> Scores:
        maps, image = scorer(images.cpu().numpy())
        return Scores(
            torch.from_numpy(np.asarray(maps, dtype=np.float32)), torch.from_numpy(np.asarray(image, dtype=np.float32))
        )

    return scores


def test_run(
    run_dir: Path,
    data_root: Path,
    category: str,
    out_dir: Path | None = None,
    device: str = "auto",
    precision: Precision | None = None,
    batch_size: int = 16,
    keep_maps: int = 0,
    progress: bool = True,
    report: bool = False,
    cache: CacheMode = "auto",
    backend: Backend = "torch",
    model_file: Path | None = None,
) -> tuple[Evaluation, ImageDataset]:
    """Evaluate a trained run on the MVTec test split of ``category`` (on ``backend``: see
    :mod:`anovit.deploy.backends`)."""
    cfg = load_config(run_dir)
    samples = mvtec_samples(data_root, category, "test")
    test_set = ImageDataset(
        samples, cfg.data.image_size, desc=f"reading {category}/test", progress=progress, cache=cache
    )
    extra = {"category": category}
    result = test_on(
        run_dir,
        test_set,
        out_dir,
        device,
        precision,
        batch_size,
        keep_maps,
        progress,
        extra,
        report,
        backend,
        model_file,
    )
    return result, test_set


def figure_indices(samples: list[Sample], n: int) -> list[int]:
    """Up to ``n`` anomalous images for a figure, one per defect type in turn."""
    by_defect: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        if s.label == 1:
            by_defect.setdefault(s.defect, []).append(i)
    order = [i for group in itertools.zip_longest(*by_defect.values()) for i in group if i is not None]
    return order[:n]
