"""Datasets of image files: decoded once and held in memory, or decoded on every access.

``cache="memory"`` decodes and resizes every image once (fast epochs; N x 3 x S x S bytes of RAM:
10,000 images at 384 px take 4.4 GB). ``cache="none"`` keeps only the file list and decodes in
the DataLoader's worker processes (:func:`loader_workers`). ``cache="auto"`` picks memory while the
decoded images fit in :func:`memory_budget`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from anovit.config import CACHE_MODES, CacheMode
from anovit.data.images import mask_input, model_input, open_rgb
from anovit.data.mvtec import Sample

log = logging.getLogger(__name__)

MAX_CACHE_BYTES = 4 * 2**30  # auto never caches more than this, whatever the machine has


def load_image(path: Path, size: int) -> torch.Tensor:
    """Read an image, convert it to RGB and resize it to size x size. -> (3, S, S) uint8."""
    return torch.from_numpy(model_input(open_rgb(path), size))


def load_mask(path: Path, size: int) -> torch.Tensor:
    """Read a ground-truth mask (non-zero = anomalous) resized with nearest neighbour. -> (S, S) bool."""
    return torch.from_numpy(mask_input(path, size))


def as_float_tensor(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]; float input is passed on as float32 (the torch twin of
    :func:`anovit.data.images.as_float_images`)."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


class SplittableDataset(Protocol):
    """A dataset of labelled samples that splits into subsets (:class:`ImageDataset`, the one-class datasets)."""

    samples: list[Sample]

    def __len__(self) -> int: ...

    def subset(self, indices: list[int], augment: Any = None) -> Dataset: ...


def memory_budget() -> int:
    """Bytes ``cache="auto"`` may spend on decoded images: a quarter of the available memory, at most 4 GiB."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 8 * 2**30
    return min(MAX_CACHE_BYTES, available // 4)


def decoded_bytes(n: int, image_size: int, with_masks: bool) -> int:
    return n * image_size * image_size * (3 + int(with_masks))


def resolve_cache(cache: CacheMode, n: int, image_size: int, with_masks: bool = False) -> Literal["memory", "none"]:
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
    if cache != "auto":
        return cache
    need, budget = decoded_bytes(n, image_size, with_masks), memory_budget()
    if need <= budget:
        return "memory"
    log.info(
        "%d images at %d px need %.1f GiB decoded (budget %.1f GiB): decoding from disk in DataLoader workers",
        n,
        image_size,
        need / 2**30,
        budget / 2**30,
    )
    return "none"


def loader_workers(dataset: Any) -> int:
    """DataLoader worker processes for ``dataset``: none for data in memory, up to 4 for data decoded on access."""
    if getattr(dataset, "cached", True):
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1))


class ImageDataset(Dataset):
    """Images (3, S, S) and masks (S, S) of ``samples``, in memory or decoded on access (``cache``)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        image_size: int,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        desc: str = "reading images",
        progress: bool = True,
        cache: CacheMode = "auto",
    ) -> None:
        self.samples = list(samples)
        self.image_size = image_size
        self.augment = augment
        n, s = len(self.samples), image_size
        self.has_masks = any(sample.mask is not None for sample in self.samples)
        self.labels = torch.tensor([sample.label for sample in self.samples], dtype=torch.long)
        self.cached = resolve_cache(cache, n, s, self.has_masks) == "memory"
        self.images: torch.Tensor | None = None  # (N, 3, S, S) uint8 when cached
        self.masks: torch.Tensor | None = None  # (N, S, S) bool when cached
        if not self.cached:
            return
        self.images = torch.empty((n, 3, s, s), dtype=torch.uint8)
        self.masks = torch.zeros((n, s, s), dtype=torch.bool)
        for i in tqdm(range(n), desc=desc, disable=not progress or n < 50, leave=False):
            self.images[i], self.masks[i] = self._read(i)

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode image ``i`` (3, S, S) uint8 and its mask (S, S) bool (all False without one)."""
        sample, s = self.samples[i], self.image_size
        image = load_image(sample.image, s)
        if sample.mask is None:
            return image, torch.zeros((s, s), dtype=torch.bool)
        mask = load_mask(sample.mask, s)
        _warn_if_sizes_differ(sample)
        if sample.label == 1 and not mask.any():
            log.warning(
                "%s: anomalous image with an empty mask %s; its pixels all count as normal", sample.image, sample.mask
            )
        return image, mask

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` without augmentation: (3, S, S) uint8."""
        return self.images[i] if self.images is not None else self._read(i)[0]

    def mask(self, i: int) -> torch.Tensor:
        """Mask ``i``: (S, S) bool."""
        return self.masks[i] if self.masks is not None else self._read(i)[1]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image, mask = (
            (self.images[i], self.masks[i]) if self.images is not None and self.masks is not None else self._read(i)
        )
        if self.augment is not None:
            image = self.augment(image)
        return {"image": as_float_tensor(image), "mask": mask, "label": self.labels[i], "index": torch.tensor(i)}

    def subset(
        self, indices: Sequence[int], augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> ImageDataset:
        """A view on some of the images, sharing the decoded tensors (or the file list)."""
        view = ImageDataset.__new__(ImageDataset)
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        view.samples = [self.samples[i] for i in idx.tolist()]
        view.image_size, view.augment, view.cached, view.has_masks = (
            self.image_size,
            augment,
            self.cached,
            self.has_masks,
        )
        view.labels = self.labels[idx]
        view.images = self.images[idx] if self.images is not None else None
        view.masks = self.masks[idx] if self.masks is not None else None
        return view


def _warn_if_sizes_differ(sample: Sample) -> None:
    """Masks are resized to the image size anyway; a size mismatch is still worth a warning."""
    with Image.open(sample.image) as img, Image.open(sample.mask) as mask:
        if img.size != mask.size:
            log.warning(
                "%s: mask is %dx%d but its image is %dx%d; resized the mask", sample.mask, *mask.size, *img.size
            )


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle 0..n-1 with ``seed`` and hold out ``round(n * val_fraction)`` (at least 1 when > 0)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 and n > 1 else 0
    return sorted(perm[n_val:]), sorted(perm[:n_val])
