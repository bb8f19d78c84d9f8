"""Evaluation as plain functions: ``score_images`` (one batch), ``evaluate`` (a labelled dataset ->
:class:`Evaluation` with its AUROCs), ``measure_scales`` (the score maps' means on normal images),
``measure_peak_levels`` (the token model's groups' peak levels on normal images) and ``measure_channel_energy`` (its
channels' energy there)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from anovit.config import Precision, ScoreConfig
from anovit.data.datasets import as_float_tensor, loader_workers
from anovit.evaluation.metrics import image_auroc, image_f1_max
from anovit.evaluation.streaming import PerDefectMetrics, StreamingAUROC, StreamingPixelMetrics
from anovit.image_score import level_statistic
from anovit.runtime import distributed as dist
from anovit.runtime.device import batches_on
from anovit.runtime.precision import autocast
from anovit.scoring.maps import Scores, component_maps, image_scores, score_batch

log = logging.getLogger(__name__)


def _cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """torch.cat that accepts an empty list (a rank whose shard is empty)."""
    return torch.cat(parts) if parts else torch.empty(0, dtype=dtype)


@dataclass
class Evaluation:
    """Results of :func:`evaluate`. ``maps`` holds the smoothed score maps of the kept images."""

    image_auroc: float | None
    pixel_auroc: float | None
    n_images: int
    image_scores: np.ndarray
    labels: np.ndarray
    aupro: float | None = None
    maps: dict[int, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pixel_hist: StreamingAUROC | None = None  # pixel-score histograms of normal and anomalous pixels
    per_defect: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # {defect type: its AUROCs against the normal images}
    # the image score's level statistic (anovit.image_score.level_statistic) read from the raw maps: on the map's own
    # scale, where the image score may not be (a spread in it, a position-normalised map)
    map_peaks: np.ndarray | None = None

    def metrics(self) -> dict[str, Any]:
        """AUROCs, AUPRO and the best achievable F1 with its threshold, image- and pixel-level."""
        image_f1 = image_f1_max(self.image_scores, self.labels)
        pixel_f1 = self.pixel_hist.f1_max() if self.pixel_hist is not None else None
        out: dict[str, Any] = {
            "image_auroc": self.image_auroc,
            "pixel_auroc": self.pixel_auroc,
            "aupro": self.aupro,
            "image_f1_max": image_f1[0] if image_f1 else None,
            "image_f1_max_threshold": image_f1[1] if image_f1 else None,
            "pixel_f1_max": pixel_f1[0] if pixel_f1 else None,
            "pixel_f1_max_threshold": pixel_f1[1] if pixel_f1 else None,
            "n_images": self.n_images,
        }
        if len(self.per_defect) > 1:  # with one type it repeats the totals
            out["per_defect"] = self.per_defect
        return out | ({"notes": self.notes} if self.notes else {})


@torch.no_grad()
def score_images(
    model: nn.Module, images: torch.Tensor, score: ScoreConfig, device: torch.device, precision: Precision = "fp32"
) -> Scores:
    """Score a batch of images (B, 3, S, S), uint8 or float in [0, 1] -> Scores(maps (B, S, S), image (B,))."""
    x = as_float_tensor(images.to(device))  # (B, 3, S, S)
    return score_batch(model, x, score, amp=lambda: autocast(device, precision))


def _mean_over(
    dataset: Dataset, device: torch.device, batch_size: int, per_image: Callable[[torch.Tensor], torch.Tensor], k: int
) -> torch.Tensor:
    """The mean over ``dataset``'s images, over all ranks, of ``per_image`` (images (B, 3, S, S) -> (B, k)): (k,)."""
    sums = torch.zeros(k + 1, dtype=torch.float64)  # (sum of each column, images)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=dist.ShardSampler(len(dataset)), num_workers=loader_workers(dataset)
    )
    for batch in batches_on(loader, device):
        values = per_image(batch["image"].float()).float()  # (B, k)
        sums[:-1] += values.sum(dim=0).double().cpu()
        sums[-1] += values.shape[0]
    sums = dist.all_reduce_sum(sums.to(device)).cpu()
    return sums[:-1] / sums[-1].clamp_min(1)


@torch.no_grad()
def measure_scales(
    model: nn.Module,
    dataset: Dataset,
    score: ScoreConfig,
    device: torch.device,
    precision: Precision = "fp32",
    batch_size: int = 16,
) -> tuple[float, ...]:
    """The mean of each of ``score.kinds``' maps over ``dataset`` (normal images), over all ranks: what
    :func:`anovit.scoring.maps.combine` divides each map by, so that each weighs the same."""
    model.eval().to(device)

    def map_means(x: torch.Tensor) -> torch.Tensor:
        maps = component_maps(model, x, score, amp=lambda: autocast(device, precision))
        return torch.stack([maps[k].mean(dim=(1, 2)) for k in score.kinds], dim=1)  # (B, kinds)

    means = _mean_over(dataset, device, batch_size, map_means, len(score.kinds))
    return tuple(max(float(v), 1e-12) for v in means)


@torch.no_grad()
def measure_peak_levels(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    precision: Precision = "fp32",
    batch_size: int = 16,
    border: float = 0.0,
) -> torch.Tensor:
    """The token model's peak level of each group of blocks (:meth:`anovit.models.tokens.TokenAnoViT.peak_levels`,
    without the patches in the image score's ``border``) averaged over ``dataset`` (normal images), over all ranks:
    (maps x G,)."""
    model.eval().to(device)

    def levels(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            return model.peak_levels(x, border)  # (B, maps x G)

    return _mean_over(dataset, device, batch_size, levels, model.groups * model.maps).float()


@torch.no_grad()
def measure_channel_energy(
    model: nn.Module, dataset: Dataset, device: torch.device, precision: Precision = "fp32", batch_size: int = 16
) -> torch.Tensor:
    """The token model's mean square of each channel of each group's tokens
    (:meth:`anovit.models.tokens.TokenAnoViT.channel_energy`) over ``dataset`` (normal images), over all ranks:
    (G, D)."""
    model.eval().to(device)
    shape = (model.groups, model.dim)

    def energy(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            return model.channel_energy(x).flatten(1)  # (B, G x D)

    return _mean_over(dataset, device, batch_size, energy, shape[0] * shape[1]).float().view(shape)


@torch.no_grad()
def evaluate(
    model: nn.Module | None,
    dataset: Dataset,
    score: ScoreConfig,
    device: torch.device,
    precision: Precision = "fp32",
    batch_size: int = 16,
    keep_maps: Sequence[int] = (),
    progress: bool = True,
    scorer: Callable[[torch.Tensor], Scores] | None = None,
) -> Evaluation:
    """Score every image of ``dataset``; image AUROC always, pixel AUROC when it has masks.

    ``scorer`` (images (B, 3, S, S) in [0, 1] -> Scores) replaces ``model`` + ``score_images``:
    another backend (ONNX Runtime, OpenVINO) scores the same images with the same metrics.
    """
    if scorer is None:
        if model is None:
            raise ValueError("evaluate needs a model or a scorer")
        model.eval().to(device)
        scorer = lambda images: score_images(model, images, score, device, precision)  # noqa: E731
    keep = set(keep_maps)
    pixel = StreamingPixelMetrics()
    has_masks = bool(getattr(dataset, "has_masks", False))
    samples = getattr(dataset, "samples", None)
    per_defect = (
        PerDefectMetrics([s.defect for s in samples], [s.label for s in samples]) if samples is not None else None
    )
    scores, peaks, labels, indices, kept = [], [], [], [], {}
    level = level_statistic(score.image_score)  # the image score's part on the map's own scale
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=dist.ShardSampler(len(dataset)), num_workers=loader_workers(dataset)
    )
    bar = tqdm(
        batches_on(loader, device),
        total=len(loader),
        desc="scoring",
        disable=not progress or not dist.is_main(),
        leave=False,
    )
    for batch in bar:
        result = scorer(batch["image"])  # maps (B, H, W), image (B,)
        if has_masks:
            bins = pixel.update(result.maps, batch["mask"])  # (B * H * W,)
            if per_defect is not None:
                per_defect.update_binned(bins, batch["mask"], batch["index"])
        scores.append(result.image.cpu())
        peaks.append(image_scores(result.maps, score.border, level).cpu())
        labels.append(batch["label"].cpu())
        indices.append(batch["index"].cpu())
        for j, i in enumerate(batch["index"].tolist()):
            if i in keep:
                kept[i] = result.maps[j].cpu().numpy()
    # Under torch.distributed each rank scored a shard: gather, and put images back in dataset order.
    shards = dist.all_gather_objects(
        (
            _cat(indices, torch.long),
            _cat(scores, torch.float32),
            _cat(labels, torch.long),
            kept,
            _cat(peaks, torch.float32),
        )
    )
    order = torch.cat([s[0] for s in shards]).argsort()
    image_score_arr = torch.cat([s[1] for s in shards])[order].numpy().astype(np.float64)
    peak_arr = torch.cat([s[4] for s in shards])[order].numpy().astype(np.float64)
    label_arr = torch.cat([s[2] for s in shards])[order].numpy()
    kept = {i: m for s in shards for i, m in s[3].items()}
    pixel_auroc = aupro = None
    if has_masks:
        pixel.all_reduce(lambda t: dist.all_reduce_sum(t.to(device)))
        pixel_auroc, aupro = pixel.compute()
        if per_defect is not None:
            per_defect.all_reduce(lambda t: dist.all_reduce_sum(t.to(device)))
    notes = []
    img_auroc = image_auroc(image_score_arr, label_arr)
    if img_auroc is None:
        notes.append(
            f"image AUROC undefined: the test set has only {'anomalous' if label_arr.min() == 1 else 'normal'} images"
        )
    if has_masks and pixel_auroc is None:
        notes.append("pixel AUROC undefined: the masks have only one class of pixels")
    if not has_masks and label_arr.max(initial=0) == 1:
        notes.append("pixel AUROC and AUPRO not computed: the test set has no ground-truth masks (image labels only)")
    return Evaluation(
        image_auroc=img_auroc,
        pixel_auroc=pixel_auroc,
        aupro=aupro,
        n_images=len(label_arr),
        image_scores=image_score_arr,
        map_peaks=peak_arr,
        labels=label_arr,
        maps=kept,
        notes=notes,
        pixel_hist=pixel.auroc if has_masks else None,
        per_defect=per_defect.compute(image_score_arr, pixel=has_masks) if per_defect is not None else {},
    )
