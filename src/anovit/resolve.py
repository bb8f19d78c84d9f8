""":func:`resolve_config`: a preset (:mod:`anovit.presets`) plus the options a user gave, each checked, as one
:class:`~anovit.config.RunConfig`.

Torch-free. Where the encoder's weights come from (or the from-scratch fallback) is decided by
:func:`anovit.models.weights.resolve_run_config`."""

from __future__ import annotations

from dataclasses import replace

from anovit.config import (
    ANOMALY_FILLS,
    LR_SCHEDULES,
    TEST_FLIPS,
    TOKEN_ATTENTIONS,
    TOKEN_MAP_CHANNELS,
    TOKEN_MERGES,
    LrSchedule,
    ModelName,
    Objective,
    Precision,
    RunConfig,
    TestFlips,
)
from anovit.errors import InputError
from anovit.image_score import image_score_parts
from anovit.methods import choose_method, frozen_encoder_options, token_decoder_option
from anovit.presets import CAE_PRESET, DEFAULT_PRESET, KNN_SIGMA, PRESETS, TOKEN_TEST_SHIFT


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
    token_depth: int | None = None,
    token_groups: int | None = None,
    token_map_channels: str | None = None,
    tiles: int | None = None,
    patch_stride: int | None = None,
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
    m, t, s = choose_method(m, t, s, objective, score, test_masks, border, feature_layers, feature_loss)
    if m.name == "knn" and sigma is None:
        s = replace(s, sigma=KNN_SIGMA)
    if m.name == "knn" and precision is None:  # bf16 features blur the small distances between normal patches
        t = replace(t, precision="fp32")
    if coreset is not None:
        if m.name != "knn" or not 0 < coreset <= 1:
            raise InputError(f"--coreset {coreset}: the share of patches --model knn keeps, in (0, 1]")
        m = replace(m, knn_coreset=coreset)
    if image_score is not None:
        image_score_parts(image_score)
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
    if m.position_norm and len(image_score_parts(s.image_score)) > 1:
        raise InputError(
            f"--image-score {s.image_score} with --position-norm: a geometric mean needs a map >= 0, and the "
            "standardised map is signed; pass one statistic, e.g. --image-score top1"
        )
    if token_merge is not None:
        token_decoder_option(m, "--token-merge", token_merge, token_merge in TOKEN_MERGES, " or ".join(TOKEN_MERGES))
        m = replace(m, token_merge=token_merge)
    if token_map_channels is not None:
        valid = token_map_channels in TOKEN_MAP_CHANNELS
        token_decoder_option(m, "--token-map-channels", token_map_channels, valid, " or ".join(TOKEN_MAP_CHANNELS))
        m = replace(m, token_map_channels=token_map_channels)
    if m.position_norm and m.name == "anovit" and m.token_decoder_depth and m.token_map_channels == "ordinary":
        raise InputError(
            "--position-norm with --token-map-channels ordinary: the norm is measured on the map that localises, and "
            "the image score reads the map over all channels; give --token-map-channels all"
        )
    if token_attention is not None:
        valid = token_attention in TOKEN_ATTENTIONS
        token_decoder_option(m, "--token-attention", token_attention, valid, " or ".join(TOKEN_ATTENTIONS))
        m = replace(m, token_attention=token_attention)
    if token_dropout is not None:
        token_decoder_option(m, "--token-dropout", token_dropout, 0 <= token_dropout < 1, "a probability in [0, 1)")
        m = replace(m, token_dropout=token_dropout)
    if token_depth is not None:
        token_decoder_option(m, "--token-depth", token_depth, token_depth >= 1, "a number of decoder blocks >= 1")
        m = replace(m, token_decoder_depth=token_depth)
    if token_groups is not None:
        valid = 1 <= token_groups <= len(m.reference_layers)
        token_decoder_option(m, "--token-groups", token_groups, valid, "from 1 to the number of --feature-layers")
        m = replace(m, token_groups=token_groups)
    if m.token_decoder_depth and m.token_decoder_depth < min(m.token_groups, len(m.reference_layers)):
        raise InputError(
            f"--token-depth {m.token_decoder_depth} with {m.token_groups} groups of blocks: each group needs a decoder "
            "block of its own; give --token-depth at least --token-groups"
        )
    if token_views is not None:
        token_decoder_option(m, "--token-views", token_views, token_views >= 0, "a number of views >= 0")
        t = replace(t, token_views=token_views)
    m = frozen_encoder_options(m, t, tiles, patch_stride)
    if augment_flips and augment is False:
        raise InputError("--train-flips with --no-augment: --no-augment trains without flips; give one of the two")
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
