from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from anovit.evaluation.metrics import auroc_from_histograms, image_auroc
from anovit.evaluation.streaming import PerDefectMetrics, StreamingAUPRO, StreamingAUROC, StreamingPixelMetrics


@pytest.mark.parametrize("seed", range(5))
def test_image_auroc_matches_sklearn_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(200) < 0.3
    scores = rng.normal(size=200) + labels * rng.uniform(0, 2)
    assert image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize(
    "scores,labels,expected",
    [
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),
        ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),
    ],
)
def test_auroc_hand_made_cases(scores: list[float], labels: list[int], expected: float) -> None:
    assert image_auroc(np.array(scores), np.array(labels)) == pytest.approx(expected)
    stream = StreamingAUROC()
    stream.update(torch.tensor(scores), torch.tensor(labels))
    assert stream.compute() == pytest.approx(expected, abs=1e-6)


def test_single_class_gives_none() -> None:
    assert image_auroc(np.array([0.1, 0.2]), np.array([0, 0])) is None
    stream = StreamingAUROC()
    stream.update(torch.rand(10), torch.ones(10))
    assert stream.compute() is None
    assert StreamingAUROC().compute() is None


@pytest.mark.parametrize("seed", range(3))
def test_streaming_pixel_auroc_matches_exact(seed: int) -> None:
    """Batch-by-batch histograms agree with sklearn on all pixels at once within 1e-3."""
    g = torch.Generator().manual_seed(seed)
    stream = StreamingAUROC()
    all_scores, all_masks = [], []
    for _ in range(6):
        masks = torch.zeros(4, 64, 64, dtype=torch.bool)
        masks[:, 10:30, 20:40] = torch.rand(4, 1, 1, generator=g) < 0.7
        scores = torch.rand(4, 64, 64, generator=g).pow(3) * 0.05 + masks * torch.rand(4, 64, 64, generator=g) * 0.03
        stream.update(scores, masks)
        all_scores.append(scores.flatten())
        all_masks.append(masks.flatten())
    exact = roc_auc_score(torch.cat(all_masks).numpy(), torch.cat(all_scores).numpy())
    assert stream.compute() == pytest.approx(exact, abs=1e-3)


def test_histogram_auroc_counts_ties_as_half() -> None:
    assert auroc_from_histograms([2, 0], [0, 2]) == 1.0
    assert auroc_from_histograms([0, 2], [2, 0]) == 0.0
    assert auroc_from_histograms([3], [5]) == 0.5


# ---------------------------------------------------------------------------------------------
# AUPRO against a straightforward reference
# ---------------------------------------------------------------------------------------------
def aupro_reference(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Every distinct score as a threshold; FPR over normal pixels, mean overlap over 8-connected regions."""
    region_scores = [maps[i][r] for i, m in enumerate(masks) for r in regions_of(m)]
    normal = maps[~masks]
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        fprs.append(float((normal >= t).mean()))
        pros.append(float(np.mean([(s >= t).mean() for s in region_scores])))
    fprs, pros = np.array(fprs), np.array(pros)
    # integrate up to the limit, interpolating the point at the limit
    grid = np.linspace(0, fpr_limit, 20001)
    curve = np.interp(grid, fprs, pros)
    return float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(grid)) / fpr_limit)


def regions_of(mask: np.ndarray) -> list[np.ndarray]:
    from scipy.ndimage import label

    lab, n = label(mask, structure=np.ones((3, 3)))
    return [lab == k for k in range(1, n + 1)]


def _aupro_stream(maps: np.ndarray, masks: np.ndarray, batch: int = 2) -> float:
    stream = StreamingAUPRO()
    for i in range(0, len(maps), batch):
        stream.update(torch.from_numpy(maps[i : i + batch]), torch.from_numpy(masks[i : i + batch]))
    return stream.compute()


@pytest.mark.parametrize("seed", range(3))
def test_aupro_matches_reference_on_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = np.zeros((5, 24, 24), dtype=bool)
    for m in masks[:4]:
        for _ in range(rng.integers(1, 4)):  # a few rectangles per image, some touching
            y, x = rng.integers(0, 18, 2)
            h, w = rng.integers(1, 7, 2)
            m[y : y + h, x : x + w] = True
    maps = rng.random(masks.shape) * 0.05 + masks * rng.random(masks.shape) * 0.04
    maps = np.round(maps, 4) + 1e-3  # a bounded number of distinct thresholds keeps the reference quick
    assert _aupro_stream(maps, masks) == pytest.approx(aupro_reference(maps, masks), abs=1e-3)


def test_aupro_hand_made() -> None:
    masks = np.zeros((2, 10, 10), dtype=bool)
    masks[0, 2:4, 2:4] = True  # a small region
    masks[1, 5:10, 0:10] = True  # a large region: each counts the same
    perfect = masks * 1.0 + 0.01
    assert _aupro_stream(perfect, masks) == pytest.approx(1.0, abs=1e-6)
    # small region found, large one missed: overlap 0.5 at FPR 0, then the last threshold (0.01) takes
    # FPR to 1 and overlap to 1 in one step, so the interpolated curve is 0.5 + 0.5 FPR: mean 0.575 to 0.3.
    half = np.full(masks.shape, 0.01)
    half[0, 2:4, 2:4] = 1.0
    assert _aupro_stream(half, masks) == pytest.approx(aupro_reference(half, masks), abs=1e-3)
    assert _aupro_stream(half, masks) == pytest.approx(0.575, abs=1e-6)
    assert StreamingAUPRO().compute() is None


def test_pixel_metrics_bin_once_and_match_the_separate_accumulators() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 20, 20, generator=g) * 0.1
    masks = torch.zeros(3, 20, 20, dtype=torch.bool)
    masks[0, 3:8, 3:8] = masks[2, 10:15, 2:6] = True
    maps[masks] += 0.03
    both, auroc, aupro = StreamingPixelMetrics(), StreamingAUROC(), StreamingAUPRO()
    both.update(maps, masks)
    auroc.update(maps, masks)
    aupro.update(maps, masks)
    assert both.compute() == (auroc.compute(), aupro.compute())


def test_per_defect_metrics_judge_each_type_against_the_normal_images_only() -> None:
    g = torch.Generator().manual_seed(1)
    kinds = ["good"] * 6 + ["found"] * 4 + ["missed"] * 4
    labels = [0] * 6 + [1] * 8
    maps = torch.rand(14, 16, 16, generator=g)  # (B, H, W)
    masks = torch.zeros(14, 16, 16, dtype=torch.bool)
    masks[6:, 4:10, 4:10] = True
    maps[6:10][masks[6:10]] += 2.0  # "found": its defects score far above everything; "missed": no higher than noise
    scores = maps.flatten(1).amax(1).numpy().astype(np.float64)
    per, pixel = PerDefectMetrics(kinds, labels), StreamingPixelMetrics()
    for rows in (torch.arange(0, 5), torch.arange(5, 14)):  # two batches, in any split
        per.update_binned(pixel.update(maps[rows], masks[rows]), masks[rows], rows)
    out = per.compute(scores)
    assert list(out) == ["found", "missed"] and out["found"]["n_images"] == 4
    assert out["found"]["image_auroc"] == 1.0 and out["found"]["pixel_auroc"] > 0.99
    good, missed = np.arange(6), np.arange(10, 14)
    rows = np.concatenate([good, missed])
    assert out["missed"]["image_auroc"] == pytest.approx(roc_auc_score(rows >= 10, scores[rows]))
    exact = roc_auc_score(
        masks[rows].flatten().numpy(), maps[rows].flatten().numpy()
    )  # normal pixels of good images only
    assert out["missed"]["pixel_auroc"] == pytest.approx(exact, abs=1e-3) and exact < 0.8
    # a one-class set: the normal class has its own name, the other classes are the "defects"
    assert list(
        PerDefectMetrics(["7", "1", "7", "2"], [0, 1, 0, 1]).compute(np.array([0.1, 0.9, 0.2, 0.3]), pixel=False)
    ) == ["1", "2"]
