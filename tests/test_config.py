from __future__ import annotations

from pathlib import Path

import pytest

from anovit.config import RunConfig
from anovit.errors import InputError
from anovit.presets import PRESETS
from anovit.resolve import resolve_config


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_config_round_trips_through_json(preset: str, tmp_path: Path) -> None:
    cfg = resolve_config(preset, model="cae", image_size=128, epochs=3, seed=7)
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json())
    assert RunConfig.load(path) == cfg


def test_options_override_the_preset() -> None:
    cfg = resolve_config("paper", image_size=224, epochs=5, encoder_weights="w.npz")
    assert (cfg.model.image_size, cfg.data.image_size, cfg.train.epochs) == (224, 224, 5)
    assert cfg.model.encoder_weights == "w.npz" and not cfg.model.pretrained
    assert resolve_config("paper").model.pretrained


def test_bad_config_is_clear(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown preset"):
        resolve_config("huge")
    path = tmp_path / "config.json"
    path.write_text('{"model": {"colour": 1}, "data": {}, "train": {}, "score": {}}')
    with pytest.raises(InputError, match="not a valid anovit config"):
        RunConfig.load(path)


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("score", "test_flips", "both", "ScoreConfig.test_flips is 'both'"),
        ("train", "objective", "denoise", "TrainConfig.objective is 'denoise'"),
        ("model", "name", "vae", "ModelConfig.name is 'vae'"),
        ("model", "token_merge", "mean", "ModelConfig.token_merge is 'mean'"),
        ("model", "token_attention", "flash", "ModelConfig.token_attention is 'flash'"),
        ("train", "precision", "int8", "TrainConfig.precision is 'int8'"),
        ("score", "kinds", ["l2", "lpips"], "ScoreConfig.kinds has 'lpips'"),
        ("score", "image_score", "top200", "ScoreConfig.image_score is 'top200'"),
        ("model", "segment_scale", 0, "ModelConfig.segment_scale is 0"),
        ("score", "test_shift", -4, "ScoreConfig.test_shift is -4"),
        ("score", "test_shift", 2.5, "ScoreConfig.test_shift is 2.5"),
        ("score", "test_shift", 224, "ScoreConfig.test_shift is 224"),  # the input's size: no reflect pad
    ],
)
def test_hand_edited_config_with_an_unknown_name_fails_at_load(
    tmp_path: Path, section: str, key: str, value: object, named: str
) -> None:
    import json
    import re

    raw = resolve_config("tiny").to_dict()
    raw[section][key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=re.escape(f"{path}: not a valid anovit config (") + ".*" + re.escape(named)):
        RunConfig.load(path)


def test_test_flips_option_and_older_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    assert resolve_config("tiny").score.test_flips == "hv"
    assert resolve_config("paper").score.test_flips == resolve_config("small").score.test_flips == "none"
    assert resolve_config("tiny", model="cae").score.test_flips == "none"  # the l2-CAE baseline as published
    assert resolve_config("tiny", model="cae", test_flips="h").score.test_flips == "h"
    assert resolve_config("tiny", test_flips="none").score.test_flips == "none"
    with pytest.raises(InputError, match="--test-flips x"):
        resolve_config("tiny", test_flips="x")
    monkeypatch.setitem(PRESETS, "no-vflip", replace(PRESETS["tiny"], data=replace(PRESETS["tiny"].data, vflip=False)))
    with pytest.raises(InputError, match="augmentation has no such flip"):
        resolve_config("no-vflip")
    assert resolve_config("no-vflip", test_flips="h").score.test_flips == "h"
    raw = resolve_config("tiny").to_dict()
    del raw["score"]["test_flips"]  # a config.json written before test flips: scored as it was then
    assert RunConfig.from_dict(raw).score.test_flips == "none"


def test_test_shift_option_and_older_configs() -> None:
    from anovit.presets import TOKEN_TEST_SHIFT

    assert resolve_config("tokens").score.test_shift == TOKEN_TEST_SHIFT == 4  # a quarter of the 16-px patch
    assert resolve_config("tiny").score.test_shift == resolve_config("paper").score.test_shift == 0
    assert resolve_config("tokens", model="knn").score.test_shift == 0  # the baselines as published
    assert resolve_config("tokens", model="cae").score.test_shift == 0
    assert resolve_config("tokens", objective="restore").score.test_shift == 0  # measured on the tokens' map alone
    assert resolve_config("tokens", test_shift=0).score.test_shift == 0
    assert resolve_config("tokens", model="cae", test_shift=2).score.test_shift == 2
    for bad in (-1, 56):  # 56: a quarter of the 224-px input
        with pytest.raises(InputError, match=f"--test-shift {bad}: expected pixels"):
            resolve_config("tokens", test_shift=bad)
    raw = resolve_config("tokens").to_dict()
    del raw["score"]["test_shift"]  # a config.json written before the shift: scored as it was then
    assert RunConfig.from_dict(raw).score.test_shift == 0
