"""AnoViT = ViT encoder + transposed-convolution decoder (paper, section 3.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from anovit.models.decoder import ConvTransposeDecoder
from anovit.models.encoder import FeatureReference, ViTEncoder
from anovit.models.segmenter import SegmentationHead


class AnoViT(nn.Module):
    """Reconstructs an image in [0, 1] from its ViT patch embeddings.

    ``forward_encoder`` gives the feature map F (B, D, H/p, W/p); ``forward_decoder`` the
    reconstruction; ``forward`` both. Scoring lives in :mod:`anovit.scoring`.

    ``mask_token`` lets ``forward`` hide patches (the ``inpaint`` objective); ``reference_layers``
    keeps a frozen copy of the (pretrained) encoder as it was before training, whose block outputs
    the ``feature`` score compares between an image and its reconstruction. ``segment_head`` adds
    a :class:`SegmentationHead` on (image, reconstruction) for the ``segment`` score.
    """

    def __init__(
        self,
        image_size: int,
        encoder: str = "vit_base_patch16_384",
        patch_size: int = 16,
        decoder_channels: tuple[int, ...] = (512, 256, 128, 64, 32),
        encoder_overrides: dict[str, Any] | None = None,
        pretrained: bool = False,
        encoder_weights: str | Path | None = None,
        mask_token: bool = False,
        reference_layers: tuple[int, ...] = (),
        segment_head: bool = False,
        segment_scale: int = 1,
    ) -> None:
        super().__init__()
        self.encoder = ViTEncoder(
            encoder, image_size, patch_size, encoder_overrides, pretrained, encoder_weights, mask_token
        )
        self.decoder = ConvTransposeDecoder(self.encoder.embed_dim, decoder_channels, patch_size, image_size)
        self.reference = FeatureReference(self.encoder, tuple(reference_layers)) if reference_layers else None
        self.segmenter = SegmentationHead(scale=segment_scale) if segment_head else None

    @property
    def grid(self) -> tuple[int, int]:
        return self.encoder.grid

    def forward_encoder(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(x, hidden)  # (B, D, H/p, W/p)

    def forward_decoder(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.decoder(feature_map)  # (B, 3, H, W)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> reconstruction (B, 3, H, W); ``hidden`` (B, N) bool patches to hide."""
        return self.forward_decoder(self.forward_encoder(x, hidden))
