"""Run-folder I/O: atomic writes, safetensors weights, the resolved config.

Nothing here executes code on load: weights are safetensors, everything else is JSON or CSV.
Every file is written to a temporary name in the same folder and renamed into place, so a
killed process never leaves a half-written file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import RunConfig
from .errors import InputError
from .files import atomic_write, write_json, write_text  # noqa: F401 (re-exported: ckpt.write_text ...)

if TYPE_CHECKING:
    from .training import TrainState

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.safetensors"  # the best weights while training runs; renamed model.safetensors at the end
LOG_FILE = "log.csv"
METRICS_FILE = "metrics.json"


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into ``model``; a file of another model or size is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    _check_state_dict(path, model, state)
    model.load_state_dict(state)


def _check_state_dict(path: Path, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """A clear error when ``state`` belongs to another model or configuration."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise InputError(
            f"{path}: weights do not belong to this model configuration "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})"
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise InputError(f"{path}: {key} has shape {tuple(value.shape)}, this configuration expects {tuple(own[key].shape)}")


def save_config(run_dir: Path, cfg: RunConfig) -> None:
    write_text(Path(run_dir) / CONFIG_FILE, cfg.to_json() + "\n")


def load_config(run_dir: Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: run folder not found")
    return RunConfig.load(run_dir / CONFIG_FILE)


def load_trained_model(run_dir: Path, device: torch.device | str = "cpu") -> tuple[RunConfig, nn.Module]:
    """Rebuild a trained model from its run folder (config.json + model.safetensors), in eval mode."""
    from .models import build_model  # late import: models import timm, which is slow to load

    cfg = load_config(run_dir)
    model = build_model(cfg.model, load_encoder_weights=False)
    load_weights(model, Path(run_dir) / WEIGHTS_FILE)
    return cfg, model.to(device).eval()


def save_best(path: Path, weights: dict[str, torch.Tensor], epoch: int, loss: float) -> None:
    """The best weights so far, with the epoch and the loss that made them best."""
    state = {k: v.contiguous() for k, v in weights.items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={"epoch": str(epoch), "loss": repr(float(loss))}))


def _load_best(path: Path) -> tuple[dict[str, torch.Tensor], int, float] | None:
    """(weights, epoch, loss) from :func:`save_best` (or a finished run's model.safetensors); None without the file or its loss."""
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
    from .training import EpochLog, TrainState

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from (the run stopped before its first epoch ended)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") not in ("anovit-train-state-1", "anovit-train-state-2"):
            raise ValueError("not an anovit training checkpoint")
    except Exception as exc:  # pickle errors of many kinds for a corrupted or foreign file
        raise InputError(f"{path}: cannot resume from this file ({type(exc).__name__}: {str(exc)[:200]})") from None
    _check_state_dict(path, model, payload["model"])
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    generator.set_state(payload["loader_rng"])
    if scaler is not None and payload["scaler"] is not None:
        scaler.load_state_dict(payload["scaler"])
    best_weights, best_epoch, best_loss = payload.get("best_weights"), payload["best_epoch"], payload["best_loss"]  # format 1
    best = _load_best(path.parent / BEST_FILE) or _load_best(path.parent / WEIGHTS_FILE)  # the latter: a finished run trained longer
    if best is not None:  # format 2; a best file newer than the checkpoint (killed between the two writes) is still a measured best
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
