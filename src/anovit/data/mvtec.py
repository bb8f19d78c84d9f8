"""The MVTec AD folder layout, for MVTec AD itself or any dataset laid out like it::

ROOT/CATEGORY/train/good/*.png
ROOT/CATEGORY/test/good/*.png                      normal test images
ROOT/CATEGORY/test/<defect>/<name>.png             anomalous test images
ROOT/CATEGORY/ground_truth/<defect>/<name>_mask.png    (optional: without ground_truth/, image labels only)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from anovit.data.images import list_images
from anovit.errors import InputError

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
        raise InputError(
            f"{folder}: category folder not found (expected the MVTec AD layout ROOT/CATEGORY/train/good){hint}"
        )
    return folder


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found (expected the MVTec AD layout)")
    files = list_images(folder)
    if not files:
        raise InputError(f"{folder}: no image files in this folder")
    return files


def mvtec_samples(root: Path, category: str, split: Literal["train", "test"]) -> list[Sample]:
    """List the samples of one split.

    Every anomalous test image must have its mask, unless the category has no ``ground_truth/`` folder at
    all: then the test set has image labels only (parts marked good or bad, no masks drawn), and the
    pixel metrics are not computed.
    """
    folder = category_dir(root, category)
    if split == "train":
        return [Sample(p, 0) for p in _images_in(folder / "train" / "good")]
    test = folder / "test"
    if not test.is_dir():
        raise InputError(f"{test}: folder not found (expected the MVTec AD layout)")
    ground_truth = folder / "ground_truth"
    labels_only = not ground_truth.is_dir()
    samples: list[Sample] = []
    for defect_dir in sorted(p for p in test.iterdir() if p.is_dir()):
        defect = defect_dir.name
        for img in _images_in(defect_dir):
            if defect == "good":
                samples.append(Sample(img, 0))
                continue
            if labels_only:
                samples.append(Sample(img, 1, None, defect))
                continue
            mask = ground_truth / defect / f"{img.stem}_mask.png"
            if not mask.is_file():
                raise InputError(f"{img}: anomalous test image has no mask; expected {mask}")
            samples.append(Sample(img, 1, mask, defect))
    if not samples:
        raise InputError(f"{test}: no test images found")
    return samples


def labelled_folder_samples(folder: Path) -> list[Sample]:
    """A labelled folder laid out like an MVTec test split, e.g. a validation set::

        FOLDER/good/*.png                     normal images
        FOLDER/<defect>/*.png                 anomalous images (optional)
        FOLDER/ground_truth/<defect>/<name>_mask.png  or  FOLDER/../ground_truth/...  (optional)

    An MVTec ``test`` folder is one. Masks are all-or-none: when some anomalous image has a mask,
    every anomalous image must have one.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found (expected good/ and optional <defect>/ subfolders)")
    if not (folder / "good").is_dir():
        raise InputError(
            f"{folder}: no good/ subfolder (expected good/ for normal images and optional <defect>/ subfolders)"
        )
    gt_roots = [g for g in (folder / "ground_truth", folder.parent / "ground_truth") if g.is_dir()]
    samples: list[Sample] = [Sample(p, 0) for p in _images_in(folder / "good")]
    missing: list[Path] = []
    for defect_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in ("good", "ground_truth")):
        for img in _images_in(defect_dir):
            mask = next((m for g in gt_roots if (m := g / defect_dir.name / f"{img.stem}_mask.png").is_file()), None)
            if mask is None:
                missing.append(img)
            samples.append(Sample(img, 1, mask, defect_dir.name))
    with_mask = [s for s in samples if s.mask is not None]
    if with_mask and missing:
        expected = (
            (gt_roots[0] if gt_roots else folder / "ground_truth")
            / missing[0].parent.name
            / f"{missing[0].stem}_mask.png"
        )
        raise InputError(f"{missing[0]}: anomalous image has no mask while others have one; expected {expected}")
    return samples
