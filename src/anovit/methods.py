"""The objective, the score and the model parts they need, checked together, for
:func:`anovit.resolve.resolve_config`: the pixel objectives, AnoViT's tokens (``--objective tokens``), the knn
baseline, and how the frozen encoder of the last two reads the image (``--tiles``, ``--patch-stride``).

Torch-free."""

from __future__ import annotations

from dataclasses import replace

from anovit.config import OBJECTIVES, SCORE_KINDS, ModelConfig, Objective, ScoreConfig, TrainConfig, check_patch_stride
from anovit.errors import InputError
from anovit.presets import (
    DEFAULT_FEATURE_LAYERS,
    DEFAULT_TEST_MASKS,
    TOKEN_ATTENTION,
    TOKEN_DECODER_DEPTH,
    TOKEN_LAYERS,
    TOKEN_MAP_CHANNELS,
    TOKEN_MERGE,
    TOKEN_VIEWS,
)


def choose_method(
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
    if m.name == "knn":  # the nearest-neighbour baseline: pretrained features, no training objective
        if score not in (None, ("knn",)) or objective not in (None, "reconstruct"):
            raise InputError("--model knn scores by its nearest-neighbour distance alone: no --score or --objective")
        t = replace(t, objective="reconstruct", feature_loss=0.0)
        s = replace(
            s, kinds=("knn",), scales=(), test_masks=1, test_flips="none", test_shift=0, image_score="max", border=0.0
        )
        layers = feature_layers if feature_layers is not None else DEFAULT_FEATURE_LAYERS
        m = replace(m, mask_token=False, segment_head=False, reference_layers=tuple(layers), token_decoder_depth=0)
        return m, t, _with_border(s, border)
    if score is not None and "knn" in score:
        raise InputError("--score knn is the nearest-neighbour baseline's own score: use --model knn")
    if (objective or t.objective) == "tokens" and m.name == "anovit":
        return _token_options(m, t, s, score, test_masks, border, feature_layers, feature_loss)
    if score is not None and "tokens" in score or objective == "tokens":
        raise InputError("--objective tokens and --score tokens go together, with --model anovit")
    if score is None and "tokens" in s.kinds:  # the tokens preset with a pixel objective: the paper's score
        s = replace(s, kinds=("l2",), scales=(), test_shift=0)  # the shift was measured on the tokens alone
    if m.name == "cae":  # the paper's baseline: reconstruction and the L2 score unless asked otherwise
        objective = objective or "reconstruct"
        score = score or ("l2",)
        t = replace(t, feature_loss=feature_loss or 0.0)
        s = replace(s, test_flips="none", test_shift=0)  # the baseline as published; --test-flips still applies
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
            raise InputError(
                f"--score {'+'.join(score)}: expected distinct names from {', '.join(SCORE_KINDS)}, joined by '+'"
            )
        s = replace(s, kinds=tuple(score), scales=())
    # the preset's head learns from restore's anomalies
    if score is None and t.objective != "restore" and "segment" in s.kinds:
        s = replace(s, kinds=tuple(k for k in s.kinds if k != "segment") or ("l2",), scales=())
    if test_masks is not None:
        if test_masks < 1:
            raise InputError(f"--test-masks {test_masks}: expected 1 (no masks) or more")
        s = replace(s, test_masks=test_masks)
    s = _with_border(s, border)
    m = replace(m, mask_token=t.objective == "inpaint", segment_head="segment" in s.kinds, token_decoder_depth=0)
    if "feature" in s.kinds or t.feature_loss > 0:
        layers = feature_layers if feature_layers is not None else (m.reference_layers or DEFAULT_FEATURE_LAYERS)
        m = replace(m, reference_layers=tuple(layers))
    else:
        m = replace(m, reference_layers=())
    if m.name == "cae" and (t.objective == "inpaint" or "feature" in s.kinds or m.segment_head):
        raise InputError("--objective inpaint and --score feature or segment need --model anovit, not the l2-CAE")
    if m.segment_head and t.objective != "restore":
        raise InputError(
            "--score segment learns from the synthetic anomalies of --objective restore; train with that objective"
        )
    if s.test_masks > 1 and t.objective != "inpaint":
        raise InputError(
            f"--test-masks {s.test_masks} hides patches, which only a model trained with --objective inpaint can fill"
        )
    if m.reference_layers and m.name == "anovit" and not (m.pretrained or m.encoder_weights):
        raise InputError(
            "--score feature and the feature loss compare pretrained features; give --encoder-weights FILE or "
            "--pretrained, or train from scratch with --score l2 --feature-loss 0"
        )
    return m, t, s


def _token_options(
    m: ModelConfig,
    t: TrainConfig,
    s: ScoreConfig,
    score: tuple[str, ...] | None,
    test_masks: int | None,
    border: float | None,
    feature_layers: tuple[int, ...] | None,
    feature_loss: float | None,
) -> tuple[ModelConfig, TrainConfig, ScoreConfig]:
    """AnoViT reconstructing the frozen encoder's tokens (``--objective tokens``): its own score, no pixels."""
    if score not in (None, ("tokens",)) or (test_masks or 1) > 1 or feature_loss:
        raise InputError(
            "--objective tokens scores by the token decoder's distance alone: no other --score, no --test-masks, "
            "no --feature-loss"
        )
    if not (m.pretrained or m.encoder_weights):
        raise InputError(
            "--objective tokens reconstructs pretrained features; give --encoder-weights FILE or --pretrained"
        )
    layers = feature_layers if feature_layers is not None else TOKEN_LAYERS
    m = replace(
        m,
        mask_token=False,
        segment_head=False,
        reference_layers=tuple(layers),
        token_decoder_depth=m.token_decoder_depth or TOKEN_DECODER_DEPTH,
        token_merge=TOKEN_MERGE if m.token_decoder_depth == 0 else m.token_merge,
        token_attention=TOKEN_ATTENTION if m.token_decoder_depth == 0 else m.token_attention,
        token_map_channels=TOKEN_MAP_CHANNELS if m.token_decoder_depth == 0 else m.token_map_channels,
    )
    t = replace(t, objective="tokens", feature_loss=0.0, token_views=t.token_views or TOKEN_VIEWS)
    s = replace(s, kinds=("tokens",), scales=(), test_masks=1)
    return m, t, _with_border(s, border)


def frozen_encoder_options(m: ModelConfig, t: TrainConfig, tiles: int | None, stride: int | None) -> ModelConfig:
    """``m`` with how the frozen encoder of knn and of AnoViT's tokens reads the image (``--tiles``,
    ``--patch-stride``), checked; the l2-CAE beside them in a benchmark takes and ignores both."""
    for flag, value, valid, expected in (
        ("--tiles", tiles, tiles is None or tiles >= 1, "a number of tiles per side >= 1"),
        ("--patch-stride", stride, stride is None or stride >= 1, "a step in pixels >= 1"),
    ):
        if value is not None and (not valid or (m.name == "anovit" and t.objective != "tokens")):
            raise InputError(f"{flag} {value}: {expected}, for knn or AnoViT --objective tokens")
    if m.name != "cae":
        m = replace(
            m, tiles=m.tiles if tiles is None else tiles, patch_stride=m.patch_stride if stride is None else stride
        )
    if m.tiles > 1 and m.image_size % (m.tiles * m.patch_size):
        raise InputError(
            f"--tiles {m.tiles}: the {m.image_size}-px image must split into {m.tiles} x {m.tiles} tiles of whole "
            f"{m.patch_size}-px patches, e.g. --image-size {m.tiles * 224}"
        )
    check_patch_stride(m.patch_size, m.patch_stride)
    return m


def token_decoder_option(m: ModelConfig, flag: str, value: object, valid: bool, expected: str) -> None:
    """InputError unless ``value`` of ``flag`` is ``valid`` (``expected`` says what is) and there is AnoViT's token
    decoder to take it (the l2-CAE and knn beside it in a benchmark take and ignore it)."""
    if not valid or (m.name == "anovit" and m.token_decoder_depth == 0):
        raise InputError(f"{flag} {value}: {expected}, for AnoViT with --objective tokens")


def _with_border(s: ScoreConfig, border: float | None) -> ScoreConfig:
    """``s`` with the ``--border`` a user gave, checked."""
    if border is None:
        return s
    if not 0 <= border < 0.5:
        raise InputError(f"--border {border}: expected a share of the image size in [0, 0.5)")
    return replace(s, border=border)
