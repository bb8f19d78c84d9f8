"""The tokens objective's targets, computed once per view of each training image instead of once per step.

The encoder of :class:`~anovit.models.tokens.TokenAnoViT` is frozen, so what its decoder must give back for an image
(:meth:`~anovit.models.tokens.TokenAnoViT.targets`) depends on the image alone, and the default's 600 steps show each
image of a ~200-image category dozens of times (bottle: 60 epochs). The encoder's pass was half of every step (0.56
of 1.06 s for a batch of 16 on 2 AMD cores in fp32). Where training reads each image more than
``TrainConfig.token_views`` times, that many augmented views of each are encoded once, and every epoch shows each
image as one of its views drawn at random; the hold-out, not augmented, is encoded once. Dinomaly trains on fixed
views too (no augmentation at all). Larger sets, read a few times each (one-class CIFAR-10: 3 epochs), train as
before: a cache would cost as many encoder passes as it saved. The cache takes at most the memory the image cache
may take (:func:`anovit.data.datasets.memory_budget`), with fewer views where more would not fit.
"""

from __future__ import annotations

import logging
import math

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from anovit.config import Precision, TrainConfig
from anovit.data.datasets import loader_workers, memory_budget
from anovit.runtime.device import batches_on
from anovit.runtime.precision import autocast

log = logging.getLogger(__name__)

STORE_DTYPE = torch.float16  # the cache's tokens: half the memory of fp32, 10 mantissa bits (bf16 has 7)


def cached_views(cfg: TrainConfig) -> int:
    """How many views of each training image ``fit`` encodes once: ``cfg.token_views`` where the tokens objective
    reads each image more often than that (``cfg.epochs`` times), else 0 (the encoder runs at every step)."""
    return cfg.token_views if cfg.objective == "tokens" and 0 < cfg.token_views < cfg.epochs else 0


def affordable_views(views: int, n_images: int, target_shape: tuple[int, ...], budget: int | None = None) -> int:
    """``views`` cut to what ``budget`` bytes (default :func:`memory_budget`) hold for ``n_images`` images of targets
    ``target_shape`` (G, N, D) in :data:`STORE_DTYPE`; 0 where fewer than 2 of several views fit (the cache would
    drop the augmentation), or the one asked for does not."""
    budget = memory_budget() if budget is None else budget
    per_view = max(1, n_images) * math.prod(target_shape) * torch.finfo(STORE_DTYPE).bits // 8
    fits = min(views, budget // per_view)
    kept = fits if fits >= min(views, 2) else 0
    if fits < views:
        log.warning(
            "tokens: %d views of %d images would take %.0f MB, over the %.0f MB budget: %s",
            views,
            n_images,
            views * per_view / 2**20,
            budget / 2**20,
            f"caching {kept}" if kept else "the encoder runs at every step",
        )
    return kept


class CachedTargets(Dataset):
    """Item i -> ``{"tokens": (G, N, D) fp32}``: one of image i's cached views, drawn at random (torch's generator,
    seeded by ``fit``) each time it is read."""

    cached = True  # in memory: no DataLoader workers (anovit.data.datasets.loader_workers)

    def __init__(self, targets: torch.Tensor) -> None:
        self.targets = targets  # (images, views, G, N, D)

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        view = int(torch.randint(self.targets.shape[1], ()))
        return {"tokens": self.targets[i, view].float()}

    @property
    def nbytes(self) -> int:
        return self.targets.numel() * self.targets.element_size()


@torch.no_grad()
def cache_targets(
    model: torch.nn.Module,
    dataset: Dataset,
    views: int,
    batch_size: int,
    device: torch.device,
    precision: Precision,
    desc: str = "encoding views",
    progress: bool = True,
) -> CachedTargets:
    """Encode ``views`` passes over ``dataset`` (its augmentation draws anew in each) with ``model``'s frozen encoder:
    the targets of every image and view, kept on the CPU in :data:`STORE_DTYPE`."""
    workers = loader_workers(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    per_view = []
    for _ in tqdm(range(views), desc=desc, unit="view", disable=not progress, leave=False):
        chunks = []
        for batch in batches_on(loader, device):
            with autocast(device, precision):
                chunks.append(model.targets(batch["image"]).to("cpu", STORE_DTYPE))  # (B, G, N, D)
        per_view.append(torch.cat(chunks))
    return CachedTargets(torch.stack(per_view, dim=1))  # (images, views, G, N, D)


def with_cached_targets(
    model: torch.nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    cfg: TrainConfig,
    device: torch.device,
    precision: Precision,
    progress: bool = True,
) -> tuple[Dataset, Dataset | None, bool]:
    """The training and hold-out sets as ``fit`` reads them, and whether they are cached targets: for a token model
    on a set read more than ``cfg.token_views`` times, that many views of each training image (within the memory
    budget) and the hold-out once, encoded now; otherwise the sets as given (a model without targets is left to the
    objective's own error)."""
    if not hasattr(model, "target_shape"):
        return train_set, val_set, False
    views = cached_views(cfg)
    if views and getattr(train_set, "augment", True) is None:  # every view of an unaugmented image is the same
        views = 1
    views = affordable_views(views, len(train_set), model.target_shape)
    if not views:
        return train_set, val_set, False
    train = cache_targets(model, train_set, views, cfg.batch_size, device, precision, "encoding views", progress)
    if val_set is not None and len(val_set):
        val_set = cache_targets(model, val_set, 1, cfg.batch_size, device, precision, "encoding hold-out", progress)
    log.info(
        "tokens: %d views of each of %d training images encoded once (%.0f MB)", views, len(train), train.nbytes / 2**20
    )
    return train, val_set, True
