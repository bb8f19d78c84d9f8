"""The statistics :class:`anovit.models.position.PositionNorm` standardises a score map by, measured on the maps
of normal images, and the leave-one-out maps that let thresholds be set on those same images."""

from __future__ import annotations

import torch

from anovit.models.position import PositionNorm
from anovit.scoring.smoothing import gaussian_blur

# The statistics are smoothed by a Gaussian of this share of the map's size (4 px at 224 px, a quarter of a 16-px
# patch): 40-60 hold-out images give noisy per-pixel estimates.
STATS_SIGMA_SHARE = 1 / 56
MIN_IMAGES = 3  # the fewest normal maps the statistics (and their leave-one-out version) are measured on


def _mean_and_scale(mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and variance (N, S, S) -> smoothed mean and scale (N, S, S). The scale is the standard
    deviation plus its own mean over the map: a floor that keeps pixels that barely varied on the few normal images
    from dividing by almost 0 (a shrinkage towards one spread for the whole map)."""
    sigma = STATS_SIGMA_SHARE * mean.shape[-1]
    mean = gaussian_blur(mean.float(), sigma)
    std = gaussian_blur(var.clamp_min(0).sqrt().float(), sigma)
    floor = std.mean(dim=(1, 2), keepdim=True)  # (N, 1, 1)
    tiny = 1e-6 * mean.abs().mean(dim=(1, 2), keepdim=True) + 1e-12  # maps that never varied at all
    return mean, std + floor.clamp_min(0) + tiny


def position_stats(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed score maps of N >= 3 normal images (N, S, S) -> (mean, scale), each (S, S)."""
    n = maps.shape[0]
    if n < MIN_IMAGES:
        raise ValueError(f"position statistics need at least {MIN_IMAGES} normal maps, got {n}")
    x = maps.double()
    mean, scale = _mean_and_scale(x.mean(dim=0, keepdim=True), x.var(dim=0, keepdim=True))
    return mean[0], scale[0]


def fit_position_stats(norm: PositionNorm, maps: torch.Tensor) -> None:
    """Fill ``norm`` with the statistics of ``maps`` (N, S, S), the raw smoothed maps of normal images."""
    mean, scale = position_stats(maps)
    norm.mean.copy_(mean)
    norm.scale.copy_(scale)


def leave_one_out_maps(maps: torch.Tensor) -> torch.Tensor:
    """Normal maps (N, S, S) -> each standardised by the statistics of the other N - 1 (N, S, S): how an image
    the statistics have not seen scores, where in-sample scores would set thresholds too low."""
    n = maps.shape[0]
    if n < MIN_IMAGES:
        raise ValueError(f"leave-one-out statistics need at least {MIN_IMAGES} normal maps, got {n}")
    x = maps.double()
    total, squares = x.sum(dim=0), (x * x).sum(dim=0)  # (S, S)
    mean = (total - x) / (n - 1)  # (N, S, S): the mean without each image
    var = (squares - x * x - (n - 1) * mean * mean) / (n - 2)  # unbiased, without each image
    mean, scale = _mean_and_scale(mean, var)
    return ((x - mean) / scale).float()
