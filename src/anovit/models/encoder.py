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
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from torch import nn

from anovit.config import check_patch_stride
from anovit.errors import InputError

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
        mask_token: add a learned mask token that replaces hidden patches (``inpaint`` objective).
    """

    def __init__(
        self,
        name: str,
        image_size: int,
        patch_size: int,
        overrides: dict[str, Any] | None = None,
        pretrained: bool = False,
        weights: str | Path | None = None,
        mask_token: bool = False,
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
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim)) if mask_token else None
        if self.mask_token is not None:
            nn.init.normal_(self.mask_token, std=0.02)

    def forward_tokens(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> all output tokens (B, prefix + N, D).

        ``hidden`` (B, N) bool: patches whose embedding is replaced by the mask token before the
        position embedding (the ``inpaint`` objective), so the ViT sees only where they are.
        """
        x = (x - self.mean) / self.std
        if hidden is None:
            return self.vit.forward_features(x)
        if self.mask_token is None:
            raise ValueError("this encoder has no mask token; build it with mask_token=True to hide patches")
        vit = self.vit
        t = vit.patch_embed(x)  # (B, N, D)
        t = torch.where(hidden.unsqueeze(-1), self.mask_token.to(t.dtype), t)
        t = vit.norm_pre(vit.patch_drop(vit._pos_embed(t)))  # (B, prefix + N, D)
        return vit.norm(vit.blocks(t))

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> feature map (B, D, H/p, W/p); ``hidden`` as in :meth:`forward_tokens`."""
        tokens = self.forward_tokens(x, hidden)  # (B, prefix + N, D)
        patches = tokens[:, self.num_prefix_tokens :]  # (B, N, D)
        b, n, d = patches.shape
        gh, gw = self.grid
        if n != gh * gw:
            raise RuntimeError(f"encoder returned {n} patch tokens, expected {gh}x{gw}")
        return patches.transpose(1, 2).reshape(b, d, gh, gw)  # (B, D, H/p, W/p)


def _create_vit(name: str, pretrained: bool, weights: str | Path | None, kwargs: dict[str, Any]) -> nn.Module:
    # a pretrained tag (vit_tiny_patch16_224.augreg_in21k_ft_in1k) is allowed
    if name.split(".")[0] not in timm.list_models():
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


def tile_side(image_size: int, tiles: int) -> int:
    """The side of each of ``tiles`` x ``tiles`` tiles of a square ``image_size`` image (:class:`FeatureReference`)."""
    if tiles < 1 or image_size % tiles:
        raise InputError(f"image size {image_size} does not split into {tiles} x {tiles} equal tiles")
    return image_size // tiles


def tiled_reference(
    encoder: str,
    image_size: int,
    patch_size: int,
    layers: tuple[int, ...],
    tiles: int = 1,
    encoder_overrides: dict[str, Any] | None = None,
    pretrained: bool = False,
    encoder_weights: str | Path | None = None,
    stride: int = 0,
) -> FeatureReference:
    """The frozen encoder of the tokens objective and of the knn baseline: the ViT ``encoder`` built for one tile
    (:func:`tile_side`), its blocks ``layers`` read from an ``image_size`` image as ``tiles`` x ``tiles`` tiles, its
    patches every ``stride`` px (0: the patch size)."""
    vit = ViTEncoder(encoder, tile_side(image_size, tiles), patch_size, encoder_overrides, pretrained, encoder_weights)
    return FeatureReference(vit, layers, tiles, stride)


class FeatureReference(nn.Module):
    """A frozen copy of a pretrained ViT whose intermediate patch tokens serve the ``feature`` score.

    ``forward`` gives the token grids of blocks ``layers``, each (B, D, H/p, W/p). Its weights are
    saved with the run, so scoring needs no download; they never train.

    With ``tiles`` = k > 1 the ViT (built for a k-th of the input's side) sees the input as k x k tiles, each at the
    size it was pretrained at, and their token grids are put back side by side: k times the patch grid on each side,
    so a defect k times smaller spans a patch, with neither the position embedding resampled nor the image
    downscaled as far (as anomalib's tiler does for small defects; a tile's tokens see only their own tile).

    With ``stride`` s below the patch size p the patches overlap: the patch embedding steps s px, on the input
    reflect-padded by (p - s) / 2 px a side, so the (side / s)-cell grid's cells are centred on the patches (dense ViT
    features, as Amir et al., "Deep ViT Features as Dense Visual Descriptors", 2021, read DINO's), and the position
    embedding is resampled to that grid once, here (timm's bicubic ``resample_abs_pos_embed``). Each patch is still
    p px of the image, as in pretraining; only the grid is finer, at (p / s)^2 times the tokens.
    """

    def __init__(self, encoder: ViTEncoder, layers: tuple[int, ...], tiles: int = 1, stride: int = 0) -> None:
        super().__init__()
        import copy

        depth = len(encoder.vit.blocks)
        if not layers or any(not 0 <= i < depth for i in layers):
            raise InputError(
                f"feature layers {list(layers)} do not exist in a ViT with {depth} blocks (0 to {depth - 1})"
            )
        self.vit = copy.deepcopy(encoder.vit)
        self.vit.blocks = self.vit.blocks[: max(layers) + 1]  # the blocks after the last used one never run
        self.layers = tuple(layers)
        if tiles < 1:
            raise InputError(f"tiles {tiles}: expected 1 (the whole image) or more tiles per side")
        self.num_prefix_tokens = encoder.num_prefix_tokens
        self.tiles = tiles
        self.tile_grid = encoder.grid  # (gh, gw) of one tile
        patch = int(self.vit.patch_embed.patch_size[0])
        check_patch_stride(patch, stride)
        self.pad = 0
        if stride and stride != patch:
            self.pad = (patch - stride) // 2
            self.tile_grid = (encoder.grid[0] * patch // stride, encoder.grid[1] * patch // stride)
            _overlap_patches(self.vit, stride, self.tile_grid, encoder.grid)
        self.grid = (self.tile_grid[0] * tiles, self.tile_grid[1] * tiles)
        self.register_buffer("mean", encoder.mean.clone(), persistent=False)
        self.register_buffer("std", encoder.std.clone(), persistent=False)
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> FeatureReference:
        return super().train(False)  # always in eval mode

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> [(B, D, H/p, W/p) per layer]."""
        vit, k = self.vit, self.tiles
        b, c, h, w = x.shape
        if k > 1:  # (B, 3, k*h', k*w') -> (B*k*k, 3, h', w'), row-major tiles
            x = x.reshape(b, c, k, h // k, k, w // k).permute(0, 2, 4, 1, 3, 5).reshape(b * k * k, c, h // k, w // k)
        x = (x - self.mean) / self.std
        if self.pad:  # overlapping patches: the grid's cells centred on them
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        t = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        out = []
        gh, gw = self.tile_grid
        for i, block in enumerate(vit.blocks):
            t = block(t)
            if i in self.layers:
                p = t[:, self.num_prefix_tokens :]  # (B*k*k, N, D)
                g = p.transpose(1, 2).reshape(p.shape[0], p.shape[2], gh, gw)  # (B*k*k, D, gh, gw)
                if k > 1:  # the tiles' grids side by side: (B, D, k*gh, k*gw)
                    g = g.reshape(b, k, k, -1, gh, gw).permute(0, 3, 1, 4, 2, 5).reshape(b, -1, k * gh, k * gw)
                out.append(g)
        return out


def _overlap_patches(vit: nn.Module, stride: int, grid: tuple[int, int], old_grid: tuple[int, int]) -> None:
    """Make a timm ViT embed its patches every ``stride`` px onto ``grid`` (from ``old_grid``): the patch
    embedding's stride, its size checks (the padded input is no multiple of the patch) and the position embedding,
    resampled to the new grid as a parameter of the new shape, which the run's weights then carry."""
    pe = vit.patch_embed
    pe.proj.stride = (stride, stride)
    pe.img_size = None  # timm's checks of the input's size assume patches side by side
    pe.grid_size, pe.num_patches = grid, grid[0] * grid[1]
    if getattr(vit, "pos_embed", None) is None:  # a ViT without an absolute position embedding: nothing to resample
        return
    prefix = 0 if getattr(vit, "no_embed_class", False) else int(getattr(vit, "num_prefix_tokens", 1))
    with torch.no_grad():
        pos = resample_abs_pos_embed(
            vit.pos_embed, new_size=list(grid), old_size=list(old_grid), num_prefix_tokens=prefix
        )
    vit.pos_embed = nn.Parameter(pos, requires_grad=False)  # (1, prefix + gh * gw, D)
