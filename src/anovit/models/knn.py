"""The nearest-neighbour baseline: PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly
Detection", CVPR 2022) on the run's pretrained ViT instead of a WideResNet.

What it follows from the paper: frozen pretrained mid-level features (here the patch tokens of ViT blocks
2, 5 and 8, concatenated), locally aware patch features (each averaged with its 3 x 3 neighbours), a memory
bank of the training images' patch features reduced by greedy coreset subsampling to 10 % (built in
:mod:`anovit.training.memory_bank`), and the anomaly score of a patch = the Euclidean distance to its nearest
neighbour in the bank, upsampled bilinearly to the image and Gaussian-smoothed (sigma 4) by the scoring.
What it leaves out: the paper's re-weighting of the image score by the nearest neighbour's own
neighbourhood (the image score here is the map's maximum), and its reduction of the feature size by adaptive
pooling (ViT-Ti's 3 x 192 = 576 dimensions are below the paper's 1,024). Its features are computed in fp32:
bf16 ones, with a coreset, cost real bottle 0.115 image AUROC (benchmarks/knn.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anovit.models.encoder import tiled_reference

BANK_CHUNK = 4096  # bank rows per distance block: (B x N) x 4096 floats at a time


class PatchKNN(nn.Module):
    """Frozen ViT features -> nearest-neighbour distance to a memory bank of normal patch features.

    ``embed`` gives the locally aggregated patch features (B, C, H/p, W/p); ``forward`` the distance map
    (B, H, W) at the input size. The bank (K, C) is a buffer, saved with the run's weights.
    """

    def __init__(
        self,
        image_size: int,
        encoder: str,
        patch_size: int,
        layers: tuple[int, ...],
        encoder_overrides: dict[str, Any] | None = None,
        pretrained: bool = False,
        encoder_weights: str | Path | None = None,
        pool: int = 3,
        bank_size: int = 0,
        tiles: int = 1,
        patch_stride: int = 0,
    ) -> None:
        super().__init__()
        if pool < 1 or pool % 2 == 0:
            raise ValueError(f"knn_pool must be an odd number >= 1, got {pool}")
        # frozen: blocks up to the last used one
        self.features = tiled_reference(
            encoder, image_size, patch_size, layers, tiles, encoder_overrides, pretrained, encoder_weights, patch_stride
        )
        self.pool = pool
        self.dim = self.features.vit.embed_dim * len(layers)
        self.register_buffer("bank", torch.zeros(bank_size, self.dim))

    @property
    def grid(self) -> tuple[int, int]:
        return self.features.grid

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> locally aware patch features (B, C, H/p, W/p), C = D x len(layers)."""
        grids = torch.cat(self.features(images), dim=1)  # (B, C, gh, gw)
        if self.pool == 1:
            return grids
        return F.avg_pool2d(grids, self.pool, stride=1, padding=self.pool // 2, count_include_pad=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> the distance of each patch to its nearest bank feature, upsampled: (B, H, W)."""
        if self.bank.shape[0] == 0:
            raise RuntimeError("the memory bank is empty: build it first (anovit train --model knn)")
        feats = self.embed(images).float()  # (B, C, gh, gw)
        b, c, gh, gw = feats.shape
        query = feats.permute(0, 2, 3, 1).reshape(b * gh * gw, c)  # (B * N, C)
        dist = nearest_distance(query, self.bank).view(b, 1, gh, gw)
        h, w = int(images.shape[-2]), int(images.shape[-1])
        return F.interpolate(dist, size=(h, w), mode="bilinear", align_corners=False).squeeze(1)  # (B, H, W)


def nearest_distance(query: torch.Tensor, bank: torch.Tensor, chunk: int = BANK_CHUNK) -> torch.Tensor:
    """Euclidean distance of each row of ``query`` (Q, C) to its nearest row of ``bank`` (K, C): (Q,).

    |q - m|^2 = |q|^2 - 2 q.m + |m|^2 as matrix products, the bank taken ``chunk`` rows at a time so memory
    stays at Q x chunk; it traces into the exported ONNX graph as plain MatMul / ReduceMin.
    """
    q2 = query.pow(2).sum(dim=1, keepdim=True)  # (Q, 1)
    best = None
    for start in range(0, bank.shape[0], chunk):
        m = bank[start : start + chunk]  # (k, C)
        d2 = q2 - 2.0 * query @ m.T + m.pow(2).sum(dim=1)  # (Q, k)
        low = d2.amin(dim=1)  # (Q,)
        best = low if best is None else torch.minimum(best, low)
    return best.clamp_min(0.0).sqrt()
