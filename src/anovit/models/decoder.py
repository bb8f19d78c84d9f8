"""Transposed-convolution decoder: patch-token grid (B, D, H/p, W/p) -> image (B, C, H, W)."""

from __future__ import annotations

import math

import torch
from torch import nn


class ConvTransposeDecoder(nn.Module):
    """Blocks of ``ConvTranspose2d`` + ReLU, a final transposed conv to C channels, then upsampling.

    The paper (section 4.3) uses six transposed-conv blocks and an upsampling layer. Here the
    first ``len(channels)`` blocks carry a ReLU and the last block projects to image channels
    without one: a ReLU on the output would clamp reconstructions and stop gradients on dark
    pixels. The first ``floor(log2(p))`` blocks double the resolution (kernel 4, stride 2), the
    rest keep it (kernel 3, stride 1); the final bilinear upsampling makes the output exactly
    ``output_size`` for any patch size (it is the identity when p is a power of two).
    """

    def __init__(
        self,
        in_channels: int,
        channels: tuple[int, ...],
        patch_size: int,
        output_size: int,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        widths = [in_channels, *channels, out_channels]
        n_double = int(math.floor(math.log2(patch_size)))
        if n_double > len(widths) - 1:
            raise ValueError(f"{len(widths) - 1} decoder blocks cannot upsample by {patch_size}; add channels")
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            if i < n_double:
                layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1))
            else:
                layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=3, stride=1, padding=1))
            if i < len(widths) - 2:
                layers.append(nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*layers)
        self.upsample = nn.Upsample(size=(output_size, output_size), mode="bilinear", align_corners=False)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B, C, H, W)."""
        x = self.blocks(feature_map)  # (B, C, h * 2^k, w * 2^k)
        if x.shape[-2:] != self.upsample.size:
            x = self.upsample(x)  # (B, C, H, W)
        return x
