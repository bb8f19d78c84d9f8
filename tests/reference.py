"""The paper's score written out directly, as the reference the package's batched scoring must equal."""

from __future__ import annotations

import torch

from anovit.scoring.maps import Scores, reconstruction_error
from anovit.scoring.smoothing import gaussian_blur


def score_maps(images: torch.Tensor, recon: torch.Tensor, sigma: float, truncate: float = 4.0) -> Scores:
    """The paper's score of a batch: images and reconstructions (B, C, H, W) -> :class:`Scores`."""
    maps = gaussian_blur(reconstruction_error(images, recon), sigma, truncate)  # (B, H, W)
    return Scores(maps=maps, image=maps.flatten(1).amax(dim=1))
