"""Configuration: one frozen dataclass per concern, presets, and JSON round-trips.

The resolved :class:`RunConfig` is written beside every trained model (``config.json``) so a run
folder alone is enough to rebuild the model and score new images.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from .errors import InputError

ModelName = Literal["anovit", "cae"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of either model. Fields that do not apply to ``name`` are ignored by it."""

    name: ModelName = "anovit"
    image_size: int = 384
    # AnoViT encoder (any timm ViT); overrides such as embed_dim/depth/num_heads go to timm.
    encoder: str = "vit_base_patch16_384"
    patch_size: int = 16
    encoder_overrides: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    encoder_weights: str | None = None
    # Six transposed-conv blocks (paper, section 4.3): widths of the five hidden ones, then 3.
    decoder_channels: tuple[int, ...] = (512, 256, 128, 64, 32)
    # l2-CAE (Bergmann et al. 2019b): width multiplier and latent dimension.
    cae_base_channels: int = 32
    cae_latent_dim: int = 100


@dataclass(frozen=True)
class DataConfig:
    """How images are read and augmented. Augmentations apply to training images only."""

    image_size: int = 384
    val_fraction: float = 0.2
    affine_degrees: float = 10.0
    affine_translate: float = 0.05
    affine_scale: tuple[float, float] = (0.95, 1.05)
    hflip: bool = True
    vflip: bool = True


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    # auto: bf16 on CUDA with bf16 support; on a CPU, bf16 only where a matmul probe measured it faster (precision.py).
    precision: Precision = "auto"
    num_workers: int = 0
    # checkpoint.pt (model + optimiser + random state, for --resume) every this many epochs and after
    # the last; 0: never (the run cannot be resumed).
    checkpoint_every: int = 1


@dataclass(frozen=True)
class ScoreConfig:
    """Scoring (paper, section 3.2): Gaussian sigma in pixels of the model's input size."""

    sigma: float = 4.0
    truncate: float = 4.0


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    score: ScoreConfig
    preset: str = "small"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        return cls(
            model=_build(ModelConfig, raw["model"]),
            data=_build(DataConfig, raw["data"]),
            train=_build(TrainConfig, raw["train"]),
            score=_build(ScoreConfig, raw["score"]),
            preset=raw.get("preset", "custom"),
        )

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        try:
            raw = json.loads(Path(path).read_text())
            return cls.from_dict(raw)
        except FileNotFoundError:
            raise InputError(f"{path}: no config.json here; is this a run folder written by 'anovit train'?") from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a valid anovit config ({exc})") from None


def _build(cls: type, raw: dict[str, Any]) -> Any:
    """Build a dataclass from JSON, turning lists back into tuples and rejecting unknown keys."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise KeyError(f"unknown {cls.__name__} keys {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return cls(**values)


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------
# paper: the paper's settings for MVTec AD (ViT-B/16, ImageNet-21k pretrained and fine-tuned on
#        ImageNet-1k, at 384 px). Needs the pretrained weights (hub or --encoder-weights) and a GPU.
# small: a ViT with 8-px patches and 4 blocks at 64 px, trained from scratch; it trains on a
#        2-core CPU in minutes and is what the demo and quick experiments use.
PRESETS: dict[str, RunConfig] = {
    "paper": RunConfig(
        model=ModelConfig(
            image_size=384,
            encoder="vit_base_patch16_384",
            patch_size=16,
            pretrained=True,
            decoder_channels=(512, 256, 128, 64, 32),
            cae_base_channels=32,
            cae_latent_dim=100,
        ),
        data=DataConfig(image_size=384),
        train=TrainConfig(epochs=100, batch_size=8, lr=1e-4),
        score=ScoreConfig(sigma=4.0),
        preset="paper",
    ),
    "small": RunConfig(
        model=ModelConfig(
            image_size=64,
            encoder="vit_tiny_patch16_224",
            patch_size=8,
            encoder_overrides={"embed_dim": 128, "depth": 4, "num_heads": 4},
            pretrained=False,
            decoder_channels=(128, 64, 32, 32, 16),
            cae_base_channels=32,
            cae_latent_dim=64,
        ),
        data=DataConfig(image_size=64),
        train=TrainConfig(epochs=80, batch_size=16, lr=1e-3),
        score=ScoreConfig(sigma=2.0),
        preset="small",
    ),
}


def resolve_config(
    preset: str = "small",
    model: ModelName | None = None,
    image_size: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    lr: float | None = None,
    precision: Precision | None = None,
    encoder: str | None = None,
    pretrained: bool | None = None,
    encoder_weights: str | None = None,
    sigma: float | None = None,
    checkpoint_every: int | None = None,
) -> RunConfig:
    """Start from a preset and apply the options a user gave (``None`` keeps the preset value)."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    cfg = PRESETS[preset]
    m, d, t, s = cfg.model, cfg.data, cfg.train, cfg.score
    if model is not None:
        m = replace(m, name=model)
    if image_size is not None:
        m, d = replace(m, image_size=image_size), replace(d, image_size=image_size)
    if encoder is not None:
        m = replace(m, encoder=encoder)
    if encoder_weights is not None:
        m = replace(m, encoder_weights=str(encoder_weights), pretrained=False)
    if pretrained is not None:
        m = replace(m, pretrained=pretrained)
    if epochs is not None:
        t = replace(t, epochs=epochs)
    if batch_size is not None:
        t = replace(t, batch_size=batch_size)
    if seed is not None:
        t = replace(t, seed=seed)
    if lr is not None:
        t = replace(t, lr=lr)
    if precision is not None:
        t = replace(t, precision=precision)
    if sigma is not None:
        s = replace(s, sigma=sigma)
    if checkpoint_every is not None:
        if checkpoint_every < 0:
            raise InputError(f"--checkpoint-every {checkpoint_every}: expected 0 (never) or a positive number of epochs")
        t = replace(t, checkpoint_every=checkpoint_every)
    return RunConfig(model=m, data=d, train=t, score=s, preset=preset)
