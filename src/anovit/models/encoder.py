"""ViT encoder (timm): image in [0, 1] -> patch-token grid (B, D, H/p, W/p).

The class token (and any other prefix token: DeiT's distillation token, register tokens) is
dropped and the N patch tokens are put back on their sqrt(N) x sqrt(N) grid, with no
fully-connected bottleneck (paper, section 3.1).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from ..errors import InputError

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")


class ViTEncoder(nn.Module):
    """A timm Vision Transformer whose patch tokens form a feature map.

    Args:
        name: any timm ViT name, e.g. ``vit_base_patch16_384`` (the paper's ViT-B/16).
        image_size: square input size; the positional embedding follows it (timm ``img_size=``).
        patch_size: patch size p; ``image_size`` must be a multiple of it.
        overrides: extra timm constructor arguments (``embed_dim``, ``depth``, ``num_heads``...).
        pretrained: load timm's pretrained weights for ``name`` (from the hub).
        weights: a local weights file (.safetensors/.pth/.npz) instead of the hub.
    """

    def __init__(
        self,
        name: str,
        image_size: int,
        patch_size: int,
        overrides: dict[str, Any] | None = None,
        pretrained: bool = False,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise InputError(
                f"image size {image_size} is not divisible by the patch size {patch_size}; "
                f"choose an image size that is a multiple of {patch_size}"
            )
        kwargs: dict[str, Any] = dict(img_size=image_size, patch_size=patch_size, num_classes=0)
        kwargs.update(overrides or {})
        self.vit = _create_vit(name, pretrained, weights, kwargs)
        self.num_prefix_tokens: int = int(getattr(self.vit, "num_prefix_tokens", 1))
        self.grid: tuple[int, int] = tuple(self.vit.patch_embed.grid_size)  # (H/p, W/p)
        self.embed_dim: int = int(self.vit.embed_dim)
        cfg = getattr(self.vit, "pretrained_cfg", {}) or {}
        mean = torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5)), dtype=torch.float32)
        std = torch.tensor(cfg.get("std", (0.5, 0.5, 0.5)), dtype=torch.float32)
        # Buffers, not parameters: the normalisation the (pretrained) ViT expects, saved with the run.
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> all output tokens (B, prefix + N, D)."""
        x = (x - self.mean) / self.std
        return self.vit.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> feature map (B, D, H/p, W/p)."""
        tokens = self.forward_tokens(x)  # (B, prefix + N, D)
        patches = tokens[:, self.num_prefix_tokens :]  # (B, N, D)
        b, n, d = patches.shape
        gh, gw = self.grid
        if n != gh * gw:
            raise RuntimeError(f"encoder returned {n} patch tokens, expected {gh}x{gw}")
        return patches.transpose(1, 2).reshape(b, d, gh, gw)  # (B, D, H/p, W/p)


def _create_vit(name: str, pretrained: bool, weights: str | Path | None, kwargs: dict[str, Any]) -> nn.Module:
    if name not in timm.list_models():
        raise InputError(f"unknown timm model {name!r}; see timm.list_models('vit_*') for ViT names")
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"{path}: encoder weights file not found")
        if not path.name.endswith(WEIGHT_SUFFIXES):
            raise InputError(f"{path}: expected a weights file ending in one of {', '.join(WEIGHT_SUFFIXES)}")
        # .npz files are the original JAX checkpoints; timm converts them with its own loader.
        overlay = dict(file=str(path), custom_load=path.suffix == ".npz")
        log.info("encoder %s: loading weights from %s", name, path)
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except Exception as exc:  # timm raises RuntimeError/KeyError/ValueError for mismatches
            raise InputError(f"{path}: could not load it as weights for {name} ({type(exc).__name__}: {exc})") from None
    if pretrained:
        log.info("encoder %s: fetching pretrained weights through timm", name)
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # offline: huggingface_hub / urllib errors of many kinds
            raise InputError(
                f"could not fetch pretrained weights for {name} ({type(exc).__name__}: {str(exc)[:200]}); "
                f"without network, download them elsewhere and pass --encoder-weights PATH "
                f"(.safetensors/.pth/.npz), or drop --pretrained to train from a random initialisation"
            ) from None
    return timm.create_model(name, pretrained=False, **kwargs)
