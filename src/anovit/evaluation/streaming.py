"""Streaming pixel metrics: pixel AUROC, AUPRO and per-defect-type AUROCs over batches of score maps.

Each batch of score maps is added to fine log-spaced histograms of pixel scores, so memory stays
constant however many pixels are seen; with 2^16 bins the results agree with the exact values to
~1e-4. Histograms are summed over processes under torch.distributed.

AUPRO (Bergmann et al., MVTec AD) is the area under the per-region-overlap curve up to a
false-positive rate of 0.3, divided by 0.3. The mean overlap over the R ground-truth regions at a
threshold t is sum over anomalous pixels of [score >= t] / (R * |region of the pixel|), so one
histogram weighted by 1 / |region| carries it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from anovit.evaluation.metrics import (
    auroc_from_histograms,
    f1_curve_from_histograms,
    image_auroc,
    pro_curve_area,
    region_weights,
)


def _bin_index(scores: torch.Tensor, n_bins: int, log_lo: float, log_hi: float) -> torch.Tensor:
    """Log-spaced bin of each score: 0 below lo, 1..n_bins inside, n_bins + 1 above hi. (N,) int64."""
    pos = torch.log(scores.detach().float().flatten().clamp_min(1e-30))
    idx = ((pos - log_lo) * (n_bins / (log_hi - log_lo))).floor_()
    return idx.clamp_(-1, n_bins).long() + 1


class StreamingAUROC:
    """AUROC over a stream of (score, label) batches with constant memory.

    Scores are binned on a log scale between ``lo`` and ``hi`` (plus one bin below and one above);
    squared reconstruction errors of [0, 1] images live well inside the default range.
    """

    def __init__(self, n_bins: int = 1 << 16, lo: float = 1e-10, hi: float = 1e3) -> None:
        self.n_bins = n_bins
        self.log_lo, self.log_hi = math.log(lo), math.log(hi)
        self.counts: torch.Tensor | None = None  # (2, n_bins + 2) int64, on the scores' device

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """scores: any shape, float; labels: same shape, bool or {0, 1}."""
        self.update_binned(_bin_index(scores, self.n_bins, self.log_lo, self.log_hi), labels)

    def update_binned(self, idx: torch.Tensor, labels: torch.Tensor) -> None:
        """Like :meth:`update`, for scores already binned by ``_bin_index`` with this object's bins."""
        y = labels.detach().flatten().to(device=idx.device, dtype=torch.long)
        flat = torch.bincount(idx + y * (self.n_bins + 2), minlength=2 * (self.n_bins + 2))
        flat = flat.view(2, self.n_bins + 2)
        self.counts = flat if self.counts is None else self.counts + flat

    def all_reduce(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum the histograms over processes with ``reduce_sum`` (e.g. a torch.distributed all-reduce)."""
        if self.counts is None:
            self.counts = torch.zeros(2, self.n_bins + 2, dtype=torch.long)
        self.counts = reduce_sum(self.counts)

    def compute(self) -> float | None:
        if self.counts is None or int(self.counts.sum()) == 0:
            return None
        c = self.counts.cpu().numpy()
        return auroc_from_histograms(c[0], c[1])

    def edges(self) -> np.ndarray:
        """Lower score edge of each bin (n_bins + 2,): 0 for the bin below ``lo``, then lo .. hi."""
        step = (self.log_hi - self.log_lo) / self.n_bins
        return np.concatenate([[0.0], np.exp(self.log_lo + step * np.arange(self.n_bins + 1))])

    def _counts(self) -> tuple[np.ndarray, np.ndarray]:
        if self.counts is None:
            return np.zeros(self.n_bins + 2), np.zeros(self.n_bins + 2)
        c = self.counts.cpu().numpy().astype(np.float64)
        return c[0], c[1]

    def f1_max(self) -> tuple[float, float] | None:
        """(best F1, its threshold) over the bin edges, a pixel counting as anomalous when score >= threshold.

        ``None`` when there are no anomalous pixels.
        """
        neg, pos = self._counts()
        curve = f1_curve_from_histograms(neg, pos)
        if curve is None:
            return None
        k = len(curve) - 1 - int(np.argmax(curve[::-1]))  # the highest of tied thresholds, as for image scores
        return float(curve[k]), float(self.edges()[k])

    def f1_at(self, threshold: float) -> float | None:
        """F1 of the rule score >= ``threshold`` (to the bin width); ``None`` when there are no anomalous pixels."""
        neg, pos = self._counts()
        if pos.sum() == 0:
            return None
        k = max(int(np.searchsorted(self.edges(), threshold, side="right")) - 1, 0)  # the bin holding it
        tp, fp = pos[k:].sum(), neg[k:].sum()
        return float(2 * tp / (2 * tp + fp + (pos.sum() - tp)))

    def roc_curve(self, max_points: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """(false-positive rate, true-positive rate) at the bin edges from the top down, thinned to ``max_points``."""
        neg, pos = self._counts()
        fpr = np.concatenate([[0.0], neg[::-1].cumsum() / max(neg.sum(), 1)])
        tpr = np.concatenate([[0.0], pos[::-1].cumsum() / max(pos.sum(), 1)])
        along = fpr + tpr  # grows from 0 to 2 along the curve: thin evenly along it
        keep = np.unique(np.concatenate([[0, len(fpr) - 1], np.searchsorted(along, np.linspace(0, 2, max_points))]))
        keep = keep[keep < len(fpr)]
        return fpr[keep], tpr[keep]


class StreamingAUPRO:
    """AUPRO over a stream of (score maps, masks) batches with constant memory."""

    def __init__(self, fpr_limit: float = 0.3, n_bins: int = 1 << 16, lo: float = 1e-10, hi: float = 1e3) -> None:
        self.fpr_limit = fpr_limit
        self.n_bins = n_bins
        self.log_lo, self.log_hi = math.log(lo), math.log(hi)
        self.normal = torch.zeros(n_bins + 2, dtype=torch.float64)  # normal pixels per bin
        self.overlap = torch.zeros(n_bins + 2, dtype=torch.float64)  # sum of 1 / |region| per bin
        self.n_regions = torch.zeros((), dtype=torch.float64)

    def update(self, maps: torch.Tensor, masks: torch.Tensor) -> None:
        """maps: (B, H, W) float; masks: (B, H, W) bool."""
        self.update_binned(_bin_index(maps, self.n_bins, self.log_lo, self.log_hi), masks)

    def update_binned(self, idx: torch.Tensor, masks: torch.Tensor) -> None:
        """Like :meth:`update`, for maps already binned (flattened) by ``_bin_index`` with this object's bins."""
        weights, n = region_weights(masks.detach().cpu().numpy().astype(bool))
        idx = idx.cpu()
        w = torch.from_numpy(weights.ravel())
        normal = ~masks.detach().cpu().flatten().bool()
        self.normal += torch.bincount(idx[normal], minlength=self.n_bins + 2).double()
        self.overlap += torch.bincount(idx, weights=w, minlength=self.n_bins + 2)
        self.n_regions += n

    def all_reduce(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum the histograms over processes with ``reduce_sum``."""
        packed = reduce_sum(torch.cat([self.normal, self.overlap, self.n_regions.view(1)]))
        m = self.n_bins + 2
        self.normal, self.overlap, self.n_regions = packed[:m].cpu(), packed[m : 2 * m].cpu(), packed[-1].cpu()

    def compute(self) -> float | None:
        n_normal, n_regions = float(self.normal.sum()), float(self.n_regions)
        if n_normal == 0 or n_regions == 0:
            return None
        # Thresholds at bin edges from the top down: the fraction of each class at or above them.
        fpr = self.normal.flip(0).cumsum(0).numpy() / n_normal
        pro = self.overlap.flip(0).cumsum(0).numpy() / n_regions
        return pro_curve_area(fpr, pro, self.fpr_limit)


class StreamingPixelMetrics:
    """Pixel AUROC and AUPRO of one stream of score maps, binning each pixel once for both."""

    def __init__(self) -> None:
        self.auroc, self.aupro = StreamingAUROC(), StreamingAUPRO()
        assert (self.auroc.n_bins, self.auroc.log_lo, self.auroc.log_hi) == (
            self.aupro.n_bins,
            self.aupro.log_lo,
            self.aupro.log_hi,
        )

    def update(self, maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """maps: (B, H, W) float; masks: (B, H, W) bool. Returns the pixels' bins (B * H * W,), for
        :class:`PerDefectMetrics`."""
        idx = _bin_index(maps, self.auroc.n_bins, self.auroc.log_lo, self.auroc.log_hi)  # (B * H * W,)
        self.auroc.update_binned(idx, masks)
        self.aupro.update_binned(idx, masks)
        return idx

    def all_reduce(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.auroc.all_reduce(reduce_sum)
        self.aupro.all_reduce(reduce_sum)

    def compute(self) -> tuple[float | None, float | None]:
        """(pixel AUROC, AUPRO)."""
        return self.auroc.compute(), self.aupro.compute()


class PerDefectMetrics:
    """Image and pixel AUROC of each defect type against the normal images (MVTec's ``test/<defect>``;
    in a one-class set, each other class).

    ``kinds`` and ``labels`` are every test image's type and label (0 normal). The pixels of the normal
    images and of each type's images go to histograms of their own, and a type is judged on its own
    plus the normal ones, as its image AUROC is: each pixel is counted once, whatever the number of types.
    """

    def __init__(self, kinds: list[str], labels: list[int]) -> None:
        self.kinds, self.normal = np.asarray(kinds, dtype=object), np.asarray(labels) == 0
        self.defects = sorted(set(self.kinds[~self.normal].tolist()))
        self.hists = {d: StreamingAUROC() for d in ("", *self.defects)}  # "": the normal images

    def update_binned(self, idx: torch.Tensor, masks: torch.Tensor, index: torch.Tensor) -> None:
        """idx (B * H * W,): the pixels' bins (:meth:`StreamingPixelMetrics.update`), masks (B, H, W) bool,
        index (B,): the images' places in ``kinds``."""
        i = index.cpu().numpy()
        group = np.where(self.normal[i], "", self.kinds[i])  # (B,)
        idx = idx.view(len(i), -1)  # (B, H * W)
        for g in set(group.tolist()):
            rows = torch.from_numpy(group == g).to(idx.device)
            self.hists[g].update_binned(idx[rows].flatten(), masks[rows])

    def all_reduce(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        for h in self.hists.values():  # the same order on every rank: kinds is the whole test set's
            h.all_reduce(reduce_sum)

    def compute(self, image_scores: np.ndarray, pixel: bool = True) -> dict[str, dict[str, float | int | None]]:
        """{defect: {image_auroc, pixel_auroc (None without masks), n_images}}; ``image_scores`` in ``kinds`` order."""
        normal = self.hists[""]._counts()
        out: dict[str, dict[str, float | int | None]] = {}
        for d in self.defects:
            ours = ~self.normal & (self.kinds == d)
            rows = self.normal | ours
            neg, pos = (a + b for a, b in zip(normal, self.hists[d]._counts()))
            out[d] = {
                "image_auroc": image_auroc(image_scores[rows], ours[rows].astype(np.int64)),
                "pixel_auroc": auroc_from_histograms(neg, pos) if pixel else None,
                "n_images": int(ours.sum()),
            }
        return out
