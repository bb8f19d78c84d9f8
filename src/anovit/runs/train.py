"""Train a run: the glue between data, models, the training loop and the run folder.

``train_on`` works on any dataset of this package (MVTec layout or one-class); ``train_run`` reads
the MVTec layout from disk first; ``train`` is the public API (:func:`anovit.train`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from anovit.config import CacheMode, RunConfig
from anovit.data import ImageDataset, labelled_folder_samples, mvtec_samples, split_train_val
from anovit.data.datasets import SplittableDataset
from anovit.data.transforms import build_augment
from anovit.deploy.api import Run, load_run
from anovit.errors import InputError
from anovit.evaluation.evaluate import measure_channel_energy, measure_peak_levels, measure_scales
from anovit.evaluation.position import fit_position_norm
from anovit.evaluation.thresholds import Thresholds, save_thresholds
from anovit.evaluation.thresholds import calibrate as thresholds_from
from anovit.files import CHECKPOINT_FILE, LOG_FILE, WEIGHTS_FILE, clear_derived, save_config, write_json
from anovit.models import build_model
from anovit.models.checkpoint import save_weights
from anovit.models.knn import PatchKNN
from anovit.models.weights import resolve_encoder_source, resolve_run_config
from anovit.presets import DEFAULT_PRESET
from anovit.runs.calibrate import calibrate_on, calibrate_run
from anovit.runtime import distributed as dist
from anovit.runtime.device import resolve_device, seed_everything
from anovit.runtime.precision import resolve_precision
from anovit.scoring.position import MIN_IMAGES
from anovit.training.loop import fit, with_min_steps
from anovit.training.memory_bank import fit_bank
from anovit.training.state import EpochLog

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    history: list[EpochLog]
    seconds: float


def check_run_dir(run_dir: Path, force: bool) -> None:
    """Refuse to overwrite a finished run unless ``force``."""
    if (Path(run_dir) / WEIGHTS_FILE).exists() and not force:
        raise InputError(
            f"{run_dir}: already holds a trained model; pass --force to overwrite it or choose another --out"
        )


def check_resumable(run_dir: Path, epochs: int) -> None:
    """``--resume`` needs a checkpoint; on a finished run, it needs more epochs than were trained (to train longer)."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise InputError(
            f"{run_dir / CHECKPOINT_FILE}: no checkpoint to resume from (none written yet, or --checkpoint-every 0)"
        )
    log_file = run_dir / LOG_FILE
    done = len(log_file.read_text().splitlines()) - 1 if log_file.is_file() else 0
    if (run_dir / WEIGHTS_FILE).exists() and epochs <= done:
        raise InputError(
            f"{run_dir}: this run finished its {done} epochs; pass --resume --epochs N with N > {done} to train "
            "longer, or --force to train it again"
        )


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
    model = build_model(cfg.model, load_encoder_weights=not resume)  # resuming: the checkpoint holds every weight
    if cfg.model.position_norm and len(normal) < MIN_IMAGES:
        raise InputError(
            f"--position-norm measures each pixel's spread on at least {MIN_IMAGES} normal images; "
            f"this run has {len(normal)}: add images, or train with --no-position-norm"
        )
    train_idx, val_idx = split_train_val(len(normal), cfg.data.val_fraction, cfg.train.seed)
    # the epochs that make the preset's number of steps, recorded in config.json (knn takes no steps)
    if not resume and cfg.train.min_steps > 0 and cfg.model.name != "knn":
        spent = with_min_steps(cfg.train, len(train_idx), dist.world_size())
        if spent.epochs != cfg.train.epochs:
            log.info(
                "%d training images: %d epochs for at least %d steps, a checkpoint every %d",
                len(train_idx),
                spent.epochs,
                cfg.train.min_steps,
                spent.checkpoint_every,
            )
        cfg = replace(cfg, train=spent)
    train_set = normal.subset(train_idx, augment=build_augment(cfg.data))
    val_set = normal.subset(val_idx) if val_idx else None
    n_params = sum(p.numel() for p in model.parameters())
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)  # a frozen encoder is not
    log.info(
        "training %s (%.2fM parameters, %.2fM of them trained): %d train, %d validation images, %s, %s",
        cfg.model.name,
        n_params / 1e6,
        n_trained / 1e6,
        len(train_idx),
        len(val_idx),
        dev,
        resolve_precision(cfg.train.precision, dev),
    )
    data = (source or {}) | {"n_train": len(train_idx), "n_val": len(val_idx)}
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(run_dir, cfg)
        write_json(run_dir / "data.json", data)
    holdout, about = (
        (val_set, f"the validation hold-out of the training images ({len(val_idx)} normal)")
        if val_set is not None
        else (normal.subset(train_idx), f"the training images ({len(train_idx)} normal; no hold-out)")
    )
    if getattr(model, "map_channels", None) == "ordinary":  # what the token decoder learns and its map localises with
        with torch.random.fork_rng(devices=[]):  # measuring leaves training's random stream as the seed set it
            model.set_ordinary_channels(measure_channel_energy(model, holdout, dev, cfg.train.precision))
        left_out = (model.ordinary == 0).nonzero().tolist()
        log.info("token map: massive channels left out ([group, channel]) on %s: %s", about, left_out or "none")
    start = time.perf_counter()
    if cfg.model.name == "knn":  # no training: the memory bank of the training images' patch features
        cfg = _build_bank(cfg, model, normal.subset(train_idx), run_dir, dev, progress, data)
        history: list[EpochLog] = []
    else:
        history = fit(model, train_set, val_set, cfg.train, dev, run_dir=run_dir, progress=progress, resume=resume)
    seconds = time.perf_counter() - start
    if dist.is_main() and (gone := clear_derived(run_dir)):  # they described the previous weights
        log.info("removed what the previous model made: %s", ", ".join(gone))
    if getattr(model, "merge", None) == "max":  # the token groups' peak levels, saved with the weights
        model.set_peak_levels(measure_peak_levels(model, holdout, dev, cfg.train.precision, border=cfg.score.border))
        if dist.is_main():
            save_weights(model, run_dir / WEIGHTS_FILE)
        peaks = ", ".join(f"{v:.4g}" for v in model.group_peaks.tolist())
        log.info("token groups' peak levels on %s: %s", about, peaks)
    if len(cfg.score.kinds) > 1:
        cfg = replace(
            cfg, score=replace(cfg.score, scales=measure_scales(model, holdout, cfg.score, dev, cfg.train.precision))
        )
        log.info(
            "score scales (mean of each map on %d normal images): %s",
            len(holdout),
            ", ".join(f"{k} {v:.4g}" for k, v in zip(cfg.score.kinds, cfg.score.scales)),
        )
        if dist.is_main():
            save_config(run_dir, cfg)
    if cfg.model.position_norm:
        thresholds = _fit_position_norm(cfg, model, normal, holdout, about, run_dir, dev, progress)
        if calibrate and dist.is_main():
            save_thresholds(run_dir, thresholds)
    elif calibrate:
        calibrate_on(run_dir, holdout, about, device, progress=progress)
    return TrainResult(run_dir, history, seconds)


def _fit_position_norm(
    cfg: RunConfig,
    model: torch.nn.Module,
    normal: SplittableDataset,
    holdout: Dataset,
    about: str,
    run_dir: Path,
    device: torch.device,
    progress: bool,
) -> Thresholds:
    """Measure the model's position norm on the hold-out (every normal image when it has fewer than
    :data:`MIN_IMAGES`), save the weights that now hold it, and return thresholds from those images'
    leave-one-out scores."""
    if len(holdout) < MIN_IMAGES:
        holdout, about = normal, f"all {len(normal)} normal images (the hold-out is too small)"
    at = resolve_precision(cfg.train.precision, device)
    measured = fit_position_norm(model, holdout, cfg.score, device, at, progress)
    if dist.is_main():
        save_weights(model, run_dir / WEIGHTS_FILE)
    log.info("position norm: the score map's mean and spread at each pixel on %s", about)
    thresholds = thresholds_from(measured, f"{about}, each scored without its own statistics", precision=at)
    for note in thresholds.notes:
        log.info("thresholds: %s", note)
    return thresholds


def _build_bank(
    cfg: RunConfig,
    model: PatchKNN,
    train_set: Dataset,
    run_dir: Path,
    device: torch.device,
    progress: bool,
    data: dict[str, Any],
) -> RunConfig:
    """Fill the knn model's memory bank and save it, with the config that records its size and ``data`` (the run's
    data.json) with its size and memory; the config."""
    if dist.world_size() > 1:
        raise InputError("--model knn builds its memory bank in one process; run it without torchrun")
    t = cfg.train
    size = fit_bank(model, train_set, cfg.model.knn_coreset, device, t.precision, t.batch_size, t.seed, progress)
    cfg = replace(cfg, model=replace(cfg.model, knn_bank=size))
    save_config(run_dir, cfg)
    save_weights(model, run_dir / WEIGHTS_FILE)
    bank = {"patches": size, "dims": model.dim, "mib": round(model.bank.numel() * 4 / 2**20, 2)}
    write_json(run_dir / "data.json", data | {"memory_bank": bank})
    return cfg


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
    normal = ImageDataset(
        samples,
        cfg.data.image_size,
        desc=f"reading {category}/train",
        progress=progress and dist.is_main(),
        cache=cache,
    )
    source = {"data": str(data_root), "category": category}
    result = train_on(cfg, normal, run_dir, device, progress, source, resume, calibrate=val_dir is None)
    if val_dir is not None:
        calibrate_run(run_dir, val_dir, device, progress=progress, cache=cache)
    return result


def train(
    data: str | Path,
    category: str,
    out: str | Path,
    model: str = "anovit",
    preset: str = DEFAULT_PRESET,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    **options: Any,
) -> Run:
    """Train on ``data``/``category``/train/good into ``out`` and return the loaded run.

    ``options`` are those of :func:`anovit.resolve.resolve_config` (``epochs``, ``image_size``,
    ``encoder_weights``, ...).
    """
    cfg, _ = resolve_run_config(
        preset, model=model, **options
    )  # the weights found, or the from-scratch fallback (logged)
    train_run(cfg, Path(data).expanduser(), category, Path(out), device, force, progress)
    return load_run(out, device=device)
