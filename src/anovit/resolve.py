""":func:`resolve_config`: a preset (:mod:`anovit.presets`) plus the options a user gave, each checked, as one
:class:`~anovit.config.RunConfig`.

Torch-free. Where the encoder's weights come from (or the from-scratch fallback) is decided by
:func:`anovit.models.weights.resolve_run_config`."""

from __future__ import annotations

from dataclasses import replace

from anovit.config import (
    ANOMALY_FILLS,
    LR_SCHEDULES,
    OBJECTIVES,
    SCORE_KINDS,
    TEST_FLIPS,
    TOKEN_ATTENTIONS,
    TOKEN_MERGES,
    LrSchedule,
    ModelConfig,
    ModelName,
    Objective,
    Precision,
    RunConfig,
    ScoreConfig,
    TestFlips,
    TrainConfig,
    image_score_share,
)
from anovit.errors import InputError
from anovit.presets import (
    CAE_PRESET,
    DEFAULT_FEATURE_LAYERS,
    DEFAULT_PRESET,
    DEFAULT_TEST_MASKS,
    KNN_SIGMA,
    PRESETS,
    TOKEN_ATTENTION,
    TOKEN_DECODER_DEPTH,
    TOKEN_LAYERS,
    TOKEN_MERGE,
    TOKEN_TEST_SHIFT,
    TOKEN_VIEWS,
)


def resolve_config(
    preset: str = DEFAULT_PRESET,
    model: ModelName | None = None,
    image_size: int | None = None,
    epochs: int | None = None,
    min_steps: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    lr: float | None = None,
    lr_schedule: LrSchedule | None = None,
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
    test_flips: TestFlips | None = None,
    test_shift: int | None = None,
    coreset: float | None = None,
    augment_flips: bool | None = None,
    augment: bool | None = None,
    position_norm: bool | None = None,
    brightness: float | None = None,
    token_merge: str | None = None,
    token_views: int | None = None,
    token_attention: str | None = None,
    token_dropout: float | None = None,
    tiles: int | None = None,
) -> RunConfig:
    """Start from a preset and apply the options a user gave (``None`` keeps the preset value).

    The model follows the objective and the score: ``inpaint`` adds the mask token (and 4 test
    masks unless ``test_masks`` is given), ``feature`` keeps a frozen reference encoder.
    """
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    cfg = PRESETS[CAE_PRESET.get(preset, preset) if model == "cae" else preset]
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
    if min_steps is not None:
        if min_steps < 0:
            raise InputError(f"min_steps {min_steps}: expected a number of optimiser steps >= 0")
        t = replace(t, min_steps=min_steps)
    if epochs is not None:  # what the user asked for, exactly, unless a number of steps is asked for too
        t = replace(t, epochs=epochs, min_steps=min_steps or 0)
    if batch_size is not None:
        t = replace(t, batch_size=batch_size)
    if seed is not None:
        t = replace(t, seed=seed)
    if lr is not None:
        t = replace(t, lr=lr)
    if lr_schedule is not None:
        if lr_schedule not in LR_SCHEDULES:
            raise InputError(f"--lr-schedule {lr_schedule}: expected one of {', '.join(LR_SCHEDULES)}")
        t = replace(t, lr_schedule=lr_schedule)
    if precision is not None:
        t = replace(t, precision=precision)
    if sigma is not None:
        s = replace(s, sigma=sigma)
    if checkpoint_every is not None:
        if checkpoint_every < 0:
            raise InputError(
                f"--checkpoint-every {checkpoint_every}: expected 0 (never) or a positive number of epochs"
            )
        t = replace(t, checkpoint_every=checkpoint_every)
    if feature_loss is not None:
        if feature_loss < 0:
            raise InputError(f"--feature-loss {feature_loss}: expected a weight >= 0")
        t = replace(t, feature_loss=feature_loss)
    m, t, s = _method_options(m, t, s, objective, score, test_masks, border, feature_layers, feature_loss)
    if m.name == "knn" and sigma is None:
        s = replace(s, sigma=KNN_SIGMA)
    if m.name == "knn" and precision is None:  # bf16 features blur the small distances between normal patches
        t = replace(t, precision="fp32")
    if coreset is not None:
        if m.name != "knn" or not 0 < coreset <= 1:
            raise InputError(f"--coreset {coreset}: the share of patches --model knn keeps, in (0, 1]")
        m = replace(m, knn_coreset=coreset)
    if image_score is not None:
        image_score_share(image_score)  # checks the name
        s = replace(s, image_score=image_score)
    if anomaly_fills is not None:
        if (
            not anomaly_fills
            or not set(anomaly_fills) <= set(ANOMALY_FILLS)
            or len(set(anomaly_fills)) != len(anomaly_fills)
        ):
            raise InputError(
                f"--anomalies {'+'.join(anomaly_fills)}: "
                f"expected distinct names from {', '.join(ANOMALY_FILLS)}, joined by '+'"
            )
        t = replace(t, anomaly_fills=tuple(anomaly_fills))
    if position_norm is not None:
        m = replace(m, position_norm=position_norm)
    if token_merge is not None:
        _token_decoder_option(m, "--token-merge", token_merge, token_merge in TOKEN_MERGES, " or ".join(TOKEN_MERGES))
        m = replace(m, token_merge=token_merge)
    if token_attention is not None:
        valid = token_attention in TOKEN_ATTENTIONS
        _token_decoder_option(m, "--token-attention", token_attention, valid, " or ".join(TOKEN_ATTENTIONS))
        m = replace(m, token_attention=token_attention)
    if token_dropout is not None:
        _token_decoder_option(m, "--token-dropout", token_dropout, 0 <= token_dropout < 1, "a probability in [0, 1)")
        m = replace(m, token_dropout=token_dropout)
    if token_views is not None:
        _token_decoder_option(m, "--token-views", token_views, token_views >= 0, "a number of views >= 0")
        t = replace(t, token_views=token_views)
    if tiles is not None:
        if tiles < 1 or (m.name == "anovit" and t.objective != "tokens"):
            raise InputError(f"--tiles {tiles}: a number of tiles per side >= 1, for knn or AnoViT --objective tokens")
        if m.name != "cae":  # the l2-CAE beside them in a benchmark takes and ignores it
            m = replace(m, tiles=tiles)
    if m.tiles > 1 and m.image_size % (m.tiles * m.patch_size):
        raise InputError(
            f"--tiles {m.tiles}: the {m.image_size}-px image must split into {m.tiles} x {m.tiles} tiles of whole "
            f"{m.patch_size}-px patches, e.g. --image-size {m.tiles * 224}"
        )
    if augment_flips is not None:
        d = replace(d, hflip=augment_flips, vflip=augment_flips)
    if augment is False:  # no random affine and no flips (Dinomaly and PatchCore train on the images as they are)
        d = replace(d, affine_degrees=0.0, affine_translate=0.0, affine_scale=(1.0, 1.0), hflip=False, vflip=False)
    if brightness is not None:
        if not 0 <= brightness < 1:
            raise InputError(f"--brightness {brightness}: expected a share in [0, 1), e.g. 0.2 for factors 0.8 to 1.2")
        d = replace(d, brightness=brightness)
    if test_flips is not None:
        if test_flips not in TEST_FLIPS:
            raise InputError(f"--test-flips {test_flips}: expected one of {', '.join(TEST_FLIPS)}")
        s = replace(s, test_flips=test_flips)
    flipped = set(s.test_flips) if s.test_flips != "none" else set()  # {"h", "v"} for hv
    if ("h" in flipped and not d.hflip) or ("v" in flipped and not d.vflip):
        raise InputError(
            f"--test-flips {s.test_flips}: the training augmentation has no such flip, so a flipped normal image "
            "would look anomalous; use flips it has, or none"
        )
    if test_shift is not None:
        if not 0 <= test_shift < d.image_size // 4:
            raise InputError(
                f"--test-shift {test_shift}: expected pixels from 0 (off) to under a quarter of the "
                f"{d.image_size}-px input, e.g. {TOKEN_TEST_SHIFT} (a quarter of a 16-px patch)"
            )
        s = replace(s, test_shift=test_shift)
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
    )
    t = replace(t, objective="tokens", feature_loss=0.0, token_views=t.token_views or TOKEN_VIEWS)
    s = replace(s, kinds=("tokens",), scales=(), test_masks=1)
    return m, t, _with_border(s, border)


def _token_decoder_option(m: ModelConfig, flag: str, value: object, valid: bool, expected: str) -> None:
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
