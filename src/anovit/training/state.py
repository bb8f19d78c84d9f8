"""The resumable train state: the epoch log, ``checkpoint.pt`` (model, optimiser, random state) and
``best.safetensors`` (the best weights so far).

Nothing here executes code on load: ``torch.load(weights_only=True)`` reads plain tensors and numbers.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from anovit.errors import InputError
from anovit.files import BEST_FILE, WEIGHTS_FILE, atomic_write
from anovit.models.checkpoint import check_state_dict


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float | None


@dataclass
class TrainState:
    """What a resumed run needs besides the model and optimiser."""

    epoch: int = 0
    step: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    best_weights: dict[str, torch.Tensor] | None = None
    history: list[EpochLog] = field(default_factory=list)


def history_csv(history: Sequence[EpochLog]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["epoch", "train_loss", "val_loss"])
    for h in history:
        writer.writerow([h.epoch, f"{h.train_loss:.8f}", "" if h.val_loss is None else f"{h.val_loss:.8f}"])
    return buf.getvalue()


def save_best(path: Path, weights: dict[str, torch.Tensor], epoch: int, loss: float) -> None:
    """The best weights so far, with the epoch and the loss that made them best."""
    state = {k: v.contiguous() for k, v in weights.items()}
    atomic_write(
        path, lambda tmp: save_file(state, str(tmp), metadata={"epoch": str(epoch), "loss": repr(float(loss))})
    )


def _load_best(path: Path) -> tuple[dict[str, torch.Tensor], int, float] | None:
    """(weights, epoch, loss) from :func:`save_best` (or a finished run's model.safetensors); None without the file or
    its loss."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "loss" not in meta:  # written before the loss was recorded
            return None
        return load_file(str(path)), int(meta["epoch"]), float(meta["loss"])
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot resume from this file ({type(exc).__name__}: {str(exc)[:200]})") from None


def save_train_state(
    path: Path,
    state: TrainState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Everything a killed run needs to go on, in one atomic file of plain tensors and numbers.

    The best weights are not in it: they are in ``best.safetensors`` (written first by the caller).
    ``torch.load(weights_only=True)`` reads it back: nothing in it can run code.
    """
    payload = {
        "format": "anovit-train-state-2",
        "epoch": state.epoch,
        "step": state.step,
        "best_loss": state.best_loss,
        "best_epoch": state.best_epoch,
        "history": [[h.epoch, h.train_loss, h.val_loss] for h in state.history],
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader_rng": generator.get_state(),
        "scaler": scaler.state_dict() if scaler is not None else None,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_train_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    scaler: torch.amp.GradScaler | None,
) -> TrainState:
    """Restore model, optimiser and random state from :func:`save_train_state`; returns the rest."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from (the run stopped before its first epoch ended)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") not in ("anovit-train-state-1", "anovit-train-state-2"):
            raise ValueError("not an anovit training checkpoint")
    except Exception as exc:  # pickle errors of many kinds for a corrupted or foreign file
        raise InputError(f"{path}: cannot resume from this file ({type(exc).__name__}: {str(exc)[:200]})") from None
    check_state_dict(path, model, payload["model"])
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    generator.set_state(payload["loader_rng"])
    if scaler is not None and payload["scaler"] is not None:
        scaler.load_state_dict(payload["scaler"])
    best_weights, best_epoch, best_loss = (
        payload.get("best_weights"),
        payload["best_epoch"],
        payload["best_loss"],
    )  # format 1
    best = _load_best(path.parent / BEST_FILE) or _load_best(
        path.parent / WEIGHTS_FILE
    )  # the latter: a finished run trained longer
    # format 2; a best file newer than the checkpoint (killed between the two writes) is still a measured best
    if best is not None:
        best_weights, best_epoch, best_loss = best
    elif best_weights is None:  # the best file went missing: the next epoch becomes the best
        best_loss = float("inf")
    return TrainState(
        epoch=payload["epoch"],
        step=payload["step"],
        best_loss=best_loss,
        best_epoch=best_epoch,
        best_weights=best_weights,
        history=[EpochLog(int(e), float(t), None if v is None else float(v)) for e, t, v in payload["history"]],
    )
