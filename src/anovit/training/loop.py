"""Training as plain functions: ``fit`` (epochs, validation, best weights, checkpoints), ``train_one_epoch``,
``validate``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from anovit.config import LrSchedule, Precision, TrainConfig
from anovit.data.datasets import loader_workers
from anovit.errors import TrainingDiverged
from anovit.files import BEST_FILE, CHECKPOINT_FILE, LOG_FILE, WEIGHTS_FILE, write_text
from anovit.models.checkpoint import save_weights
from anovit.runtime import distributed as dist
from anovit.runtime.device import batches_on, seed_everything
from anovit.runtime.precision import autocast, resolve_precision
from anovit.training.objectives import Objective, Step, build_objective, feature_loss, reconstruct, segmentation_loss
from anovit.training.state import EpochLog, TrainState, history_csv, load_train_state, save_best, save_train_state
from anovit.training.token_cache import with_cached_targets

log = logging.getLogger(__name__)


def reconstruction_loss(images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """The L2 loss of eq. (1): mean squared error over pixels and channels, in fp32."""
    return (recon.float() - images.float()).pow(2).mean()


def step_loss(model: nn.Module, step: Step, feature_weight: float = 0.0) -> torch.Tensor:
    """The L2 loss of the step's output against its target, plus ``feature_weight`` x the feature
    loss and the segmentation head's loss where they apply; a scalar in fp32."""
    if step.loss is not None:  # an objective with a loss of its own (tokens)
        return step.loss.float()
    loss = reconstruction_loss(step.target, step.output)
    if feature_weight > 0:
        loss = loss + feature_weight * feature_loss(model, step.output, step.target).float()
    segment = segmentation_loss(model, step)
    return loss if segment is None else loss + segment


def check_finite(loss: torch.Tensor, step: int) -> None:
    """Raise :class:`TrainingDiverged` when the loss is NaN or infinite on this rank *or any other*.

    Under torch.distributed every rank shares its loss (one small all-reduce per step), so all of
    them stop at the same step with the same message; a rank that stopped alone would leave the
    others waiting forever in the next gradient all-reduce.
    """
    if not dist.is_distributed():
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the loss became {loss.item()} at step {step}")
        return
    losses = torch.zeros(dist.world_size(), dtype=torch.float64, device=loss.device)  # (W,): rank r's loss in slot r
    losses[dist.rank()] = loss.detach().double()
    losses = dist.all_reduce_sum(losses).cpu()
    bad = [(r, v) for r, v in enumerate(losses.tolist()) if not math.isfinite(v)]
    if bad:
        where = ", ".join(f"{v} on rank {r}" for r, v in bad)
        raise TrainingDiverged(f"the loss became {where} at step {step}")


WARMUP_SHARE = 0.05  # the cosine schedule's linear warm-up, as a share of the run's steps


def lr_factor(schedule: LrSchedule, step: int, total: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``total``, as a share of the configured one."""
    if schedule == "constant" or total <= 1:
        return 1.0
    warmup = max(1, round(WARMUP_SHARE * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    precision: Precision,
    scaler: torch.amp.GradScaler | None = None,
    step: int = 0,
    objective: Objective = reconstruct,
    generator: torch.Generator | None = None,
    feature_weight: float = 0.0,
    lr_at: Callable[[int], float] | None = None,
) -> tuple[float, int]:
    """One pass over ``loader``. Returns (mean loss over all ranks, global step after the epoch).

    ``objective`` turns a batch into a :class:`anovit.training.objectives.Step` (output, target, ...); its
    random choices come from ``generator``. The loss is :func:`step_loss`. ``lr_at(step)``: the learning rate of
    each step (the optimiser's own where None).
    """
    model.train()
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    sums = torch.zeros(2, dtype=torch.float64)  # (loss * images, images)
    for batch in batches_on(loader, device):
        images = _inputs(batch)  # (B, 3, H, W), or cached token targets (B, G, N, D)
        with autocast(device, precision):
            loss = step_loss(model, objective(model, images, generator), feature_weight)
        check_finite(loss, step)
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        sums += torch.tensor([loss.item() * images.shape[0], images.shape[0]], dtype=torch.float64)
        step += 1
    sums = dist.all_reduce_sum(sums.to(device)).cpu()
    return float(sums[0] / sums[1].clamp_min(1)), step


def _inputs(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """What the objective takes from a batch: its images, or the tokens objective's cached targets."""
    return batch["image"] if "image" in batch else batch["tokens"]


VAL_SEED = 12345  # the validation's objective draws the same masks / anomalies every epoch


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    precision: Precision,
    objective: Objective = reconstruct,
    feature_weight: float = 0.0,
) -> float:
    """Mean loss of ``objective`` (as in training) over ``loader`` (no augmentation, eval mode, fixed draws), over all
    ranks."""
    model.eval()
    generator = torch.Generator().manual_seed(VAL_SEED + dist.rank())
    sums = torch.zeros(2, dtype=torch.float64)
    for batch in batches_on(loader, device):
        images = _inputs(batch)
        with autocast(device, precision):
            loss = step_loss(model, objective(model, images, generator), feature_weight).item()
        sums += torch.tensor([loss * images.shape[0], images.shape[0]], dtype=torch.float64)
    sums = dist.all_reduce_sum(sums.to(device)).cpu()
    return float(sums[0] / sums[1].clamp_min(1))


def epochs_for(cfg: TrainConfig, n_train: int, world_size: int = 1) -> int:
    """``cfg.epochs``, or more where that many epochs of ``n_train`` images would make fewer than
    ``cfg.min_steps`` optimiser steps (counted as :func:`fit`'s loader batches them)."""
    if cfg.min_steps <= 0 or n_train <= 0:
        return cfg.epochs
    per_rank = math.ceil(n_train / world_size)
    steps = per_rank // cfg.batch_size if per_rank > cfg.batch_size else 1  # drop_last when there is more than a batch
    return max(cfg.epochs, math.ceil(cfg.min_steps / steps))


def with_min_steps(cfg: TrainConfig, n_train: int, world_size: int = 1) -> TrainConfig:
    """``cfg`` with the epochs of :func:`epochs_for` and ``min_steps`` spent (0). The checkpoint interval grows with
    the added epochs, so that a small set writes as many checkpoints as the preset's epochs would (scikit-learn
    digits: every 8 epochs of ~1 s, not a 90 MB file every second)."""
    epochs = epochs_for(cfg, n_train, world_size)
    every = cfg.checkpoint_every
    if every > 0 and epochs > cfg.epochs > 0:
        every = max(every, epochs * every // cfg.epochs)
    return replace(cfg, epochs=epochs, checkpoint_every=every, min_steps=0)


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    cfg: TrainConfig,
    device: torch.device,
    run_dir: Path | None = None,
    progress: bool = True,
    resume: bool = False,
) -> list[EpochLog]:
    """Train with Adam on the L2 loss of ``cfg.objective``; keep the weights of the lowest validation loss.

    With ``run_dir``, every epoch rewrites ``log.csv``; every ``cfg.checkpoint_every`` epochs (and
    after the last) ``checkpoint.pt`` (model, optimiser, epoch, random state) and, when they changed,
    the best weights so far in ``best.safetensors``, which becomes ``model.safetensors`` at the end.
    ``resume`` continues from ``checkpoint.pt``. Under torch.distributed the model is wrapped in
    DistributedDataParallel, each rank sees its shard, and rank 0 alone writes. The tokens objective on a set it
    reads more than ``cfg.token_views`` times trains on that many views of each image, encoded once
    (:mod:`anovit.training.token_cache`).
    """
    seed_everything(cfg.seed)
    model.to(device)
    precision = resolve_precision(cfg.precision, device)
    # before a resume restores the random state, so that a resumed run gets the same views
    train_set, val_set, cached = with_cached_targets(
        model, train_set, val_set, cfg, device, precision, progress and dist.is_main()
    )
    net: nn.Module = model
    if dist.is_distributed():
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = DistributedSampler(train_set, shuffle=True, seed=cfg.seed) if dist.is_distributed() else None
    per_rank = len(sampler) if sampler is not None else len(train_set)
    workers = cfg.num_workers or loader_workers(train_set)  # images decoded on access need worker processes
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=per_rank > cfg.batch_size,
        generator=generator,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    val_loader = None
    if val_set is not None and len(val_set):
        val_workers = loader_workers(val_set)
        val_loader = DataLoader(
            val_set,
            batch_size=cfg.batch_size,
            sampler=dist.ShardSampler(len(val_set)),
            num_workers=val_workers,
            persistent_workers=val_workers > 0,
        )
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    total_steps = cfg.epochs * len(loader)

    def lr_at(step: int) -> float:  # from the step alone, so a resumed run continues the same schedule
        return cfg.lr * lr_factor(cfg.lr_schedule, step, total_steps)

    objective = build_objective(cfg, cached=cached)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    state = TrainState()
    if resume:
        if run_dir is None:
            raise ValueError("resume needs a run_dir")
        state = load_train_state(Path(run_dir) / CHECKPOINT_FILE, model, optimizer, generator, scaler)
        log.info("resuming after epoch %d of %d", state.epoch, cfg.epochs)
    writes = run_dir is not None and dist.is_main()
    saved_epoch, best_saved = state.epoch, state.best_weights is not None
    epochs = range(state.epoch + 1, cfg.epochs + 1)
    bar = tqdm(epochs, desc="training", unit="epoch", disable=not progress or not dist.is_main())
    for epoch in bar:
        if sampler is not None:
            sampler.set_epoch(epoch)
        try:
            train_loss, state.step = train_one_epoch(
                net,
                loader,
                optimizer,
                device,
                precision,
                scaler,
                state.step,
                objective,
                generator,
                cfg.feature_loss,
                lr_at,
            )
        except TrainingDiverged as exc:
            where = ""
            if run_dir is not None and saved_epoch:
                where = f"; the last good checkpoint (epoch {saved_epoch}) is in {run_dir}"
            elif run_dir is not None:
                where = "; no checkpoint was written yet"
            raise TrainingDiverged(f"{exc} (epoch {epoch}); training stopped{where}") from None
        val_loss = (
            validate(net, val_loader, device, precision, objective, cfg.feature_loss)
            if val_loader is not None
            else None
        )
        state.history.append(EpochLog(epoch, train_loss, val_loss))
        bar.set_postfix(loss=f"{train_loss:.5f}", val=f"{val_loss:.5f}" if val_loss is not None else "-")
        log.debug(
            "epoch %d: train loss %.6f, val loss %s",
            epoch,
            train_loss,
            f"{val_loss:.6f}" if val_loss is not None else "-",
        )
        monitored = val_loss if val_loss is not None else train_loss
        if monitored < state.best_loss:
            state.best_loss, state.best_epoch = monitored, epoch
            state.best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best_saved = False
        state.epoch = epoch
        if writes:
            write_text(Path(run_dir) / LOG_FILE, history_csv(state.history))
        every = cfg.checkpoint_every
        if run_dir is not None and every > 0 and (epoch % every == 0 or epoch == cfg.epochs):
            if writes:
                if not best_saved and state.best_weights is not None:  # before the checkpoint that refers to them
                    save_best(Path(run_dir) / BEST_FILE, state.best_weights, state.best_epoch, state.best_loss)
                save_train_state(Path(run_dir) / CHECKPOINT_FILE, state, model, optimizer, generator, scaler)
            saved_epoch, best_saved = epoch, True  # on every rank, so that they all say the same on a NaN
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    if writes:
        save_weights(
            model,
            Path(run_dir) / WEIGHTS_FILE,
            metadata={"epoch": str(state.best_epoch), "loss": repr(float(state.best_loss))},
        )
        (Path(run_dir) / BEST_FILE).unlink(missing_ok=True)  # now model.safetensors
    dist.barrier()
    return state.history
