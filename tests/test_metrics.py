from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from anovit.metrics import StreamingAUROC, auroc_from_histograms, image_auroc


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
