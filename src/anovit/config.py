"""Configuration: one frozen dataclass per concern and JSON round-trips (the presets are in :mod:`anovit.presets`).

The resolved :class:`RunConfig` is written beside every trained model (``config.json``) so a run
folder alone is enough to rebuild the model and score new images.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from anovit.errors import InputError
from anovit.image_score import IMAGE_SCORE_HELP, image_score_parts

ModelName = Literal["anovit", "cae", "knn"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Objective = Literal["reconstruct", "inpaint", "restore", "tokens"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
# how the learning rate moves over training (anovit.training.loop.lr_factor)
LrSchedule = Literal["constant", "cosine"]
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
PRECISIONS: tuple[str, ...] = get_args(Precision)
SCORE_KINDS: tuple[str, ...] = ("l2", "ssim", "gms", "feature", "segment", "knn", "tokens")
# the kinds whose map the model gives itself, with no pixel reconstruction (the knn baseline, the token decoder)
OWN_MAP_KINDS: tuple[str, ...] = ("knn", "tokens")
# the token decoder's attention (anovit.models.attention): timm's softmax, or linear attention (Dinomaly's)
TokenAttention = Literal["softmax", "linear"]
TOKEN_ATTENTIONS: tuple[str, ...] = get_args(TokenAttention)
# how the token map merges its two groups of blocks (ModelConfig.token_merge; anovit.models.tokens)
TokenMerge = Literal["sum", "max"]
TOKEN_MERGES: tuple[str, ...] = get_args(TokenMerge)
# the channels the token map's cosine reads for localisation (ModelConfig.token_map_channels; anovit.models.tokens)
TokenMapChannels = Literal["all", "ordinary"]
TOKEN_MAP_CHANNELS: tuple[str, ...] = get_args(TokenMapChannels)
# test-time flips (ScoreConfig.test_flips): the maps of the image and of these flips of it, each flipped back, are
# averaged
TestFlips = Literal["none", "h", "v", "hv"]
TEST_FLIPS: tuple[str, ...] = get_args(TestFlips)
# how training and test images are held: decoded in memory, or decoded from disk every epoch (anovit.data.datasets)
CacheMode = Literal["auto", "memory", "none"]
CACHE_MODES: tuple[str, ...] = get_args(CacheMode)
# restore's synthetic anomaly fills (anovit.training.anomalies); a config.json without anomaly_fills was trained before
# "blur"
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
    # The head sees the pair downscaled by this factor and upsamples its map back (2: a quarter of the pixels, ~1/7 of
    # the time).
    segment_scale: int = 1
    # The frozen encoder of the tokens objective and of knn sees the image as tiles x tiles tiles of
    # image_size / tiles each (anovit.models.encoder.FeatureReference): more patches per image for small defects.
    tiles: int = 1
    # The same frozen encoder reads its patches every patch_stride px (0: the patch size, side by side): half the
    # patch gives overlapping patches on a grid twice as fine, each still the size the ViT was trained on.
    patch_stride: int = 0
    # knn, the nearest-neighbour baseline (PatchCore): the reference_layers' patch tokens, averaged over
    # knn_pool x knn_pool neighbours; a greedy coreset of knn_coreset of the training patches is kept (0.1, as
    # PatchCore and anomalib; benchmarks/knn.md measures 0.25 and 1); knn_bank is the bank's size once built
    # (0 before), so that a trained run rebuilds the model it loads.
    knn_pool: int = 3
    knn_coreset: float = 0.1
    knn_bank: int = 0
    # > 0: AnoViT reconstructs the frozen encoder's tokens of reference_layers, not pixels (the tokens objective,
    # anovit.models.tokens): this many transformer blocks after a bottleneck MLP whose inputs and hidden units drop
    # out with probability token_dropout.
    token_decoder_depth: int = 0
    token_dropout: float = 0.2
    token_groups: int = 2  # the target blocks in this many consecutive groups, each compared and scored on its own
    # How the token map merges its groups of blocks: "sum" of their distances, or "max" of each divided by its
    # peak level on the normal hold-out (measured after training, stored with the weights; anovit.models.tokens).
    token_merge: TokenMerge = "sum"
    # The token decoder's attention: "softmax" (timm's Block; what a config.json without the field was trained with)
    # or "linear" (phi(q) (phi(k)^T v), Dinomaly's; anovit.models.attention).
    token_attention: TokenAttention = "softmax"
    # The channels the token map's cosine reads where it localises: "all" (what a config.json without the field was
    # trained with), or "ordinary": all but the encoder's few massive activations (channels whose energy on normal
    # tokens is over a thousand times the median channel's, measured before training and stored with the weights),
    # whose size drowns the rest of a patch in the cosine. The image score reads all channels in both.
    token_map_channels: TokenMapChannels = "all"
    # The image score read from the score map standardised at each pixel by its mean and spread on the normal
    # validation images (anovit.models.position; measured after training, stored with the weights), so that places
    # that are busy on every normal part (edges, highlights, the background) stop deciding the verdict. The map
    # itself, and so the pixel metrics and masks, stays as it is.
    position_norm: bool = False


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
    # > 0: each training image's brightness scaled by a factor drawn from [1 - b, 1 + b] (lighting that drifts on a
    # line); 0: off.
    brightness: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-4
    # constant: lr throughout. cosine: a linear warm-up over the first 5 % of the run's steps, then a cosine
    # decay to 0 at its last step, so a short run still ends on small steps (a --resume with more epochs stretches
    # the decay over the new total).
    lr_schedule: LrSchedule = "constant"
    weight_decay: float = 0.0
    seed: int = 0
    # auto: bf16 on CUDA with bf16 support; on a CPU, bf16 only where a matmul probe measured it faster (precision.py).
    precision: Precision = "auto"
    num_workers: int = 0
    # checkpoint.pt (model + optimiser + random state, for --resume) every this many epochs and after
    # the last; 0: never (the run cannot be resumed). min_steps' added epochs stretch it (loop.with_min_steps).
    checkpoint_every: int = 1
    # reconstruct: the paper (L2 between an image and its reconstruction). inpaint: a random share
    # (mask_ratio) of the patches is hidden behind a mask token and must be filled in. restore: a
    # synthetic anomaly is planted in anomaly_fraction of the images and the clean image is the target.
    # tokens: the frozen encoder's middle-block tokens are the target, through a noisy bottleneck (after Dinomaly;
    # ModelConfig.token_decoder_depth), the loss is their cosine distance with the easiest easy_share weighted down.
    objective: Objective = "reconstruct"
    mask_ratio: tuple[float, float] = (0.25, 0.75)
    anomaly_fraction: float = 0.5
    anomaly_fills: tuple[str, ...] = ANOMALY_FILLS  # what restore's anomalies are made of (anovit.training.anomalies)
    easy_share: float = 0.9  # tokens: the share of the patches, reconstructed best, whose loss counts a tenth
    # tokens: > 0: where training reads each image more than this many times, encode this many augmented views of
    # each once and train on them (anovit.training.token_cache); 0: the frozen encoder runs at every step.
    token_views: int = 0
    # > 0: add this times the reference encoder's feature distance between output and target to the
    # L2 loss (needs ModelConfig.reference_layers; see anovit.training.objectives.feature_loss).
    feature_loss: float = 0.0
    # > 0: train at least this many optimiser steps, adding epochs on small training sets
    # (anovit.training.loop.epochs_for); the run's config.json records the epochs it got. --epochs sets 0.
    min_steps: int = 0


@dataclass(frozen=True)
class ScoreConfig:
    """Scoring (paper, section 3.2): Gaussian sigma in pixels of the model's input size.

    ``kinds``: the dissimilarity maps averaged into the score map (l2 = the paper's); with several,
    each is divided by its ``scales`` entry (its mean on the validation images, measured after
    training) first. ``border``: the share of the image size at each edge that the image score
    ignores. ``test_masks``: K complementary patch masks at test time (inpaint),
    so every patch is predicted while hidden; 1 = the whole image at once. ``image_score``: how the
    interior of the map becomes the image score: ``max`` (the paper), ``mean``, ``topP`` = the mean of the
    highest P percent of its pixels, ``std``, the map's spread (blind to an offset of the whole map), or several
    joined by ``+``, whose geometric mean is the score (``top1+std``; :mod:`anovit.image_score`). ``test_flips``:
    ``none``, or ``h``, ``v``, ``hv``: the image is also scored flipped horizontally, vertically,
    or both ways (each of the 3 flips), and the maps, flipped back, are averaged before smoothing;
    1, 2 or 4 times the work. Use only flips the training augmentation had (``DataConfig``), so
    a flipped normal image is still normal to the model. ``test_shift``: 0, or S pixels of the model's input
    size: the image is scored in four views shifted diagonally by S pixels each way, and their maps, moved back,
    are averaged before smoothing (4 times the work; with flips, 4 shifts of each flip). A quarter of a ViT's
    patch samples its patch grid between its cells (:func:`anovit.scoring.maps.combined_map`).
    """

    sigma: float = 4.0
    truncate: float = 4.0
    kinds: tuple[str, ...] = ("l2",)
    scales: tuple[float, ...] = ()
    border: float = 0.0
    test_masks: int = 1
    image_score: str = "max"
    test_flips: TestFlips = "none"
    test_shift: int = 0


def check_patch_stride(patch_size: int, stride: int) -> None:
    """Raise :class:`InputError` unless ``stride`` (0: the patch size) reads ``patch_size``-px patches on a grid
    whose cells are centred on them (:class:`anovit.models.encoder.FeatureReference`): a divisor of the patch size
    that leaves an even overlap."""
    if stride and (stride < 1 or patch_size % stride or (patch_size - stride) % 2):
        raise InputError(
            f"--patch-stride {stride}: expected the patch size {patch_size} or a divisor of it that leaves an even "
            f"overlap, e.g. {patch_size // 2}"
        )


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
        train = {
            "anomaly_fills": list(PRE_BLUR_FILLS),
            **raw["train"],
        }  # older runs were trained (and resume) without blur
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
            cfg = cls.from_dict(raw)
            _check_score_names(cfg.score)
            shift, side = cfg.score.test_shift, cfg.data.image_size
            if not (isinstance(shift, int) and 0 <= shift < side):  # the views are reflect-padded by it
                raise ValueError(
                    f"ScoreConfig.test_shift is {shift!r}; expected pixels, an integer from 0 to under the {side}-px "
                    "input"
                )
            if not (isinstance(cfg.model.segment_scale, int) and cfg.model.segment_scale >= 1):
                raise ValueError(f"ModelConfig.segment_scale is {cfg.model.segment_scale!r}; expected an integer >= 1")
            return cfg
        except FileNotFoundError:
            raise InputError(f"{path}: no config.json here; is this a run folder written by 'anovit train'?") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: not a valid anovit config ({exc})") from None


def _check_score_names(score: ScoreConfig) -> None:
    """ValueError unless the score's map kinds and image score are names the scoring knows."""
    unknown = [k for k in score.kinds if k not in SCORE_KINDS]
    if unknown:
        raise ValueError(
            f"ScoreConfig.kinds has {', '.join(map(repr, unknown))}; expected names from {', '.join(SCORE_KINDS)}"
        )
    try:
        image_score_parts(score.image_score)
    except InputError:
        raise ValueError(f"ScoreConfig.image_score is {score.image_score!r}; expected {IMAGE_SCORE_HELP}") from None


def _build(cls: type, raw: dict[str, Any]) -> Any:
    """Build a dataclass from JSON, turning lists back into tuples and rejecting unknown keys."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise KeyError(f"unknown {cls.__name__} keys {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    hints = get_type_hints(cls)
    for name, value in values.items():  # a Literal field holds one of its names (a hand-edited file may not)
        allowed = get_args(hints[name]) if get_origin(hints[name]) is Literal else ()
        if allowed and value not in allowed:
            raise ValueError(f"{cls.__name__}.{name} is {value!r}; expected one of {', '.join(map(str, allowed))}")
    return cls(**values)
