"""Calibrate a run: image and pixel thresholds set on normal (or labelled) validation images, in ``thresholds.json``."""

from __future__ import annotations

import logging
from pathlib import Path

from anovit.config import CacheMode, Precision
from anovit.data import ImageDataset, labelled_folder_samples
from anovit.data.datasets import SplittableDataset
from anovit.evaluation.evaluate import evaluate
from anovit.evaluation.thresholds import DEFAULT_QUANTILE, Thresholds, calibrate, save_thresholds
from anovit.files import load_config
from anovit.models.checkpoint import load_trained_model
from anovit.runtime import distributed as dist
from anovit.runtime.device import resolve_device
from anovit.runtime.precision import resolve_precision

log = logging.getLogger(__name__)


def calibrate_on(
    run_dir: Path,
    dataset: SplittableDataset,
    source: str,
    device: str = "auto",
    precision: Precision | None = None,
    quantile: float = DEFAULT_QUANTILE,
    progress: bool = True,
) -> Thresholds:
    """Compute the run's thresholds on a validation set and store them in ``thresholds.json``."""
    dev = resolve_device(device)
    cfg, model = load_trained_model(run_dir, dev)
    at = resolve_precision(precision or cfg.train.precision, dev)  # recorded: every backend scores at it
    result = evaluate(model, dataset, cfg.score, dev, at, progress=progress)
    thresholds = calibrate(result, source, quantile, precision=at)
    if dist.is_main():
        save_thresholds(run_dir, thresholds)
    for note in thresholds.notes:
        log.info("thresholds: %s", note)
    return thresholds


def calibrate_run(
    run_dir: Path,
    val_dir: Path,
    device: str = "auto",
    precision: Precision | None = None,
    quantile: float = DEFAULT_QUANTILE,
    progress: bool = True,
    cache: CacheMode = "auto",
) -> Thresholds:
    """Thresholds from a labelled validation folder (good/ + optional defect folders and masks)."""
    cfg = load_config(run_dir)
    samples = labelled_folder_samples(val_dir)
    dataset = ImageDataset(samples, cfg.data.image_size, desc=f"reading {val_dir}", progress=progress, cache=cache)
    n_anomalous = sum(s.label for s in samples)
    source = f"{val_dir} ({len(samples) - n_anomalous} normal, {n_anomalous} anomalous)"
    return calibrate_on(run_dir, dataset, source, device, precision, quantile, progress)
