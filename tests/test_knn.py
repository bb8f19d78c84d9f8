"""The nearest-neighbour baseline (``--model knn``, PatchCore): its memory bank, its coreset, a planted defect,
the export, and its place in the config and the benchmark tables."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from anovit.cli import main
from anovit.config import RunConfig
from anovit.deploy.export import export_model
from anovit.errors import InputError
from anovit.experiments.tables import build_results, results_markdown
from anovit.files import load_config
from anovit.models.checkpoint import load_trained_model
from anovit.models.knn import nearest_distance
from anovit.resolve import resolve_config
from anovit.runs.train import train_run
from anovit.training.memory_bank import greedy_coreset

from .conftest import onnx_against_torch, planted_square_scores, tiny_run_config

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared/weights/vit_tiny_patch16_224.safetensors"


def knn_config(coreset: float = 0.25) -> RunConfig:
    """The knn model on conftest's tiny random ViT (3 blocks of 32-d tokens at 32 px: a 4 x 4 patch grid)."""
    cfg = tiny_run_config("knn")
    model = replace(
        cfg.model,
        encoder_overrides={"embed_dim": 32, "depth": 3, "num_heads": 2},
        reference_layers=(0, 1, 2),
        knn_coreset=coreset,
    )
    return replace(
        cfg,
        model=model,
        train=replace(cfg.train, objective="reconstruct", feature_loss=0.0),
        score=replace(cfg.score, kinds=("knn",), sigma=1.0, border=0.0, image_score="max", test_flips="none"),
    )


@pytest.fixture(scope="module")
def knn_run(mvtec_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("knn") / "run"
    train_run(knn_config(), mvtec_root, "weave", run, device="cpu", progress=False)
    return run


def test_the_bank_is_the_coreset_share_of_the_training_patches(knn_run: Path) -> None:
    cfg, model = load_trained_model(knn_run)
    data = json.loads((knn_run / "data.json").read_text())
    patches = data["n_train"] * 4 * 4  # 4 x 4 patches per 32-px image
    assert cfg.model.knn_bank == round(0.25 * patches) == model.bank.shape[0] == data["memory_bank"]["patches"]
    assert model.bank.shape[1] == 3 * 32 and torch.isfinite(model.bank).all()
    assert len(torch.unique(model.bank, dim=0)) == model.bank.shape[0]  # no patch kept twice
    assert (knn_run / "thresholds.json").is_file() and not (knn_run / "checkpoint.pt").exists()


def test_greedy_coreset_covers_better_than_a_random_subset() -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.cat([torch.randn(900, 16, generator=g), 8 + torch.randn(100, 16, generator=g)])  # a far cluster
    chosen = greedy_coreset(features, 50)
    assert len(set(chosen.tolist())) == 50
    radius = nearest_distance(features, features[chosen]).max()
    random = nearest_distance(features, features[torch.randperm(1000, generator=g)[:50]]).max()
    assert radius < random
    assert (chosen >= 900).any()  # the small far cluster is covered


def test_nearest_distance_matches_cdist_across_chunks() -> None:
    g = torch.Generator().manual_seed(1)
    query, bank = torch.randn(37, 8, generator=g), torch.randn(100, 8, generator=g)
    expected = torch.cdist(query, bank).amin(dim=1)
    torch.testing.assert_close(nearest_distance(query, bank, chunk=16), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(
    not SHARED_WEIGHTS.is_file(), reason=f"{SHARED_WEIGHTS} is absent (only the project's machines have it)"
)
def test_a_planted_defect_is_found(tmp_path: Path) -> None:
    """The real pretrained ViT-Ti at 112 px (a 7 x 7 patch grid): a square over one patch is where the map peaks."""
    cfg = resolve_config("tiny", model="knn", image_size=112, encoder_weights=str(SHARED_WEIGHTS), precision="fp32")
    cfg = replace(cfg, model=replace(cfg.model, knn_coreset=1.0))  # 16 training images: every patch in the bank
    clean, defect = planted_square_scores(cfg, tmp_path)
    assert float(defect.image) > float(clean.image)
    row, col = divmod(int(defect.maps[0].argmax()), 112)
    assert 16 <= row < 64 and 48 <= col < 96  # on the square, give or take the 3 x 3 aggregation's one patch
    rise = (defect.maps - clean.maps)[0]  # (112, 112)
    assert float(rise[32:48, 64:80].mean()) > 0.5 and float(rise[80:, :32].mean()) < 0.5 * float(
        rise[32:48, 64:80].mean()
    )


def test_onnx_export_matches_pytorch(knn_run: Path, tmp_path: Path) -> None:
    result = export_model(knn_run, "onnx", False, tmp_path / "model.onnx")
    # export checks on the run's own training images, whose patches are in the bank: distances near 0, where the
    # square root of |q|^2 + |b|^2 - 2 q.b turns float rounding into ~1e-4..1e-3; noise below is held to 1e-4
    assert result.map_error is not None and result.map_error < 2e-3 and result.score_error < 1e-4
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    maps, scores, expected = onnx_against_torch(knn_run, result.path, images)
    np.testing.assert_allclose(maps, expected.maps.numpy(), atol=1e-4)
    np.testing.assert_allclose(scores, expected.image.numpy(), atol=1e-4)


def test_the_cli_tests_a_knn_run(knn_run: Path, mvtec_root: Path, tmp_path: Path) -> None:
    args = ["--run", str(knn_run), "--data", str(mvtec_root), "--category", "weave", "--out", str(tmp_path)]
    assert main(["-q", "test", *args]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"] == "knn" and metrics["n_images"] == 12 and metrics["pixel_auroc"] is not None
    assert load_config(knn_run).model.knn_bank > 0


def test_the_config_of_knn() -> None:
    cfg = resolve_config("tiny", model="knn")
    assert cfg.score.kinds == ("knn",) and cfg.score.sigma == 4.0 and cfg.score.image_score == "max"
    assert cfg.score.test_flips == "none" and cfg.model.reference_layers == (2, 5, 8)
    assert not cfg.model.segment_head and not cfg.model.mask_token and cfg.train.feature_loss == 0.0
    assert cfg.train.precision == "fp32" and cfg.model.knn_coreset == 0.1  # PatchCore's and anomalib's
    assert resolve_config("tiny", model="knn", precision="bf16").train.precision == "bf16"
    assert resolve_config("tiny", model="knn", sigma=2.0).score.sigma == 2.0
    with pytest.raises(InputError, match="--model knn"):
        resolve_config("tiny", model="knn", score=("l2",))
    with pytest.raises(InputError, match="--model knn"):
        resolve_config("tiny", score=("knn",))
    assert resolve_config("tiny", model="knn", coreset=0.5).model.knn_coreset == 0.5
    for bad in (0.0, 1.5):
        with pytest.raises(InputError, match="--coreset"):
            resolve_config("tiny", model="knn", coreset=bad)
    with pytest.raises(InputError, match="--coreset"):
        resolve_config("tiny", coreset=0.5)


def test_the_tables_put_knn_third_without_a_paper_column() -> None:
    rows = [
        {
            "category": "bottle",
            "cae": {"image_auroc": 0.5, "pixel_auroc": 0.8},
            "anovit": {"image_auroc": 0.75, "pixel_auroc": 0.88},
            "knn": {"image_auroc": 1.0, "pixel_auroc": 0.98},
        }
    ]
    md = results_markdown(build_results("mvtec", ["knn", "anovit", "cae"], rows))
    assert (
        "| Type | Category | l2-CAE | AnoViT | kNN (PatchCore) | Relative Improvement | paper l2-CAE | paper AnoViT |"
        in md
    )
    assert "| Object | bottle | 0.500 | 0.750 | 1.000 | +50.00% | 0.770 | 0.830 |" in md
