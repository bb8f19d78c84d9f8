"""A model's weights on disk: safetensors files, checked against the model they are loaded into, and
the trained model of a run folder rebuilt from its ``config.json`` and ``model.safetensors``.

Nothing here executes code on load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from anovit.config import RunConfig
from anovit.errors import InputError
from anovit.files import WEIGHTS_FILE, atomic_write, load_config
from anovit.models import build_model


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
    check_state_dict(path, model, state)
    model.load_state_dict(state)


def check_state_dict(path: Path, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
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
            raise InputError(
                f"{path}: {key} has shape {tuple(value.shape)}, this configuration expects {tuple(own[key].shape)}"
            )


def load_trained_model(run_dir: Path, device: torch.device | str = "cpu") -> tuple[RunConfig, nn.Module]:
    """Rebuild a trained model from its run folder (config.json + model.safetensors), in eval mode."""
    cfg = load_config(run_dir)
    model = build_model(cfg.model, load_encoder_weights=False)
    load_weights(model, Path(run_dir) / WEIGHTS_FILE)
    return cfg, model.to(device).eval()
