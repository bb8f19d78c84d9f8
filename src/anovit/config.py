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
Objective = Literal["reconstruct", "inpaint", "restore"]
OBJECTIVES: tuple[str, ...] = ("reconstruct", "inpaint", "restore")
SCORE_KINDS: tuple[str, ...] = ("l2", "ssim", "gms", "feature", "segment")
# restore's synthetic anomaly fills (anovit.data.anomalies); a config.json without anomaly_fills was trained before "blur"
PRE_BLUR_FILLS: tuple[str, ...] = ("patch", "shift", "colour", "noise", "flat")
ANOMALY_FILLS: tuple[str, ...] = (*PRE_BLUR_FILLS, "blur")


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
    # A learned mask token for hidden patches (the inpaint objective).
    mask_token: bool = False
    # Blocks of a frozen copy of the pretrained encoder that the feature score compares (empty: none kept).
    reference_layers: tuple[int, ...] = ()
    # A light segmentation head on (image, reconstruction), trained on the restore objective's
    # synthetic anomalies (the ``segment`` score; anovit.models.segmenter).
    segment_head: bool = False


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
    # reconstruct: the paper (L2 between an image and its reconstruction). inpaint: a random share
    # (mask_ratio) of the patches is hidden behind a mask token and must be filled in. restore: a
    # synthetic anomaly is planted in anomaly_fraction of the images and the clean image is the target.
    objective: Objective = "reconstruct"
    mask_ratio: tuple[float, float] = (0.25, 0.75)
    anomaly_fraction: float = 0.5
    anomaly_fills: tuple[str, ...] = ANOMALY_FILLS  # what restore's anomalies are made of (anovit.data.anomalies)
    # > 0: add this times the reference encoder's feature distance between output and target to the
    # L2 loss (needs ModelConfig.reference_layers; see anovit.objectives.feature_loss).
    feature_loss: float = 0.0
    # > 0: train at least this many optimiser steps, adding epochs on small training sets
    # (anovit.training.epochs_for); the run's config.json records the epochs it got. --epochs sets 0.
    min_steps: int = 0


@dataclass(frozen=True)
class ScoreConfig:
    """Scoring (paper, section 3.2): Gaussian sigma in pixels of the model's input size.

    ``kinds``: the dissimilarity maps averaged into the score map (l2 = the paper's); with several,
    each is divided by its ``scales`` entry (its mean on the validation images, measured after
    training) first. ``border``: the share of the image size at each edge that the image score
    ignores. ``test_masks``: K complementary patch masks at test time (inpaint),
    so every patch is predicted while hidden; 1 = the whole image at once. ``image_score``: how the
    interior of the map becomes the image score: ``max`` (the paper), ``mean``, or ``topP`` = the
    mean of the highest P percent of its pixels (see :func:`image_score_share`).
    """

    sigma: float = 4.0
    truncate: float = 4.0
    kinds: tuple[str, ...] = ("l2",)
    scales: tuple[float, ...] = ()
    border: float = 0.0
    test_masks: int = 1
    image_score: str = "max"


def image_score_share(name: str) -> float:
    """The share of the map's pixels an image score averages: ``max`` -> 0 (one pixel), ``mean`` -> 1, ``top5`` -> 0.05."""
    if name == "max":
        return 0.0
    if name == "mean":
        return 1.0
    try:
        share = float(name.removeprefix("top")) / 100 if name.startswith("top") else -1.0
    except ValueError:
        share = -1.0
    if not 0 < share <= 1:
        raise InputError(f"--image-score {name}: expected max (the paper), mean, or topP with P a percentage in (0, 100], e.g. top5")
    return share


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
        train = {"anomaly_fills": list(PRE_BLUR_FILLS), **raw["train"]}  # older runs were trained (and resume) without blur
        return cls(
            model=_build(ModelConfig, raw["model"]),
            data=_build(DataConfig, raw["data"]),
            train=_build(TrainConfig, train),
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


DEFAULT_PRESET = "tiny"  # the CPU default (issue 10's ablation, benchmarks/ablation.md)
DEFAULT_TEST_MASKS = 4
DEFAULT_FEATURE_LAYERS = (2, 5, 8)

# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------
# paper: the paper's settings for MVTec AD (ViT-B/16, ImageNet-21k pretrained and fine-tuned on
#        ImageNet-1k, at 384 px). Needs the pretrained weights (hub or --encoder-weights) and a GPU.
# small: a ViT with 8-px patches and 4 blocks at 64 px, trained from scratch; it trains on a
#        2-core CPU in a minute (tests, quick experiments).
# tiny:  the CPU default (make demo), chosen by benchmarks/ablation.py: the ImageNet-pretrained
#        ViT-Ti/16 at its own 224 px fine-tuned to restore synthetic anomalies, with the feature
#        loss and the feature score; a frozen copy of the pretrained encoder serves both. A narrow
#        decoder and 300 steps keep one ~200-image category within 10 minutes on 2 CPU cores.
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
    "tiny": RunConfig(
        model=ModelConfig(
            image_size=224,
            encoder="vit_tiny_patch16_224.augreg_in21k_ft_in1k",
            patch_size=16,
            pretrained=True,
            decoder_channels=(128, 64, 32, 16, 16),
            cae_base_channels=32,
            cae_latent_dim=100,
            reference_layers=DEFAULT_FEATURE_LAYERS,
        ),
        data=DataConfig(image_size=224),
        train=TrainConfig(epochs=30, batch_size=16, lr=2e-4, objective="restore", feature_loss=0.5, min_steps=300),
        # top1: the mean of the map's highest 1 % (~1.6 of the 14 x 14 feature cells at 224 px), steadier than one pixel
        score=ScoreConfig(sigma=2.0, kinds=("feature",), border=0.05, image_score="top1"),
        preset="tiny",
    ),
}


def resolve_config(
    preset: str = DEFAULT_PRESET,
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
    objective: Objective | None = None,
    score: tuple[str, ...] | None = None,
    test_masks: int | None = None,
    border: float | None = None,
    feature_layers: tuple[int, ...] | None = None,
    feature_loss: float | None = None,
    image_score: str | None = None,
    anomaly_fills: tuple[str, ...] | None = None,
) -> RunConfig:
    """Start from a preset and apply the options a user gave (``None`` keeps the preset value).

    The model follows the objective and the score: ``inpaint`` adds the mask token (and 4 test
    masks unless ``test_masks`` is given), ``feature`` keeps a frozen reference encoder.
    """
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
        t = replace(t, epochs=epochs, min_steps=0)  # what the user asked for, exactly
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
    if feature_loss is not None:
        if feature_loss < 0:
            raise InputError(f"--feature-loss {feature_loss}: expected a weight >= 0")
        t = replace(t, feature_loss=feature_loss)
    m, t, s = _method_options(m, t, s, objective, score, test_masks, border, feature_layers, feature_loss)
    if image_score is not None:
        image_score_share(image_score)  # checks the name
        s = replace(s, image_score=image_score)
    if anomaly_fills is not None:
        if not anomaly_fills or not set(anomaly_fills) <= set(ANOMALY_FILLS) or len(set(anomaly_fills)) != len(anomaly_fills):
            raise InputError(f"--anomalies {'+'.join(anomaly_fills)}: expected distinct names from {', '.join(ANOMALY_FILLS)}, "
                             "joined by '+'")
        t = replace(t, anomaly_fills=tuple(anomaly_fills))
    return RunConfig(model=m, data=d, train=t, score=s, preset=preset)


def _method_options(
    m: ModelConfig,
    t: TrainConfig,
    s: ScoreConfig,
    objective: Objective | None,
    score: tuple[str, ...] | None,
    test_masks: int | None,
    border: float | None,
    feature_layers: tuple[int, ...] | None,
    feature_loss: float | None,
) -> tuple[ModelConfig, TrainConfig, ScoreConfig]:
    """The objective and the score a user chose, checked together, and what the model needs for them."""
    if m.name == "cae":  # the paper's baseline: reconstruction and the L2 score unless asked otherwise
        objective = objective or "reconstruct"
        score = score or ("l2",)
        t = replace(t, feature_loss=feature_loss or 0.0)
    if objective is not None:
        if objective not in OBJECTIVES:
            raise InputError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
        t = replace(t, objective=objective)
        if objective == "inpaint" and s.test_masks <= 1 and test_masks is None:
            s = replace(s, test_masks=DEFAULT_TEST_MASKS)
        if objective != "inpaint" and test_masks is None:
            s = replace(s, test_masks=1)
    if score is not None:
        unknown = [k for k in score if k not in SCORE_KINDS]
        if unknown or not score or len(set(score)) != len(score):
            raise InputError(f"--score {'+'.join(score)}: expected distinct names from {', '.join(SCORE_KINDS)}, joined by '+'")
        s = replace(s, kinds=tuple(score), scales=())
    if test_masks is not None:
        if test_masks < 1:
            raise InputError(f"--test-masks {test_masks}: expected 1 (no masks) or more")
        s = replace(s, test_masks=test_masks)
    if border is not None:
        if not 0 <= border < 0.5:
            raise InputError(f"--border {border}: expected a share of the image size in [0, 0.5)")
        s = replace(s, border=border)
    m = replace(m, mask_token=t.objective == "inpaint", segment_head="segment" in s.kinds)
    if "feature" in s.kinds or t.feature_loss > 0:
        layers = feature_layers if feature_layers is not None else (m.reference_layers or DEFAULT_FEATURE_LAYERS)
        m = replace(m, reference_layers=tuple(layers))
    else:
        m = replace(m, reference_layers=())
    if m.name == "cae" and (t.objective == "inpaint" or "feature" in s.kinds or m.segment_head):
        raise InputError("--objective inpaint and --score feature or segment need --model anovit, not the l2-CAE")
    if m.segment_head and t.objective != "restore":
        raise InputError("--score segment learns from the synthetic anomalies of --objective restore; train with that objective")
    if s.test_masks > 1 and t.objective != "inpaint":
        raise InputError(f"--test-masks {s.test_masks} hides patches, which only a model trained with --objective inpaint can fill")
    if m.reference_layers and m.name == "anovit" and not (m.pretrained or m.encoder_weights):
        raise InputError("--score feature and the feature loss compare pretrained features; give --encoder-weights FILE or "
                         "--pretrained, or train from scratch with --score l2 --feature-loss 0")  # fmt: skip
    return m, t, s
