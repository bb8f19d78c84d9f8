"""The engine as plain functions: ``train_one_epoch``, ``validate``, ``fit``, ``evaluate``."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .config import Precision, ScoreConfig, TrainConfig
from .errors import InputError
from .metrics import StreamingAUROC, image_auroc
from .scoring import score_maps

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AMX or AVX512-BF16); elsewhere torch emulates it."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: Precision, device: torch.device) -> Precision:
    """Turn ``auto`` into the fastest precision that keeps the metrics on ``device``."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass; fp32 is a no-op. fp16 is CUDA-only (with a grad scaler)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise InputError("--precision fp16 needs a CUDA device; use bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def reconstruction_loss(images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """The L2 loss of eq. (1): mean squared error over pixels and channels, in fp32."""
    return (recon.float() - images.float()).pow(2).mean()


def _batches(loader: DataLoader, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    precision: Precision,
    scaler: torch.amp.GradScaler | None = None,
    step: int = 0,
) -> tuple[float, int]:
    """One pass over ``loader``. Returns (mean loss, global step after the epoch)."""
    model.train()
    total, count = 0.0, 0
    for batch in _batches(loader, device):
        images = batch["image"]  # (B, 3, H, W)
        with autocast(device, precision):
            recon = model(images)  # (B, 3, H, W)
        loss = reconstruction_loss(images, recon)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        total += loss.item() * images.shape[0]
        count += images.shape[0]
        step += 1
    return total / max(count, 1), step


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, device: torch.device, precision: Precision) -> float:
    """Mean reconstruction loss over ``loader`` (no augmentation, eval mode)."""
    model.eval()
    total, count = 0.0, 0
    for batch in _batches(loader, device):
        images = batch["image"]
        with autocast(device, precision):
            recon = model(images)
        total += reconstruction_loss(images, recon).item() * images.shape[0]
        count += images.shape[0]
    return total / max(count, 1)


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float | None


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    cfg: TrainConfig,
    device: torch.device,
    run_dir: Path | None = None,
    progress: bool = True,
) -> list[EpochLog]:
    """Train with Adam on the L2 loss; keep the weights of the lowest validation loss.

    With ``run_dir``, every epoch appends to ``log.csv`` and writes the latest weights to
    ``last.safetensors``; the kept weights go to ``model.safetensors`` at the end.
    """
    seed_everything(cfg.seed)
    model.to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(train_set) > cfg.batch_size,
        generator=generator,
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
    )
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size) if val_set is not None and len(val_set) else None
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    precision = resolve_precision(cfg.precision, device)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    history: list[EpochLog] = []
    best_loss, best_state, step = math.inf, None, 0
    bar = tqdm(range(1, cfg.epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        train_loss, step = train_one_epoch(model, loader, optimizer, device, precision, scaler, step)
        val_loss = validate(model, val_loader, device, precision) if val_loader is not None else None
        history.append(EpochLog(epoch, train_loss, val_loss))
        bar.set_postfix(loss=f"{train_loss:.5f}", val=f"{val_loss:.5f}" if val_loss is not None else "-")
        log.debug("epoch %d: train loss %.6f, val loss %s", epoch, train_loss, f"{val_loss:.6f}" if val_loss is not None else "-")
        monitored = val_loss if val_loss is not None else train_loss
        if monitored < best_loss:
            best_loss, best_state = monitored, copy.deepcopy(model.state_dict())
        if run_dir is not None:
            ckpt.write_text(Path(run_dir) / ckpt.LOG_FILE, _history_csv(history))
            ckpt.save_weights(model, Path(run_dir) / ckpt.LAST_FILE, metadata={"epoch": str(epoch)})
    if best_state is not None:
        model.load_state_dict(best_state)
    if run_dir is not None:
        best_epoch = min(history, key=lambda h: h.val_loss if h.val_loss is not None else h.train_loss).epoch
        ckpt.save_weights(model, Path(run_dir) / ckpt.WEIGHTS_FILE, metadata={"epoch": str(best_epoch)})
    return history


def _history_csv(history: Sequence[EpochLog]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["epoch", "train_loss", "val_loss"])
    for h in history:
        writer.writerow([h.epoch, f"{h.train_loss:.8f}", "" if h.val_loss is None else f"{h.val_loss:.8f}"])
    return buf.getvalue()


@dataclass
class Evaluation:
    """Results of :func:`evaluate`. ``maps`` holds the smoothed score maps of the kept images."""

    image_auroc: float | None
    pixel_auroc: float | None
    n_images: int
    image_scores: np.ndarray
    labels: np.ndarray
    maps: dict[int, np.ndarray] = field(default_factory=dict)

    def metrics(self) -> dict[str, float | int | None]:
        return {"image_auroc": self.image_auroc, "pixel_auroc": self.pixel_auroc, "n_images": self.n_images}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    score: ScoreConfig,
    device: torch.device,
    precision: Precision = "fp32",
    batch_size: int = 16,
    keep_maps: Sequence[int] = (),
    progress: bool = True,
) -> Evaluation:
    """Score every image of ``dataset``; image AUROC always, pixel AUROC when it has masks."""
    model.eval().to(device)
    keep = set(keep_maps)
    pixel = StreamingAUROC()
    has_masks = bool(getattr(dataset, "has_masks", False))
    scores, labels, kept = [], [], {}
    loader = DataLoader(dataset, batch_size=batch_size)
    for batch in tqdm(_batches(loader, device), total=len(loader), desc="scoring", disable=not progress, leave=False):
        images = batch["image"]  # (B, 3, H, W)
        with autocast(device, precision):
            recon = model(images)
        result = score_maps(images, recon, score.sigma, score.truncate)  # maps (B, H, W), image (B,)
        if has_masks:
            pixel.update(result.maps, batch["mask"])
        scores.append(result.image.cpu())
        labels.append(batch["label"].cpu())
        for j, i in enumerate(batch["index"].tolist()):
            if i in keep:
                kept[i] = result.maps[j].cpu().numpy()
    image_scores = torch.cat(scores).numpy().astype(np.float64)
    label_arr = torch.cat(labels).numpy()
    return Evaluation(
        image_auroc=image_auroc(image_scores, label_arr),
        pixel_auroc=pixel.compute() if has_masks else None,
        n_images=len(label_arr),
        image_scores=image_scores,
        labels=label_arr,
        maps=kept,
    )
