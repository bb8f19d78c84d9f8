"""The models: AnoViT (pixels or, :class:`TokenAnoViT`, the frozen encoder's tokens reconstructed), the l2-CAE
baseline and the nearest-neighbour baseline (PatchCore), built from a :class:`ModelConfig`."""

from __future__ import annotations

from typing import Any

from torch import nn

from anovit.config import ModelConfig
from anovit.errors import InputError
from anovit.models.anovit import AnoViT
from anovit.models.cae import L2CAE
from anovit.models.knn import PatchKNN
from anovit.models.position import PositionNorm
from anovit.models.tokens import TokenAnoViT

__all__ = ["AnoViT", "L2CAE", "PatchKNN", "PositionNorm", "TokenAnoViT", "build_model"]


def build_model(cfg: ModelConfig, load_encoder_weights: bool = True) -> nn.Module:
    """Build the model ``cfg.name`` describes.

    ``load_encoder_weights=False`` skips the pretrained/local encoder weights, for when a trained
    run's own weights are loaded on top anyway. With ``cfg.position_norm`` the model carries a
    :class:`PositionNorm` as ``model.position`` (identity until measured), which the image score reads.
    """
    model = _build(cfg, load_encoder_weights)
    if cfg.position_norm:
        model.position = PositionNorm(cfg.image_size)
    return model


def _build(cfg: ModelConfig, load_encoder_weights: bool) -> nn.Module:
    if cfg.name == "anovit" and cfg.token_decoder_depth > 0:
        return TokenAnoViT(
            **_vit_options(cfg, load_encoder_weights),
            layers=tuple(cfg.reference_layers),
            depth=cfg.token_decoder_depth,
            dropout=cfg.token_dropout,
            merge=cfg.token_merge,
            attention=cfg.token_attention,
            groups=cfg.token_groups,
            map_channels=cfg.token_map_channels,
            tiles=cfg.tiles,
            patch_stride=cfg.patch_stride,
        )
    if cfg.name == "anovit":
        return AnoViT(
            **_vit_options(cfg, load_encoder_weights),
            decoder_channels=tuple(cfg.decoder_channels),
            mask_token=cfg.mask_token,
            reference_layers=tuple(cfg.reference_layers),
            segment_head=cfg.segment_head,
            segment_scale=cfg.segment_scale,
        )
    if cfg.name == "knn":
        return PatchKNN(
            **_vit_options(cfg, load_encoder_weights),
            layers=tuple(cfg.reference_layers),
            pool=cfg.knn_pool,
            bank_size=cfg.knn_bank,
            tiles=cfg.tiles,
            patch_stride=cfg.patch_stride,
        )
    if cfg.name == "cae":
        if cfg.mask_token or cfg.reference_layers or cfg.segment_head:
            raise InputError("the inpaint objective and the feature and segment scores need AnoViT, not the l2-CAE")
        return L2CAE(image_size=cfg.image_size, latent_dim=cfg.cae_latent_dim, base_channels=cfg.cae_base_channels)
    raise ValueError(f"unknown model {cfg.name!r}")


def _vit_options(cfg: ModelConfig, load_encoder_weights: bool) -> dict[str, Any]:
    """The ViT encoder's arguments, which AnoViT and the knn baseline share."""
    return dict(
        image_size=cfg.image_size,
        encoder=cfg.encoder,
        patch_size=cfg.patch_size,
        encoder_overrides=dict(cfg.encoder_overrides),
        pretrained=cfg.pretrained and load_encoder_weights,
        encoder_weights=cfg.encoder_weights if load_encoder_weights else None,
    )
