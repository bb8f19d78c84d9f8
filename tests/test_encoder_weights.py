"""The encoder's weights really come from the file given (the test writes it itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from anovit.errors import InputError
from anovit.models import AnoViT

from .conftest import TINY_VIT

NAME = "vit_tiny_patch16_224"


def _reference_vit(img_size: int) -> torch.nn.Module:
    torch.manual_seed(123)
    vit = timm.create_model(NAME, pretrained=False, img_size=img_size, patch_size=8, num_classes=10, **TINY_VIT)
    with torch.no_grad():  # make every tensor distinctive, including the ones timm initialises to 0 or 1
        for p in vit.parameters():
            p.add_(torch.randn_like(p))
    return vit


def _build(weights: Path, img_size: int = 32) -> AnoViT:
    return AnoViT(
        img_size,
        encoder=NAME,
        patch_size=8,
        decoder_channels=(8, 8, 8, 8, 8),
        encoder_overrides=TINY_VIT,
        encoder_weights=weights,
    )


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_file_is_loaded(tmp_path: Path, suffix: str) -> None:
    ref = _reference_vit(32)
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    path = tmp_path / f"encoder{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    model = _build(path)
    loaded = model.encoder.vit.state_dict()
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], msg=f"{key} was not loaded from the file")
    assert "head.weight" not in loaded  # the classifier head is dropped: the encoder ends at the tokens


def test_weights_at_another_size_are_resampled(tmp_path: Path) -> None:
    """A checkpoint trained at 64 px loads into a 32 px encoder: timm resamples pos_embed."""
    ref = _reference_vit(64)
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    model = _build(path, img_size=32)
    assert model.encoder.vit.pos_embed.shape == (1, 1 + 16, TINY_VIT["embed_dim"])
    torch.testing.assert_close(model.encoder.vit.blocks[0].attn.qkv.weight, ref.blocks[0].attn.qkv.weight)


def test_missing_or_wrong_weights_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        _build(tmp_path / "nope.safetensors")
    bad = tmp_path / "encoder.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    with pytest.raises(InputError, match="could not load it as weights"):
        _build(bad)
    txt = tmp_path / "weights.txt"
    txt.write_text("x")
    with pytest.raises(InputError, match="expected a weights file"):
        _build(txt)


def test_unreachable_hub_names_both_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_url", _no_network)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", _no_network)
    with pytest.raises(InputError, match=r"--encoder-weights PATH.*--pretrained"):
        AnoViT(224, encoder=NAME, patch_size=16, pretrained=True)


def _no_network(*args: object, **kwargs: object) -> None:
    raise OSError("no network in this test")


def test_resume_needs_no_pretrained_file(mvtec_root: Path, tmp_path: Path) -> None:
    """The checkpoint holds every weight, the reference ViT's included: a run resumes after its pretrained file
    is gone."""
    from dataclasses import replace

    from anovit.cli import main
    from anovit.files import load_config, save_config

    from .conftest import tiny_run_config

    weights = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in _reference_vit(32).state_dict().items()}, str(weights))
    base = tiny_run_config(epochs=1)
    cfg = replace(base, model=replace(base.model, encoder=NAME, encoder_weights=str(weights), reference_layers=(0,)))
    run = tmp_path / "run"
    from anovit.runs.train import train_run

    train_run(cfg, mvtec_root, "weave", run, device="cpu", progress=False)
    weights.unlink()
    save_config(run, replace(load_config(run), train=replace(load_config(run).train, epochs=2)))
    args = ["-q", "train", "--resume", "--out", str(run), "--epochs", "2", "--device", "cpu"]
    assert main([*args, "--data", str(mvtec_root), "--category", "weave", "--model", "anovit"]) == 0
    assert len((run / "log.csv").read_text().splitlines()) - 1 == 2
