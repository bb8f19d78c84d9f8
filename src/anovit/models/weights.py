"""Where a pretrained encoder's weights come from, decided once before training.

For a config that asks for pretrained weights (``ModelConfig.pretrained``) without a file, in order:

1. ``$ANOVIT_ENCODER_WEIGHTS``: a local file for this encoder (its name must contain the encoder's
   base name, e.g. ``vit_tiny_patch16_224.safetensors``), for machines without the internet;
2. the Hugging Face hub through timm (when online; cached by huggingface_hub);
3. otherwise the from-scratch configuration the caller gives (``fallback``; for the ``tiny`` preset,
   :func:`resolve_run_config` gives the ``scratch`` preset with the same options), or
   without one the same setting from a random initialisation, without the ``feature`` score (it
   needs pretrained features); either with a warning saying which.

The resolved file goes into the run's config (``encoder_weights``), so the run says what it used.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from anovit.config import ModelConfig, RunConfig
from anovit.errors import InputError
from anovit.presets import DEFAULT_PRESET
from anovit.resolve import resolve_config

log = logging.getLogger(__name__)

WEIGHTS_ENV = "ANOVIT_ENCODER_WEIGHTS"
HUB_HOST = "huggingface.co"


def _online(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("ANOVIT_OFFLINE"):
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def env_weights(encoder: str) -> Path | None:
    """``$ANOVIT_ENCODER_WEIGHTS`` when it names an existing file for ``encoder``."""
    value = os.environ.get(WEIGHTS_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    base = encoder.split(".")[0]
    if not path.is_file():
        log.warning("$%s=%s: no such file; ignored", WEIGHTS_ENV, value)
        return None
    if base not in path.name:
        log.info("$%s=%s is not for %s; ignored", WEIGHTS_ENV, value, base)
        return None
    return path


def hub_weights(encoder: str) -> Path | None:
    """Download (or find in the cache) timm's pretrained file for ``encoder``; None when offline or unknown."""
    import timm
    from huggingface_hub import hf_hub_download

    try:
        cfg = timm.models.get_pretrained_cfg(encoder)
    except Exception:  # an unknown tag
        cfg = None
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:
        return None
    try:
        return Path(hf_hub_download(hub_id, "model.safetensors", local_files_only=not _online()))
    except Exception as exc:  # offline, no cache, hub errors of many kinds
        log.debug("hub weights for %s: %s", encoder, exc)
        return None


def find_pretrained(encoder: str) -> tuple[Path | None, str]:
    """``encoder``'s pretrained file, from ``$ANOVIT_ENCODER_WEIGHTS`` first, then the hub (or its cache); and where
    it was looked for last. None where neither has it."""
    path = env_weights(encoder)
    if path is not None:
        return path, f"${WEIGHTS_ENV}"
    return hub_weights(encoder), "the Hugging Face hub"


def weights_found(m: ModelConfig) -> bool:
    """Whether the encoder of ``m`` gets pretrained weights (a file, ``$ANOVIT_ENCODER_WEIGHTS`` or the hub), or needs
    none (the l2-CAE, a from-scratch encoder); :func:`resolve_encoder_source` without its fallback and warnings."""
    if m.name == "cae" or m.encoder_weights or not m.pretrained:
        return True
    return find_pretrained(m.encoder)[0] is not None


def resolve_encoder_source(cfg: RunConfig, fallback: RunConfig | None = None) -> tuple[RunConfig, str]:
    """The config with its encoder weights made concrete, and a sentence saying where they came from.

    Where no weights can be found, ``fallback`` (a from-scratch configuration) is what trains instead;
    without it, ``cfg`` from a random initialisation without the ``feature`` score.
    """
    m = cfg.model
    if m.name == "cae":
        return cfg, "no encoder (l2-CAE)"
    if m.encoder_weights:
        return cfg, f"encoder weights from {m.encoder_weights}"
    if not m.pretrained:
        # chosen (a from-scratch preset, --no-pretrained): not a warning; the caller logs the sentence
        return cfg, f"encoder {m.encoder} is randomly initialised (no --pretrained, no --encoder-weights)"
    path, where = find_pretrained(m.encoder)
    if path is not None:
        return replace(
            cfg, model=replace(m, pretrained=False, encoder_weights=str(path))
        ), f"encoder weights from {where} ({path})"
    missing = f"no pretrained weights for {m.encoder} (offline, no --encoder-weights, no ${WEIGHTS_ENV})"
    if m.name == "knn":
        raise InputError(f"{missing}: --model knn searches pretrained features; give --encoder-weights FILE")
    if fallback is not None:
        f = fallback
        message = (
            f"{missing}: training the from-scratch preset {f.preset!r} instead ({f.model.image_size} px, "
            f"{f.model.patch_size}-px patches, objective {f.train.objective}, score {'+'.join(f.score.kinds)})"
        )
        log.warning(message)
        return fallback, message
    kinds = tuple(k for k in cfg.score.kinds if k != "feature") or ("l2",)
    fallback = replace(
        cfg,
        model=replace(m, pretrained=False, reference_layers=()),
        score=replace(cfg.score, kinds=kinds, scales=()),
        train=replace(cfg.train, feature_loss=0.0),
    )
    instead = f"score {'+'.join(kinds)} instead of {'+'.join(cfg.score.kinds)}"
    message = f"{missing}: training it from a random initialisation, {instead}"
    log.warning(message)
    return fallback, message


# a preset that wants pretrained weights -> the from-scratch preset it trains as where they cannot be found
SCRATCH_FALLBACK: dict[str, str] = {"tiny": "scratch", "tokens": "scratch"}
# options about the pretrained encoder, which a from-scratch preset does not take
_PRETRAINED_ONLY = ("encoder", "pretrained", "encoder_weights", "feature_layers", "feature_loss")


def resolve_run_config(preset: str = DEFAULT_PRESET, **options: Any) -> tuple[RunConfig, str]:
    """:func:`anovit.resolve.resolve_config`, then where the encoder's weights come from
    (:func:`resolve_encoder_source`), and a sentence saying so.

    A preset of :data:`SCRATCH_FALLBACK` that finds no weights (offline, no file) trains as its
    from-scratch counterpart with the same options instead, unless the user chose the encoder.
    """
    cfg = resolve_config(preset, **options)
    return resolve_encoder_source(cfg, _scratch_fallback(preset, options))


def _scratch_fallback(preset: str, options: dict[str, Any]) -> RunConfig | None:
    """The from-scratch preset ``preset`` falls back to, with the options that apply to it; None: no such preset."""
    scratch = SCRATCH_FALLBACK.get(preset)
    if scratch is None or options.get("encoder") is not None or (options.get("model") or "anovit") != "anovit":
        return None
    kept = {k: v for k, v in options.items() if k not in _PRETRAINED_ONLY}
    if "feature" in (kept.get("score") or ()):  # pretrained features; the from-scratch preset's own score instead
        kept["score"] = None
    try:
        return resolve_config(scratch, **kept)
    except InputError:  # an option that only makes sense with the pretrained preset: the same-model fallback
        return None
