"""An in-memory dataset: images are decoded and resized once, then served every epoch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .images import load_image, load_mask
from .mvtec import Sample

log = logging.getLogger(__name__)



class ImageDataset(Dataset):
    """Holds the decoded, resized images (N, 3, S, S) uint8 and masks (N, S, S) bool in memory."""

    def __init__(
        self,
        samples: Sequence[Sample],
        image_size: int,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        desc: str = "reading images",
        progress: bool = True,
    ) -> None:
        self.samples = list(samples)
        self.image_size = image_size
        self.augment = augment
        n, s = len(self.samples), image_size
        self.images = torch.empty((n, 3, s, s), dtype=torch.uint8)
        self.masks = torch.zeros((n, s, s), dtype=torch.bool)
        for i, sample in enumerate(tqdm(self.samples, desc=desc, disable=not progress or n < 50, leave=False)):
            self.images[i] = load_image(sample.image, s)
            if sample.mask is not None:
                self.masks[i] = load_mask(sample.mask, s)
                _warn_if_sizes_differ(sample)
        self.labels = torch.tensor([sample.label for sample in self.samples], dtype=torch.long)
        self.has_masks = any(sample.mask is not None for sample in self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image = self.images[i]
        if self.augment is not None:
            image = self.augment(image)
        return {"image": image.float() / 255.0, "mask": self.masks[i], "label": self.labels[i], "index": torch.tensor(i)}

    def subset(self, indices: Sequence[int], augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ImageDataset:
        """A view on some of the images, sharing the decoded tensors."""
        view = ImageDataset.__new__(ImageDataset)
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        view.samples = [self.samples[i] for i in idx.tolist()]
        view.image_size = self.image_size
        view.augment = augment
        view.images, view.masks, view.labels = self.images[idx], self.masks[idx], self.labels[idx]
        view.has_masks = self.has_masks
        return view


def _warn_if_sizes_differ(sample: Sample) -> None:
    """Masks are resized to the image size anyway; a size mismatch is still worth a warning."""
    with Image.open(sample.image) as img, Image.open(sample.mask) as mask:
        if img.size != mask.size:
            log.warning("%s: mask is %dx%d but its image is %dx%d; resized the mask", sample.mask, *mask.size, *img.size)


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle 0..n-1 with ``seed`` and hold out ``round(n * val_fraction)`` (at least 1 when > 0)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 and n > 1 else 0
    return sorted(perm[n_val:]), sorted(perm[:n_val])
