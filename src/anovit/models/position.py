"""The per-pixel statistics of a model's score map on normal images, kept with its weights
(``ModelConfig.position_norm``).

An aligned part has places whose score is high on every normal image: its outline, a highlight, a textured
background. Read from the raw map, the image score of such a part is decided there, not at the defect. Standardising
each pixel by how it scores on normal images (the per-position Gaussian of PaDiM, Defard et al. 2021, applied to
the finished score map) takes them out of the verdict. The buffers start as the identity (mean 0, scale 1) and are
filled by :func:`anovit.scoring.position.fit_position_stats` after training.
"""

from __future__ import annotations

import torch
from torch import nn


class PositionNorm(nn.Module):
    """``(map - mean) / scale`` at each pixel of an ``size`` x ``size`` score map."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(size, size))  # (S, S)
        self.register_buffer("scale", torch.ones(size, size))  # (S, S), > 0

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Score maps (B, S, S) -> standardised maps (B, S, S)."""
        return (maps - self.mean) / self.scale

    def reset(self) -> None:
        """Back to the identity, so that the maps it is measured on are the raw ones."""
        self.mean.zero_()
        self.scale.fill_(1.0)
