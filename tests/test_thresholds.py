"""Thresholds: F1-max from histograms and from exact scores, the fallback without anomalies, the run file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from anovit.errors import InputError
from anovit.evaluation.evaluate import Evaluation
from anovit.evaluation.metrics import image_f1_at, image_f1_max
from anovit.evaluation.streaming import StreamingAUROC
from anovit.evaluation.thresholds import (
    THRESHOLDS_FILE,
    Thresholds,
    calibrate,
    decision_metrics,
    load_thresholds,
    save_thresholds,
)


def _brute_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    """F1 of ``scores >= t`` at every distinct score t, the highest."""
    best = 0.0
    for t in np.unique(scores):
        predicted = scores >= t
        tp = np.sum(predicted & (labels == 1))
        best = max(best, 2 * tp / (2 * tp + np.sum(predicted & (labels == 0)) + np.sum(~predicted & (labels == 1))))
    return float(best)


def test_image_f1_max_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.normal(size=200) + labels
    f1, threshold = image_f1_max(scores, labels)
    assert f1 == pytest.approx(_brute_f1_max(scores, labels))
    assert image_f1_at(scores, labels, threshold) == pytest.approx(f1)
    assert f1_score(labels, scores >= threshold) == pytest.approx(f1)
    assert image_f1_max(scores, np.zeros(200)) is None


def test_pixel_f1_from_histograms_matches_exact() -> None:
    rng = np.random.default_rng(1)
    masks = torch.from_numpy(rng.random((4, 32, 32)) < 0.1)
    maps = torch.from_numpy(rng.gamma(2.0, 0.01, (4, 32, 32)) + 0.02 * masks.numpy()).float()
    hist = StreamingAUROC()
    hist.update(maps[:2], masks[:2])
    hist.update(maps[2:], masks[2:])
    scores, labels = maps.numpy().ravel(), masks.numpy().ravel().astype(int)
    f1, threshold = hist.f1_max()
    assert f1 == pytest.approx(_brute_f1_max(scores, labels), abs=2e-3)  # bins are 0.05 % wide
    assert f1_score(labels, scores >= threshold) == pytest.approx(f1, abs=2e-3)
    assert hist.f1_at(threshold) == pytest.approx(f1, abs=1e-9)
    fpr, tpr = hist.roc_curve()
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == pytest.approx(1) and tpr[-1] == pytest.approx(1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and len(fpr) <= 520


def _evaluation(scores: list[float], labels: list[int], hist: StreamingAUROC | None = None) -> Evaluation:
    return Evaluation(None, None, len(scores), np.array(scores), np.array(labels), pixel_hist=hist)


def test_calibrate_with_anomalies_maximises_f1() -> None:
    t = calibrate(_evaluation([0.1, 0.2, 0.3, 0.5, 0.25, 0.6], [0, 0, 0, 1, 1, 1]), "val")
    assert t.image_method == "f1-max" and t.image == pytest.approx(0.25) and t.image_f1 == pytest.approx(6 / 7)
    assert t.pixel_method == "image-threshold" and t.pixel == t.image  # no masks
    assert (t.n_normal, t.n_anomalous) == (3, 3)


def test_calibrate_normal_only_falls_back_to_a_quantile_and_says_so() -> None:
    scores = list(np.linspace(0, 1, 101))
    t = calibrate(_evaluation(scores, [0] * 101), "hold-out", quantile=0.95)
    assert t.image_method == "normal-quantile" and t.image == pytest.approx(0.95) and t.quantile == 0.95
    assert t.image_f1 is None and any("no anomalous images" in n for n in t.notes)
    with pytest.raises(InputError, match="no validation images"):
        calibrate(_evaluation([], []), "empty")


def test_calibrate_uses_pixel_f1_when_masks_exist() -> None:
    hist = StreamingAUROC()
    maps = torch.tensor([[[0.01, 0.02], [0.5, 0.6]]])
    hist.update(maps, maps > 0.1)
    t = calibrate(_evaluation([0.02, 0.6], [0, 1], hist), "val")
    assert t.pixel_method == "f1-max" and t.pixel_f1 == pytest.approx(1.0) and 0.02 < t.pixel <= 0.5
    metrics = decision_metrics(_evaluation([0.02, 0.6], [0, 1], hist), t)
    assert metrics["image_f1"] == pytest.approx(1.0) and metrics["pixel_f1"] == pytest.approx(1.0)


def test_thresholds_file_round_trip_and_errors(tmp_path: Path) -> None:
    t = Thresholds(0.3, 0.2, "f1-max", "f1-max", "val", 3, 2, 0.9, 0.5, None, ["a note"])
    save_thresholds(tmp_path, t)
    assert load_thresholds(tmp_path) == t
    with pytest.raises(InputError, match="anovit calibrate"):
        load_thresholds(tmp_path / "elsewhere")
    (tmp_path / THRESHOLDS_FILE).write_text(json.dumps({"image": 1}))
    with pytest.raises(InputError, match="not a thresholds file"):
        load_thresholds(tmp_path)


class _MapScorer:
    """A scorer whose maps are given: rough random maps, image scores by the default preset's rule (top 1 % of
    the interior, 5 % border) as :func:`anovit.scoring.maps.image_scores` computes them."""

    image_size = 32
    description = "fixed maps"

    def __init__(self, maps: np.ndarray) -> None:
        self.maps = maps.astype(np.float32)  # (B, S, S)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from anovit.presets import PRESETS
        from anovit.scoring.maps import image_scores

        cfg = PRESETS["tiny"].score
        scores = image_scores(torch.from_numpy(self.maps), cfg.border, cfg.image_score).numpy()
        return self.maps[: len(images)], scores[: len(images)]


@pytest.mark.parametrize("pixel_above_image", [False, True])
def test_verdict_and_mask_follow_one_rule(pixel_above_image: bool, tmp_path: Path) -> None:
    """An image called normal has an empty mask and an anomalous one a non-empty mask, whatever the image score:
    here the default's top-1 % score over the interior, so a hot pixel in the border band or a lone peak leaves
    the verdict normal while single pixels pass the threshold."""
    from anovit.deploy.api import Run
    from anovit.presets import PRESETS

    rng = np.random.default_rng(0)
    maps = rng.gamma(2.0, 1.0, size=(24, 32, 32))
    maps[::3, 0, 0] = 30.0  # hot corners, inside the ignored border
    maps[1::3, 16, 16] = 12.0  # a lone interior peak, most of the top 1 % still low
    scorer = _MapScorer(maps)
    _, scores = scorer(np.zeros((24, 3, 32, 32), np.uint8))
    image_threshold = float(np.median(scores))
    pixel = image_threshold * (3.0 if pixel_above_image else 1.0)
    thresholds = Thresholds(image_threshold, pixel, "normal-quantile", "image-threshold", "test", 24, 0)
    run = Run(tmp_path, scorer, thresholds, PRESETS["tiny"])
    results = run.score_rgb([np.zeros((32, 32, 3), np.uint8)] * 24)
    verdicts = [r.anomalous for r in results]
    assert 0 < sum(verdicts) < 24
    assert any(not r.anomalous and (r.anomaly_map >= pixel).any() for r in results)  # the case the rule is for
    for r in results:
        assert r.mask.any() == r.anomalous
        if r.anomalous:
            assert r.mask[r.anomaly_map >= pixel].all()
