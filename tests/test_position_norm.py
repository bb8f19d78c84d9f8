"""The position norm (``ModelConfig.position_norm``): per-pixel statistics of normal score maps, the image score
read from the standardised map, leave-one-out thresholds, and the norm carried into the run and its exports."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from anovit.data import ImageDataset, mvtec_samples
from anovit.evaluation.evaluate import evaluate
from anovit.evaluation.thresholds import load_thresholds
from anovit.image_score import level_statistic
from anovit.models.checkpoint import load_trained_model
from anovit.models.position import PositionNorm
from anovit.one_class_rule import OneClassImages, dataset_options
from anovit.resolve import resolve_config
from anovit.scoring.maps import image_scores
from anovit.scoring.position import fit_position_stats, leave_one_out_maps, position_stats
from tests.conftest import tiny_run_config


def _maps_with_a_busy_corner(n: int, seed: int, defect: bool = False) -> torch.Tensor:
    """(n, 32, 32) maps: low noise, a strong blob in one corner on every image (an outline, a highlight), and with
    ``defect`` a weaker blob in the middle."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    corner = torch.exp(-((yy - 6) ** 2 + (xx - 6) ** 2) / 8)
    middle = torch.exp(-((yy - 16) ** 2 + (xx - 18) ** 2) / 8)
    maps = 0.1 * torch.rand(n, 32, 32, generator=g) + (4 + 0.5 * torch.rand(n, 1, 1, generator=g)) * corner
    return maps + 1.5 * middle if defect else maps


def test_leave_one_out_maps_use_the_statistics_of_the_others() -> None:
    maps = _maps_with_a_busy_corner(6, seed=0) * torch.linspace(0.5, 2, 6).view(6, 1, 1)
    held_out = leave_one_out_maps(maps)
    for i in range(6):
        mean, scale = position_stats(torch.cat([maps[:i], maps[i + 1 :]]))
        torch.testing.assert_close(held_out[i], (maps[i] - mean) / scale, atol=1e-4, rtol=1e-4)


def test_the_norm_lets_a_defect_outscore_what_every_normal_part_has() -> None:
    normal_fit, normal_test = _maps_with_a_busy_corner(20, seed=1), _maps_with_a_busy_corner(10, seed=2)
    defective = _maps_with_a_busy_corner(10, seed=3, defect=True)
    labels = [0] * 10 + [1] * 10
    maps = torch.cat([normal_test, defective])
    raw = roc_auc_score(labels, image_scores(maps, 0.0, "max").numpy())
    norm = PositionNorm(32)
    standardised = norm(maps)
    torch.testing.assert_close(standardised, maps)  # the identity until measured
    fit_position_stats(norm, normal_fit)
    assert norm.scale.min() > 0
    normed = roc_auc_score(labels, image_scores(norm(maps), 0.0, "max").numpy())
    assert raw < 0.8 and normed == 1.0


def test_maps_that_never_vary_do_not_divide_by_zero() -> None:
    mean, scale = position_stats(torch.ones(4, 16, 16))
    assert torch.isfinite(mean).all() and (scale > 0).all()


def test_it_is_an_option_off_by_default() -> None:
    assert not resolve_config("tiny").model.position_norm
    assert not resolve_config("tiny", model="knn").model.position_norm
    assert resolve_config("tiny", position_norm=True).model.position_norm
    assert resolve_config("small", model="cae", position_norm=True).model.position_norm
    semantic = dataset_options("digits", "tiny", "anovit", {"position_norm": True}, OneClassImages(8, 0.5))
    assert resolve_config("tiny", **semantic).model.position_norm  # with the semantic rule's settings


@pytest.fixture(scope="module")
def normed_run(mvtec_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from anovit.runs.train import train_run

    cfg = tiny_run_config()
    cfg = replace(cfg, model=replace(cfg.model, position_norm=True))
    run = tmp_path_factory.mktemp("normed") / "run"
    train_run(cfg, mvtec_root, "weave", run, device="cpu", progress=False)
    return run


def test_a_trained_run_keeps_and_uses_its_norm(normed_run: Path, mvtec_root: Path) -> None:
    cfg, model = load_trained_model(normed_run)
    assert cfg.model.position_norm and model.position.mean.abs().sum() > 0
    test = ImageDataset(mvtec_samples(mvtec_root, "weave", "test"), 32, progress=False)
    result = evaluate(model, test, cfg.score, torch.device("cpu"), keep_maps=range(len(test)), progress=False)
    maps = torch.stack([torch.from_numpy(result.maps[i]) for i in range(len(test))])
    expected = image_scores(model.position(maps), cfg.score.border, cfg.score.image_score).numpy()
    np.testing.assert_allclose(result.image_scores, expected, rtol=1e-5, atol=1e-5)
    level = level_statistic(cfg.score.image_score)
    np.testing.assert_allclose(result.map_peaks, image_scores(maps, cfg.score.border, level))
    assert not np.allclose(result.image_scores, result.map_peaks)


def test_its_thresholds_come_from_leave_one_out_scores(normed_run: Path, mvtec_root: Path) -> None:
    """12 training images leave a hold-out of 2, too few: the norm and the thresholds use all 12, each image scored
    with the statistics of the other 11 (in-sample scores would set the threshold lower)."""
    cfg, model = load_trained_model(normed_run)
    normal = ImageDataset(mvtec_samples(mvtec_root, "weave", "train"), 32, progress=False)
    model.position.reset()
    raw = evaluate(model, normal, cfg.score, torch.device("cpu"), keep_maps=range(len(normal)), progress=False)
    maps = torch.stack([torch.from_numpy(raw.maps[i]) for i in range(len(normal))])
    held_out = image_scores(leave_one_out_maps(maps), cfg.score.border, cfg.score.image_score).numpy()
    thresholds = load_thresholds(normed_run)
    assert thresholds.image_method == "normal-quantile" and thresholds.pixel_method == "image-threshold"
    assert thresholds.image == pytest.approx(float(np.quantile(held_out, thresholds.quantile)), rel=1e-4)
    fit_position_stats(model.position, maps)
    in_sample = image_scores(model.position(maps), cfg.score.border, cfg.score.image_score).numpy()
    assert thresholds.image > float(np.quantile(in_sample, thresholds.quantile))
    # the pixel threshold is on the raw map's scale, where the masks are drawn
    assert thresholds.pixel == pytest.approx(float(np.quantile(raw.image_scores, thresholds.quantile)), rel=1e-4)


def test_the_onnx_export_carries_the_norm(normed_run: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from anovit.deploy.export import export_model

    result = export_model(normed_run, "onnx", False, tmp_path / "model.onnx")
    cfg, model = load_trained_model(normed_run)
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    maps, scores = session.run(["score_map", "image_score"], {"images": images.numpy()})
    expected = image_scores(model.position(torch.from_numpy(maps)), cfg.score.border, cfg.score.image_score).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(scores, maps.reshape(4, -1).max(1), rtol=1e-3)
