"""Reconstruction -> dissimilarity maps -> smoothed anomaly map -> image score (paper, section 3.2).

Everything here works on whole batches on the model's device: the Gaussian smoothing is a
separable convolution equal to ``scipy.ndimage.gaussian_filter(map, sigma, mode="reflect",
truncate=truncate)`` applied to each map. :func:`score_batch` is the one path from images to
scores: evaluation, ``predict``, ``serve`` and the exported ONNX/OpenVINO graphs all run it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from anovit.config import OWN_MAP_KINDS, ScoreConfig
from anovit.image_score import image_score_parts, image_score_share
from anovit.scoring.similarity import gms_map, patch_distance, ssim_map
from anovit.scoring.smoothing import gaussian_blur


class Scores(NamedTuple):
    """Scores of one batch: ``maps`` (B, H, W) smoothed score maps, ``image`` (B,) = the image scores
    (:func:`image_scores`)."""

    maps: torch.Tensor
    image: torch.Tensor


def reconstruction_error(images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-pixel squared error averaged over channels: (B, C, H, W) x2 -> (B, H, W)."""
    return (images.float() - recon.float()).pow(2).mean(dim=1)


def mask_groups(grid: tuple[int, int], k: int, device: torch.device | None = None) -> torch.Tensor:
    """K complementary patch masks over a (gh, gw) grid: (K, gh * gw) bool, each patch in exactly one.

    Patch (i, j) goes to group (i * q + j) mod K with q = 1 for K < 4, else K // 2, so that a patch's
    four neighbours are never hidden with it (a checkerboard for K = 2).
    """
    gh, gw = grid
    q = 1 if k < 4 else k // 2
    i, j = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    group = ((i * q + j) % k).flatten()  # (N,)
    return group.unsqueeze(0) == torch.arange(k, device=device).unsqueeze(1)  # (K, N)


def reconstruct(model: nn.Module, images: torch.Tensor, test_masks: int = 1) -> torch.Tensor:
    """The model's reconstruction (B, 3, H, W); with ``test_masks`` K > 1 every patch is predicted
    while hidden: K masked passes in one batch, each pixel taken from the pass that hid its patch."""
    if test_masks <= 1:
        return model(images)
    h, w = int(images.shape[-2]), int(images.shape[-1])
    gh, gw = model.grid
    groups = mask_groups((gh, gw), test_masks, images.device)  # (K, N)
    hidden = (
        groups[:, None, :].expand(-1, images.shape[0], -1).reshape(-1, gh * gw)
    )  # (K * B, N), pass k for every image
    recon = model(images.repeat(test_masks, 1, 1, 1), hidden)  # (K * B, 3, H, W)
    pixel = groups.view(test_masks, 1, gh, gw).to(recon.dtype)  # (K, 1, gh, gw)
    pixel = F.interpolate(pixel, size=(h, w), mode="nearest").unsqueeze(1)  # (K, 1, 1, H, W)
    return (recon.view(test_masks, -1, *recon.shape[1:]) * pixel).sum(dim=0)  # (B, 3, H, W)


def feature_map(reference: nn.Module, images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity of the reference encoder's patch tokens, mean over its layers, upsampled: (B, H, W)."""
    h, w = int(images.shape[-2]), int(images.shape[-1])
    both = [
        f.chunk(2) for f in reference(torch.cat([images, recon.to(images.dtype)]))
    ]  # [((B, D, gh, gw), (B, D, gh, gw))]
    of_images, of_recon = zip(*both)  # [(B, D, gh, gw) per layer] each
    dist = patch_distance(of_recon, of_images)  # (B, gh, gw)
    return F.interpolate(dist.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False).squeeze(1)


def component_maps(
    model: nn.Module,
    images: torch.Tensor,
    cfg: ScoreConfig,
    amp: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, torch.Tensor]:
    """Each dissimilarity map of ``cfg.kinds``, unsmoothed and unscaled: {kind: (B, H, W) fp32}.

    ``amp`` is entered around the networks (reconstruction, reference encoder); the maps themselves
    are computed in fp32.
    """
    recon = None
    if any(kind not in OWN_MAP_KINDS for kind in cfg.kinds):  # the knn baseline and the token decoder have no pixels
        with amp():
            recon = reconstruct(model, images, cfg.test_masks).float()  # (B, 3, H, W)
    maps: dict[str, torch.Tensor] = {}
    for kind in cfg.kinds:
        if kind in OWN_MAP_KINDS:
            with amp():
                maps[kind] = model(images).float()  # (B, H, W) nearest-neighbour or token distances
        elif kind == "l2":
            maps[kind] = reconstruction_error(images, recon)
        elif kind == "ssim":
            maps[kind] = ssim_map(images, recon)
        elif kind == "gms":
            maps[kind] = gms_map(images, recon)
        elif kind == "feature":
            reference = getattr(model, "reference", None)
            if reference is None:
                raise ValueError("the feature score needs a model built with reference_layers")
            with amp():
                maps[kind] = feature_map(reference, images, recon).float()
        elif kind == "segment":
            head = getattr(model, "segmenter", None)
            if head is None:
                raise ValueError("the segment score needs a model built with segment_head")
            with amp():
                maps[kind] = torch.sigmoid(head(images, recon).float())  # (B, H, W) anomaly probability
        else:
            raise ValueError(f"unknown score kind {kind!r}")
    return maps


# ScoreConfig.test_flips -> the views scored: the dims each view flips (() = the image itself)
FLIP_DIMS: dict[str, tuple[tuple[int, ...], ...]] = {
    "none": ((),),
    "h": ((), (-1,)),
    "v": ((), (-2,)),
    "hv": ((), (-1,), (-2,), (-2, -1)),
}


def shift_offsets(shift: int) -> tuple[tuple[int, int], ...]:
    """``ScoreConfig.test_shift`` -> the (dy, dx) pixel offsets of the views scored: the image itself for 0, else
    the four diagonal shifts by ``shift`` pixels."""
    if shift <= 0:
        return ((0, 0),)
    return ((-shift, -shift), (-shift, shift), (shift, -shift), (shift, shift))


def _margin(offsets: tuple[tuple[int, int], ...]) -> int:
    """The largest move of any view in ``offsets``, in pixels: how far :func:`shifted` pads."""
    return max(max(abs(dy), abs(dx)) for dy, dx in offsets)


def shifted(images: torch.Tensor, offsets: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """(B, C, H, W) -> (V * B, C, H, W): view v shows the image moved so that its pixel (y + dy, x + dx) lands at
    (y, x); the edges come from the reflect-padded image."""
    pad = _margin(offsets)
    if pad == 0:
        return images
    h, w = int(images.shape[-2]), int(images.shape[-1])
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")  # (B, C, H + 2p, W + 2p)
    return torch.cat([padded[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w] for dy, dx in offsets])


def shifted_back(maps: torch.Tensor, offsets: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """The maps (V * B, H, W) of :func:`shifted` views, each moved back onto the image and averaged: (B, H, W); or,
    K maps a view, (V * B, K, H, W) -> (B, K, H, W). The strip a view did not see is filled with its nearest edge."""
    pad = _margin(offsets)
    if pad == 0:
        return maps
    if maps.dim() == 4:
        return torch.stack([shifted_back(m, offsets) for m in maps.unbind(1)], dim=1)
    h, w = int(maps.shape[-2]), int(maps.shape[-1])
    padded = F.pad(maps.unsqueeze(1), (pad, pad, pad, pad), mode="replicate").squeeze(1)  # (V * B, H + 2p, W + 2p)
    views = padded.chunk(len(offsets))  # V x (B, H + 2p, W + 2p)
    back = [v[:, pad - dy : pad - dy + h, pad - dx : pad - dx + w] for v, (dy, dx) in zip(views, offsets)]
    return torch.stack(back).mean(dim=0)


def combined_map(
    model: nn.Module,
    images: torch.Tensor,
    cfg: ScoreConfig,
    amp: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> torch.Tensor:
    """The combined map before smoothing (B, H, W), or the pair of a model that gives a map to localise with and
    one to judge the image by (B, 2, H, W); with ``cfg.test_flips`` and ``cfg.test_shift`` the mean over
    the image's flips and shifts, each view's map moved back onto the image. The views go through the model as
    one batch.

    Shifting by a fraction of a patch samples a ViT's patch grid at other offsets: a defect smaller than a patch,
    or astride two, falls inside a patch in some view, and the views' mean is a map on a finer grid.
    """
    dims = FLIP_DIMS[cfg.test_flips]
    offsets = shift_offsets(cfg.test_shift)
    if len(dims) == 1 and len(offsets) == 1:
        return combine(component_maps(model, images, cfg, amp), cfg)
    views = torch.cat([images.flip(d) if d else images for d in dims])  # (F * B, 3, H, W)
    maps = combine(component_maps(model, shifted(views, offsets), cfg, amp), cfg)  # (S * F * B, H, W)
    maps = shifted_back(maps, offsets).chunk(len(dims))  # F x (B, H, W)
    return torch.stack([m.flip(d) if d else m for m, d in zip(maps, dims)]).mean(dim=0)  # (B, H, W)


def combine(maps: dict[str, torch.Tensor], cfg: ScoreConfig) -> torch.Tensor:
    """Mean of the component maps, each divided by its scale (one map alone is left as it is): (B, H, W)."""
    if len(maps) == 1:
        return next(iter(maps.values()))
    scales = cfg.scales or (1.0,) * len(cfg.kinds)
    return torch.stack([maps[k] / s for k, s in zip(cfg.kinds, scales)]).mean(dim=0)


def image_scores(maps: torch.Tensor, border: float, how: str = "max") -> torch.Tensor:
    """Smoothed maps (B, H, W) -> image scores (B,) over the interior (``border`` x size ignored at each edge).

    ``how``: ``max`` (the paper), ``mean``, ``topP``, the mean of the highest P percent of the interior's pixels
    (:func:`anovit.image_score.image_score_share`), ``std``, their standard deviation, or several joined by ``+``
    (:func:`anovit.image_score.image_score_parts`), whose geometric mean is the score: scaling one statistic scales
    every image's score alike, so none counts by its units. ``top1+std`` asks for a peak that also stands out of the
    map around it: a change of the whole image (its lighting) lifts every pixel alike, the peak with them, and leaves
    the spread as it was.
    """
    h, w = int(maps.shape[-2]), int(maps.shape[-1])  # ints also while tracing for ONNX
    bh, bw = int(round(border * h)), int(round(border * w))
    if bh or bw:
        maps = maps[:, bh : h - bh, bw : w - bw]
    flat = maps.flatten(1)  # (B, P)
    parts = image_score_parts(how)
    if len(parts) == 1:
        return _map_statistic(flat, parts[0])
    stats = torch.stack([_map_statistic(flat, p) for p in parts])  # (K, B)
    return stats.clamp_min(0).prod(dim=0).pow(1 / len(parts))  # geometric mean; the maps are >= 0


def _map_statistic(flat: torch.Tensor, name: str) -> torch.Tensor:
    """(B, P) pixels of each map -> (B,): ``std``, or the mean of the share :func:`image_score_share` names."""
    if name == "std":
        return flat.std(dim=1, correction=0)
    share = image_score_share(name)
    if share == 0.0:
        return flat.amax(dim=1)
    if share == 1.0:
        return flat.mean(dim=1)
    k = max(1, int(round(share * int(flat.shape[1]))))
    return flat.topk(k, dim=1).values.mean(dim=1)


def score_batch(
    model: nn.Module,
    images: torch.Tensor,
    cfg: ScoreConfig,
    amp: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> Scores:
    """images (B, 3, S, S) float in [0, 1] -> :class:`Scores`: combined, smoothed maps and their image scores
    (:func:`image_scores`), read from the maps standardised per pixel where the model has a ``position`` norm
    (``ModelConfig.position_norm``); the maps are returned as they are. A model that gives two maps (the token
    decoder localising without the encoder's massive activations, ``ModelConfig.token_map_channels``) is judged by
    its second and returns its first."""
    maps = gaussian_blur(combined_map(model, images, cfg, amp), cfg.sigma, cfg.truncate)  # (B, H, W) or (B, 2, H, W)
    maps, judged = maps.unbind(1) if maps.dim() == 4 else (maps, maps)  # (B, H, W) each
    norm = getattr(model, "position", None)
    judged = norm(judged) if norm is not None else judged  # (B, H, W)
    return Scores(maps=maps, image=image_scores(judged, cfg.border, cfg.image_score))
