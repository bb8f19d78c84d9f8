"""Class-per-folder one-class sets from real photographs on this machine (issue 28's stand-ins for CIFAR-10).

No natural-image classification set can be downloaded here; scikit-image bundles two things that stand in:

- ``faces``: its ``lfw_subset`` (100 Labeled Faces in the Wild crops and 100 non-face crops of natural images,
  25 x 25 grey): two classes, face and non-face, each split in halves for train and test.
- ``scenes``: ten of its photographs (astronaut, cat, coffee, rocket, Hubble deep field, tissue stain, retina,
  cameraman, coins, moon), each a class: random square crops of 48 to 96 px resized to 32 x 32 (CIFAR-10's size),
  the training crops from the photograph's top part and the test crops from its bottom part, so that no test
  pixel was seen in training. An anomaly is a crop of another photograph: content and colour, not a local defect.

Both are written as torchvision's ImageFolder layout that ``--dataset folder`` reads::

    python benchmarks/class_folders.py --out /tmp/class_folders     # writes OUT/faces/... and OUT/scenes/...
    anovit benchmark --dataset folder --data /tmp/class_folders/scenes --models anovit,cae,knn
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from photo_sets import SPLIT, photograph  # noqa: E402  (rows above SPLIT give training crops, rows below test crops)

SCENES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "coins",
    "moon",
)
SIZE = 32  # CIFAR-10's native size


def _save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def make_faces(root: Path, seed: int = 0) -> Path:
    """ROOT/{train,test}/{face,nonface}/*.png from scikit-image's ``lfw_subset`` (25 x 25 grey), halves at random."""
    from skimage import data

    images = (np.asarray(data.lfw_subset()) * 255 + 0.5).astype(np.uint8)  # (200, 25, 25): 100 faces, 100 not
    rng = np.random.default_rng(seed)
    for c, name in enumerate(("face", "nonface")):
        order = rng.permutation(100) + 100 * c
        for split, part in (("train", order[:50]), ("test", order[50:])):
            for i in part:
                _save(images[i], root / split / name / f"{i:03d}.png")
    return root


def make_scenes(root: Path, n_train: int = 200, n_test: int = 50, seed: int = 0) -> Path:
    """ROOT/{train,test}/<photograph>/*.png: 32-px crops of ten photographs, train from the top, test from below."""
    for name in SCENES:
        img = (photograph(name) * 255 + 0.5).astype(np.uint8)  # (H, W, 3), the photograph's own levels
        split = int(img.shape[0] * SPLIT)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        for part, rows, n in (("train", (0, split), n_train), ("test", (split, img.shape[0]), n_test)):
            for i in range(n):
                size = int(rng.integers(48, min(96, rows[1] - rows[0]) + 1))
                y = int(rng.integers(rows[0], rows[1] - size + 1))
                x = int(rng.integers(0, img.shape[1] - size + 1))
                crop = Image.fromarray(np.ascontiguousarray(img[y : y + size, x : x + size]))
                _save(np.asarray(crop.resize((SIZE, SIZE), Image.Resampling.BOX)), root / part / name / f"{i:03d}.png")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/class_folders"))
    args = ap.parse_args()
    print(make_faces(args.out / "faces"), make_scenes(args.out / "scenes"))


if __name__ == "__main__":
    main()
