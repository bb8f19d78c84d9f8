"""Detection and localisation metrics on numpy arrays: image AUROC (exact, scikit-learn), AUROC, F1 and
the PRO curve's area from histograms, the best image F1. The streaming pixel metrics that fill those
histograms from batches of score maps are in :mod:`anovit.evaluation.streaming`.

Torch-free: thresholds are set and checked with these on the deployment path too.
"""

from __future__ import annotations

import numpy as np


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """AUROC of image scores (anomalous = 1); ``None`` when only one class is present."""
    labels = np.asarray(labels).astype(int)
    if labels.min() == labels.max():
        return None
    from sklearn.metrics import roc_auc_score  # here: scoring new images (predict, serve) needs no scikit-learn

    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def auroc_from_histograms(neg: np.ndarray, pos: np.ndarray) -> float | None:
    """AUROC from per-bin counts of negatives and positives (bins in increasing score order).

    Pairs in the same bin count as ties (1/2), as roc_auc_score counts equal scores.
    """
    neg = np.asarray(neg, dtype=np.float64)
    pos = np.asarray(pos, dtype=np.float64)
    n_neg, n_pos = neg.sum(), pos.sum()
    if n_neg == 0 or n_pos == 0:
        return None
    neg_below = np.cumsum(neg) - neg  # negatives in strictly lower bins
    wins = (pos * neg_below).sum() + 0.5 * (pos * neg).sum()
    return float(wins / (n_neg * n_pos))


def f1_curve_from_histograms(neg: np.ndarray, pos: np.ndarray) -> np.ndarray | None:
    """F1 of the rule "anomalous when in bin k or above", for every bin k; ``None`` without positives."""
    n_pos = float(np.sum(pos))
    if n_pos == 0:
        return None
    tp = np.cumsum(pos[::-1])[::-1]  # positives in bin k or above
    fp = np.cumsum(neg[::-1])[::-1]
    return 2 * tp / (2 * tp + fp + (n_pos - tp))


def image_f1_max(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float] | None:
    """(best F1, its threshold) of the rule score >= threshold; ``None`` without anomalous images."""
    from sklearn.metrics import precision_recall_curve

    labels = np.asarray(labels).astype(int)
    if labels.max(initial=0) == 0:
        return None
    precision, recall, thresholds = precision_recall_curve(labels, np.asarray(scores, dtype=np.float64))
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-300)
    k = int(np.argmax(f1))
    return float(f1[k]), float(thresholds[k])


def image_f1_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float | None:
    """F1 of the rule score >= ``threshold``; ``None`` without anomalous images."""
    labels = np.asarray(labels).astype(int)
    if labels.max(initial=0) == 0:
        return None
    predicted = np.asarray(scores) >= threshold
    tp = float(np.sum(predicted & (labels == 1)))
    return 2 * tp / (2 * tp + float(np.sum(predicted & (labels == 0))) + float(np.sum(~predicted & (labels == 1))))


def region_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-pixel weight 1 / |region| inside each 8-connected ground-truth region, 0 outside.

    masks: (B, H, W) bool. Returns (weights (B, H, W) float64, number of regions).
    """
    from scipy.ndimage import label

    weights = np.zeros(masks.shape, dtype=np.float64)
    n_regions = 0
    for b in range(masks.shape[0]):
        labels, n = label(masks[b], structure=np.ones((3, 3), dtype=int))
        if n:
            sizes = np.bincount(labels.ravel())
            w = np.where(labels > 0, 1.0 / np.maximum(sizes[labels], 1), 0.0)
            weights[b] = w
            n_regions += n
    return weights, n_regions


def pro_curve_area(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Area under (fpr, pro) from 0 to ``fpr_limit`` (linear interpolation at the limit), / fpr_limit."""
    fpr = np.concatenate([[0.0], fpr])
    pro = np.concatenate([[0.0], pro])
    keep = fpr <= fpr_limit
    x, y = fpr[keep], pro[keep]
    if x[-1] < fpr_limit and keep.sum() < len(fpr):
        j = int(np.argmax(~keep))  # first point past the limit
        t = (fpr_limit - fpr[j - 1]) / (fpr[j] - fpr[j - 1])
        x = np.append(x, fpr_limit)
        y = np.append(y, pro[j - 1] + t * (pro[j] - pro[j - 1]))
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))  # trapezoids
    return area / fpr_limit
