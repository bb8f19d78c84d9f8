"""The MVTec AD folder layout, for MVTec AD itself or any dataset laid out like it::

    ROOT/CATEGORY/train/good/*.png
    ROOT/CATEGORY/test/good/*.png                      normal test images
    ROOT/CATEGORY/test/<defect>/<name>.png             anomalous test images
    ROOT/CATEGORY/ground_truth/<defect>/<name>_mask.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError
from .images import list_images

OBJECTS = ("bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw", "toothbrush", "transistor", "zipper")
TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
CATEGORIES = OBJECTS + TEXTURES


@dataclass(frozen=True)
class Sample:
    """One image: its path, label (0 normal, 1 anomalous), mask path (None for normal), defect type."""

    image: Path
    label: int
    mask: Path | None = None
    defect: str = "good"


def category_dir(root: Path, category: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: data folder not found")
    folder = root / category
    if not folder.is_dir():
        found = sorted(p.name for p in root.iterdir() if (p / "train").is_dir())
        hint = f"; categories found there: {', '.join(found)}" if found else ""
        raise InputError(f"{folder}: category folder not found (expected the MVTec AD layout ROOT/CATEGORY/train/good){hint}")
    return folder


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found (expected the MVTec AD layout)")
    files = list_images(folder)
    if not files:
        raise InputError(f"{folder}: no image files in this folder")
    return files


def mvtec_samples(root: Path, category: str, split: Literal["train", "test"]) -> list[Sample]:
    """List the samples of one split. Every anomalous test image must have its mask."""
    folder = category_dir(root, category)
    if split == "train":
        return [Sample(p, 0) for p in _images_in(folder / "train" / "good")]
    test = folder / "test"
    if not test.is_dir():
        raise InputError(f"{test}: folder not found (expected the MVTec AD layout)")
    samples: list[Sample] = []
    for defect_dir in sorted(p for p in test.iterdir() if p.is_dir()):
        defect = defect_dir.name
        for img in _images_in(defect_dir):
            if defect == "good":
                samples.append(Sample(img, 0))
                continue
            mask = folder / "ground_truth" / defect / f"{img.stem}_mask.png"
            if not mask.is_file():
                raise InputError(f"{img}: anomalous test image has no mask; expected {mask}")
            samples.append(Sample(img, 1, mask, defect))
    if not samples:
        raise InputError(f"{test}: no test images found")
    return samples
