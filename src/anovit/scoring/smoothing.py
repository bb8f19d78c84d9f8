"""Gaussian smoothing of score maps, equal to ``scipy.ndimage.gaussian_filter(map, sigma, mode="reflect")``.

A separable convolution with a fixed-index reflect padding, so it runs batched on the model's
device and traces into the exported ONNX graph as it runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, device: torch.device | None = None) -> torch.Tensor:
    """scipy's kernel: radius ``int(truncate * sigma + 0.5)``, normalised to sum 1. (2r+1,) float64."""
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    phi = torch.exp(-0.5 * (x / sigma) ** 2)
    return phi / phi.sum()


def _pad_symmetric(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """scipy's 'reflect' border (d c b a | a b c d | d c b a), repeated when radius > size.

    One gather with a fixed index (period 2n), so it traces and exports (ONNX Gather) as it runs.
    """
    n = int(x.shape[dim])
    j = torch.arange(-radius, n + radius, device=x.device) % (2 * n)  # (n + 2r,)
    return x.index_select(dim, torch.where(j >= n, 2 * n - 1 - j, j))


def gaussian_blur(maps: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Smooth a batch of maps (B, H, W), or of K maps each (B, K, H, W), with a separable Gaussian; sigma <= 0
    returns them as is."""
    if sigma <= 0:
        return maps
    if maps.dim() == 4:
        return torch.stack([gaussian_blur(m, sigma, truncate) for m in maps.unbind(1)], dim=1)
    kernel = gaussian_kernel1d(sigma, truncate, maps.device).to(maps.dtype)  # (K,)
    radius = (kernel.numel() - 1) // 2
    x = maps.unsqueeze(1)  # (B, 1, H, W)
    x = _pad_symmetric(x, radius, dim=3)  # (B, 1, H, W + 2r)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))  # (B, 1, H, W)
    x = _pad_symmetric(x, radius, dim=2)  # (B, 1, H + 2r, W)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))  # (B, 1, H, W)
    return x.squeeze(1)
