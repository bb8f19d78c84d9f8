"""Train and test runs: the glue between data, models, engine and run folders.

``train_on`` / ``test_on`` work on any dataset of this package (MVTec layout or one-class);
``train_run`` / ``test_run`` read the MVTec layout from disk first.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from . import checkpoint as ckpt
from . import distributed as dist
from .backends import Backend, Scorer, load_scorer
from .config import Precision, RunConfig
from .data import ImageDataset, Sample, labelled_folder_samples, mvtec_samples, split_train_val
from .data.datasets import CacheMode
from .data.transforms import build_augment
from .engine import Evaluation, evaluate, measure_scales, resolve_device, seed_everything
from .errors import InputError
from .models import build_model
from .models.weights import resolve_encoder_source
from .precision import resolve_precision
from .scoring import Scores
from .thresholds import DEFAULT_QUANTILE, THRESHOLDS_FILE, Thresholds, calibrate, decision_metrics, load_thresholds, save_thresholds
from .training import EpochLog, epochs_for, fit

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"


class SplittableDataset(Protocol):
    samples: list[Sample]

    def __len__(self) -> int: ...

    def subset(self, indices: list[int], augment: Any = None) -> Dataset: ...


@dataclass
class TrainResult:
    run_dir: Path
    history: list[EpochLog]
    seconds: float


def check_run_dir(run_dir: Path, force: bool) -> None:
    """Refuse to overwrite a finished run unless ``force``."""
    if (Path(run_dir) / ckpt.WEIGHTS_FILE).exists() and not force:
        raise InputError(f"{run_dir}: already holds a trained model; pass --force to overwrite it or choose another --out")


def check_resumable(run_dir: Path, epochs: int) -> None:
    """``--resume`` needs a checkpoint; on a finished run, it needs more epochs than were trained (to train longer)."""
    run_dir = Path(run_dir)
    if not (run_dir / ckpt.CHECKPOINT_FILE).is_file():
        raise InputError(f"{run_dir / ckpt.CHECKPOINT_FILE}: no checkpoint to resume from (none written yet, or --checkpoint-every 0)")
    log_file = run_dir / ckpt.LOG_FILE
    done = len(log_file.read_text().splitlines()) - 1 if log_file.is_file() else 0
    if (run_dir / ckpt.WEIGHTS_FILE).exists() and epochs <= done:
        raise InputError(f"{run_dir}: this run finished its {done} epochs; pass --resume --epochs N with N > {done} to train "
                         "longer, or --force to train it again")  # fmt: skip


def train_on(
    cfg: RunConfig,
    normal: SplittableDataset,
    run_dir: Path,
    device: str = "auto",
    progress: bool = True,
    source: dict[str, Any] | None = None,
    resume: bool = False,
    calibrate: bool = True,
) -> TrainResult:
    """Train ``cfg.model`` on the normal images ``normal`` (split into train/validation) into ``run_dir``.

    ``resume`` continues a killed run from its ``checkpoint.pt``. ``calibrate`` sets the run's
    thresholds from the hold-out (the training images when there is none) after training.
    """
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    if not resume:
        cfg, where = resolve_encoder_source(cfg)  # warns itself where wanted pretrained weights are missing
        log.info("%s", where)
    seed_everything(cfg.train.seed)  # the initial weights depend on the seed alone
    model = build_model(cfg.model)
    train_idx, val_idx = split_train_val(len(normal), cfg.data.val_fraction, cfg.train.seed)
    if not resume and cfg.train.min_steps > 0:  # the epochs that make the preset's number of steps, recorded in config.json
        epochs = epochs_for(cfg.train, len(train_idx), dist.world_size())
        if epochs != cfg.train.epochs:
            log.info("%d training images: %d epochs for at least %d steps", len(train_idx), epochs, cfg.train.min_steps)
        cfg = replace(cfg, train=replace(cfg.train, epochs=epochs, min_steps=0))
    train_set = normal.subset(train_idx, augment=build_augment(cfg.data))
    val_set = normal.subset(val_idx) if val_idx else None
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "training %s (%.2fM parameters): %d train, %d validation images, %s, %s",
        cfg.model.name, n_params / 1e6, len(train_idx), len(val_idx), dev, resolve_precision(cfg.train.precision, dev),
    )  # fmt: skip
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.save_config(run_dir, cfg)
        ckpt.write_json(run_dir / "data.json", (source or {}) | {"n_train": len(train_idx), "n_val": len(val_idx)})
    start = time.perf_counter()
    history = fit(model, train_set, val_set, cfg.train, dev, run_dir=run_dir, progress=progress, resume=resume)
    seconds = time.perf_counter() - start
    if len(cfg.score.kinds) > 1:
        scale_set = val_set if val_set is not None else normal.subset(train_idx)
        cfg = replace(cfg, score=replace(cfg.score, scales=measure_scales(model, scale_set, cfg.score, dev, cfg.train.precision)))
        log.info("score scales (mean of each map on %d normal images): %s", len(scale_set),
                 ", ".join(f"{k} {v:.4g}" for k, v in zip(cfg.score.kinds, cfg.score.scales)))  # fmt: skip
        if dist.is_main():
            ckpt.save_config(run_dir, cfg)
    if calibrate:
        calib_set, about = (
            (val_set, f"the validation hold-out of the training images ({len(val_idx)} normal)")
            if val_set is not None
            else (normal.subset(train_idx), f"the training images ({len(train_idx)} normal; no hold-out)")
        )
        calibrate_on(run_dir, calib_set, about, device, progress=progress)
    return TrainResult(run_dir, history, seconds)


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
    cfg, model = ckpt.load_trained_model(run_dir, dev)
    result = evaluate(model, dataset, cfg.score, dev, precision or cfg.train.precision, progress=progress)
    thresholds = calibrate(result, source, quantile)
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
    cfg = ckpt.load_config(run_dir)
    samples = labelled_folder_samples(val_dir)
    dataset = ImageDataset(samples, cfg.data.image_size, desc=f"reading {val_dir}", progress=progress, cache=cache)
    n_anomalous = sum(s.label for s in samples)
    source = f"{val_dir} ({len(samples) - n_anomalous} normal, {n_anomalous} anomalous)"
    return calibrate_on(run_dir, dataset, source, device, precision, quantile, progress)


def train_run(
    cfg: RunConfig,
    data_root: Path,
    category: str,
    run_dir: Path,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    resume: bool = False,
    val_dir: Path | None = None,
    cache: CacheMode = "auto",
) -> TrainResult:
    """Train on the normal training images of one MVTec-layout category.

    ``val_dir``: a labelled validation folder to set the thresholds on (default: the hold-out).
    ``cache``: decoded images in memory, or decoded from disk every epoch (see :mod:`anovit.data.datasets`).
    """
    if resume:
        check_resumable(run_dir, cfg.train.epochs)
    else:
        check_run_dir(run_dir, force)
    samples = mvtec_samples(data_root, category, "train")  # fails before anything is written
    if val_dir is not None:
        labelled_folder_samples(val_dir)  # the same: check its layout before training
    normal = ImageDataset(samples, cfg.data.image_size, desc=f"reading {category}/train", progress=progress and dist.is_main(),
                          cache=cache)  # fmt: skip
    source = {"data": str(data_root), "category": category}
    result = train_on(cfg, normal, run_dir, device, progress, source, resume, calibrate=val_dir is None)
    if val_dir is not None:
        calibrate_run(run_dir, val_dir, device, progress=progress, cache=cache)
    return result


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
    """Evaluate a trained run on ``test_set``; write ``metrics.json`` and ``scores.csv`` to ``out_dir`` (default: the run).

    ``keep_maps`` keeps the score maps of that many anomalous images (for figures); ``report``
    also writes ``report.html``. With ``thresholds.json`` in the run, the metrics include the F1
    reached at those thresholds.
    """
    dev = resolve_device(device)
    if backend == "torch":
        cfg, model = ckpt.load_trained_model(run_dir, dev)
        scorer = None
    else:  # the exported file scores; the torch weights are not loaded
        cfg, model = ckpt.load_config(run_dir), None
        scorer = backend_scores(load_scorer(run_dir, backend, model_file, device, precision))
    thresholds = load_thresholds(run_dir) if (Path(run_dir) / THRESHOLDS_FILE).is_file() else None
    keep = figure_indices(test_set.samples, keep_maps)
    start = time.perf_counter()
    result = evaluate(model, test_set, cfg.score, dev, precision or cfg.train.precision, batch_size, keep, progress, scorer)
    seconds = time.perf_counter() - start
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    metrics = result.metrics() | (decision_metrics(result, thresholds) if thresholds else {}) | (extra or {}) | {
        "model": cfg.model.name,
        "backend": backend if model_file is None else f"{backend} ({Path(model_file).name})",
        "n_anomalous": int(result.labels.sum()),
        "seconds": round(seconds, 3),
    }
    if dist.is_main():
        ckpt.write_json(out / ckpt.METRICS_FILE, metrics)
        rows = ["image,kind,label,score"] + [
            f"{s.image},{s.defect},{s.label},{score:.8g}" for s, score in zip(test_set.samples, result.image_scores)
        ]
        ckpt.write_text(out / "scores.csv", "\n".join(rows) + "\n")
        if report:
            from .report import write_report

            path = write_report(out / REPORT_FILE, model, cfg, test_set, result, metrics, thresholds, dev, precision, scorer=scorer)
            log.info("report: %s", path)
    return result


def backend_scores(scorer: Scorer) -> Callable[[torch.Tensor], Scores]:
    """A backend's scorer as :func:`anovit.engine.evaluate` calls it: images (B, 3, S, S) in [0, 1] -> Scores."""

    def scores(images: torch.Tensor) -> Scores:
        maps, image = scorer(images.cpu().numpy())
        return Scores(torch.from_numpy(np.asarray(maps, dtype=np.float32)), torch.from_numpy(np.asarray(image, dtype=np.float32)))

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
    """Evaluate a trained run on the MVTec test split of ``category`` (on ``backend``: see :mod:`anovit.backends`)."""
    cfg = ckpt.load_config(run_dir)
    samples = mvtec_samples(data_root, category, "test")
    test_set = ImageDataset(samples, cfg.data.image_size, desc=f"reading {category}/test", progress=progress, cache=cache)
    extra = {"category": category}
    result = test_on(run_dir, test_set, out_dir, device, precision, batch_size, keep_maps, progress, extra, report, backend, model_file)
    return result, test_set


def figure_indices(samples: list[Sample], n: int) -> list[int]:
    """Up to ``n`` anomalous images for a figure, one per defect type in turn."""
    by_defect: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        if s.label == 1:
            by_defect.setdefault(s.defect, []).append(i)
    order = [i for group in itertools.zip_longest(*by_defect.values()) for i in group if i is not None]
    return order[:n]


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A small aligned table: one row per model, columns image AUROC, pixel AUROC, images."""

    def fmt(v: float | int | None) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    width = max(10, *(len(k) + 2 for k in rows))
    lines = [f"{'model':<{width}}{'image AUROC':>13}{'pixel AUROC':>13}{'images':>8}"]
    for name, m in rows.items():
        lines.append(f"{name:<{width}}{fmt(m.get('image_auroc')):>13}{fmt(m.get('pixel_auroc')):>13}{fmt(m.get('n_images')):>8}")
    return "\n".join(lines)
