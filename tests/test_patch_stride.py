"""``--patch-stride S``: the frozen encoder of the tokens objective and of knn reads its patches every S px, so that
they overlap and the grid is finer, each patch still the size the ViT was pretrained on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from anovit.cli.args import build_parser
from anovit.cli.options import method_options
from anovit.deploy.export import export_model
from anovit.errors import InputError
from anovit.models import PatchKNN, TokenAnoViT
from anovit.models.checkpoint import load_trained_model
from anovit.models.encoder import FeatureReference, ViTEncoder
from anovit.resolve import resolve_config
from anovit.runs.train import train_run

from .conftest import onnx_against_torch, planted_square_scores
from .test_knn import SHARED_WEIGHTS
from .test_tokens import TINY, tokens_config


def test_half_the_patch_gives_a_grid_twice_as_fine() -> None:
    torch.manual_seed(0)
    vit = ViTEncoder("vit_tiny_patch16_224", 32, 8, TINY)  # 8-px patches: a 4 x 4 grid
    plain, same, half = (FeatureReference(vit, (1, 3), stride=s) for s in (0, 8, 4))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert plain.grid == same.grid == (4, 4) and half.grid == (8, 8)
    for a, b in zip(plain(images), same(images)):  # a stride of the patch size is the plain encoder, bit for bit
        assert torch.equal(a, b)
    assert [tuple(g.shape) for g in half(images)] == [(2, 32, 8, 8)] * 2
    assert half.vit.pos_embed.shape == (1, 1 + 64, 32)  # resampled to the 8 x 8 grid, after the class token's
    assert torch.equal(half.vit.pos_embed[:, :1], vit.vit.pos_embed[:, :1])
    tiled = FeatureReference(ViTEncoder("vit_tiny_patch16_224", 16, 8, TINY), (1,), tiles=2, stride=4)
    assert tiled.grid == (8, 8) and tuple(tiled(images)[0].shape) == (2, 32, 8, 8)  # with tiles: 2 x 2 tiles of 4 x 4


def test_the_models_take_the_finer_grid() -> None:
    tokens = TokenAnoViT(32, "vit_tiny_patch16_224", 8, (0, 1, 2, 3), 2, 0.0, TINY, patch_stride=4)
    knn = PatchKNN(32, "vit_tiny_patch16_224", 8, (1, 3), encoder_overrides=TINY, patch_stride=4)
    assert tokens.grid == knn.grid == (8, 8) and tokens.target_shape == (2, 64, 32)
    images = torch.rand(1, 3, 32, 32)
    assert tuple(tokens(images).shape) == (1, 32, 32) and tuple(knn.embed(images).shape) == (1, 64, 8, 8)
    for stride in (3, 5, 16, -2):  # not a divisor of the 8-px patch with an even overlap
        with pytest.raises(InputError, match=f"--patch-stride {stride}: expected the patch size 8 or a divisor"):
            PatchKNN(32, "vit_tiny_patch16_224", 8, (1,), encoder_overrides=TINY, patch_stride=stride)


def test_the_patch_stride_option() -> None:
    w = str(SHARED_WEIGHTS)  # the tokens objective asks for pretrained weights; none are read here
    assert resolve_config("tokens").model.patch_stride == 0
    assert resolve_config("tokens", patch_stride=8, encoder_weights=w).model.patch_stride == 8
    assert resolve_config("tokens", model="knn", patch_stride=8).model.patch_stride == 8
    assert resolve_config("tokens", model="cae", patch_stride=8).model.patch_stride == 0  # beside them, ignores it
    with pytest.raises(InputError, match="--patch-stride 8: a step in pixels >= 1, for knn or AnoViT --objective"):
        resolve_config("tokens", objective="restore", patch_stride=8, encoder_weights=w)
    with pytest.raises(InputError, match="--patch-stride 0: a step in pixels >= 1"):
        resolve_config("tokens", model="knn", patch_stride=0)
    with pytest.raises(InputError, match="--patch-stride 6: expected the patch size 16 or a divisor"):
        resolve_config("tokens", model="knn", patch_stride=6)
    args = build_parser().parse_args(
        ["train", "--data", "d", "--category", "c", "--model", "knn", "--out", "o", "--patch-stride", "4"]
    )
    assert resolve_config("tokens", model="knn", **method_options(args)).model.patch_stride == 4


def test_a_planted_defect_is_found_on_the_finer_grid(tmp_path: Path) -> None:
    """The real pretrained ViT-Ti at 112 px read every 8 px (a 14 x 14 grid of overlapping 16-px patches): the map
    peaks on a 16-px square, within half a patch of it (the plain 7 x 7 grid's test allows a whole patch)."""
    cfg = resolve_config(
        "tiny", model="knn", image_size=112, encoder_weights=str(SHARED_WEIGHTS), precision="fp32", patch_stride=8
    )
    cfg = replace(cfg, model=replace(cfg.model, knn_coreset=1.0))  # 16 training images: every patch in the bank
    clean, defect = planted_square_scores(cfg, tmp_path)
    assert float(defect.image) > float(clean.image)
    row, col = divmod(int(defect.maps[0].argmax()), 112)
    assert 24 <= row < 56 and 56 <= col < 88  # the square is rows 32-47, columns 64-79
    rise = (defect.maps - clean.maps)[0]  # (112, 112)
    assert float(rise[80:, :32].mean()) < 0.5 * float(rise[32:48, 64:80].mean())


def test_a_strided_tokens_run_reloads_and_exports(mvtec_root: Path, tmp_path: Path) -> None:
    cfg = tokens_config()  # 32 px, 8-px patches
    cfg = replace(cfg, model=replace(cfg.model, patch_stride=4), train=replace(cfg.train, epochs=1))
    run = tmp_path / "run"
    train_run(cfg, mvtec_root, "weave", run, device="cpu", progress=False)
    loaded_cfg, model = load_trained_model(run)
    assert loaded_cfg.model.patch_stride == 4 and model.grid == (8, 8)
    result = export_model(run, "onnx", False, tmp_path / "model.onnx")
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    maps, scores, expected = onnx_against_torch(run, result.path, images)
    np.testing.assert_allclose(maps, expected.maps.numpy(), atol=1e-4)
    np.testing.assert_allclose(scores, expected.image.numpy(), atol=1e-4)
