"""``--tiles K``: the frozen encoder of the tokens objective and of knn sees the image as K x K tiles at the size it
was built for, their token grids side by side (more patches per image without resampling the position embedding)."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from anovit.cli import main
from anovit.cli.args import build_parser
from anovit.cli.options import method_options
from anovit.deploy.export import export_model
from anovit.errors import InputError
from anovit.models import PatchKNN, TokenAnoViT, build_model
from anovit.models.encoder import FeatureReference, ViTEncoder
from anovit.resolve import resolve_config
from anovit.runs.train import train_run

from .conftest import onnx_against_torch
from .test_tokens import TINY, tokens_config


def test_each_tiles_tokens_land_in_its_place_on_the_grid() -> None:
    torch.manual_seed(0)
    vit = ViTEncoder("vit_tiny_patch16_224", 32, 8, TINY)  # a 4 x 4 grid per 32-px tile
    whole, tiled = FeatureReference(vit, (1, 3)), FeatureReference(vit, (1, 3), tiles=2)
    assert tiled.grid == (8, 8) and whole.grid == (4, 4)
    images = torch.rand(3, 3, 64, 64)
    out = tiled(images)
    assert [g.shape for g in out] == [(3, 32, 8, 8)] * 2
    for row in range(2):
        for col in range(2):
            tile = images[:, :, 32 * row : 32 * row + 32, 32 * col : 32 * col + 32]
            for got, expected in zip(out, whole(tile)):  # each tile's tokens are the ViT's on that tile alone
                torch.testing.assert_close(got[:, :, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4], expected)


def test_the_models_read_a_tiled_grid_at_the_whole_images_size() -> None:
    torch.manual_seed(0)
    tokens = TokenAnoViT(
        64, "vit_tiny_patch16_224", 8, (0, 1, 2, 3), depth=2, dropout=0.0, encoder_overrides=TINY, tiles=2
    )
    images = torch.rand(2, 3, 64, 64)
    assert tokens.grid == (8, 8) and tokens.target_shape == (2, 64, 32)
    assert tokens(images).shape == (2, 64, 64)
    knn = PatchKNN(64, "vit_tiny_patch16_224", 8, (1, 3), encoder_overrides=TINY, tiles=2)
    assert knn.embed(images).shape == (2, 64, 8, 8)
    with pytest.raises(InputError, match="3 x 3 equal tiles"):
        PatchKNN(64, "vit_tiny_patch16_224", 8, (1, 3), encoder_overrides=TINY, tiles=3)


def test_the_tiles_option() -> None:
    w = "w.safetensors"
    assert resolve_config("tokens").model.tiles == 1
    cfg = resolve_config("tokens", image_size=448, tiles=2, encoder_weights=w)
    assert cfg.model.tiles == 2 and cfg.model.image_size == cfg.data.image_size == 448
    assert build_model(replace(cfg.model, encoder_overrides=TINY, reference_layers=(1, 3)), False).grid == (28, 28)
    assert resolve_config("tokens", model="knn", image_size=448, tiles=2).model.tiles == 2
    assert resolve_config("tokens", model="cae", image_size=448, tiles=2).model.tiles == 1  # beside it, ignores it
    with pytest.raises(InputError, match="--tiles 3: the 224-px image must split"):
        resolve_config("tokens", tiles=3, encoder_weights=w)
    with pytest.raises(InputError, match="--objective tokens"):
        resolve_config("tokens", objective="restore", image_size=448, tiles=2, encoder_weights=w)
    with pytest.raises(InputError, match="--tiles 0"):
        resolve_config("tokens", tiles=0, encoder_weights=w)
    args = build_parser().parse_args(
        ["train", "--data", "d", "--category", "c", "--model", "knn", "--out", "o", "--tiles", "2"]
    )
    assert resolve_config("tokens", image_size=448, **method_options(args)).model.tiles == 2


def test_a_tiled_tokens_run_trains_predicts_and_exports(mvtec_root: Path, tmp_path: Path) -> None:
    cfg = tokens_config()  # 32 px, 8-px patches
    cfg = replace(
        cfg,
        model=replace(cfg.model, image_size=64, tiles=2),
        data=replace(cfg.data, image_size=64),
        train=replace(cfg.train, epochs=1),
    )
    run = tmp_path / "run"
    train_run(cfg, mvtec_root, "weave", run, device="cpu", progress=False)
    good = mvtec_root / "weave" / "test" / "good"
    assert main(["-q", "predict", "--run", str(run), str(good), "--out", str(tmp_path / "predicted")]) == 0
    rows = list(csv.DictReader((tmp_path / "predicted" / "predictions.csv").open()))
    assert len(rows) == len(list(good.iterdir())) and all(r["verdict"] in ("normal", "anomalous") for r in rows)
    result = export_model(run, "onnx", False, tmp_path / "model.onnx")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    maps, scores, expected = onnx_against_torch(run, result.path, images)
    np.testing.assert_allclose(maps, expected.maps.numpy(), atol=1e-4)
    np.testing.assert_allclose(scores, expected.image.numpy(), atol=1e-4)
