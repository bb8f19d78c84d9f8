"""Real photographs as one-class sets: crops of scikit-image's bundled texture photographs with planted defects.

The built-in generator (``anovit.data.synthetic``) draws its textures; these are real photographs
(``skimage.data``: ``brick``, ``grass``, ``gravel``, 512 x 512 greyscale), the stochastic and
high-frequency textures on which the issue-10 user first tried the package. Each photograph is cut
in two: normal training crops come from its top part, test crops (normal and defective) from the
bottom part only, so that no test pixel was seen in training. Defects are
:func:`anovit.data.synthetic.add_defect`'s five kinds, drawn into the crop and its mask.

    python benchmarks/photo_sets.py --out benchmarks/ablation/photo   # writes OUT/<name>/... (MVTec layout)

The ablation reads them with ``--sets photo`` or ``--sets photo:grass+gravel``.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from anovit.data.synthetic import DEFECTS, visible_defect  # noqa: E402

PHOTOS = ("brick", "grass", "gravel")
SPLIT = 0.625  # rows above this share of the photograph give the training crops, rows below it the test crops


def photograph(name: str) -> np.ndarray:
    """scikit-image's bundled photograph ``name`` as (H, W, 3) float in [0, 1]."""
    from skimage import data

    img = np.asarray(getattr(data, name)(), dtype=np.float64) / 255.0
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def _crop(img: np.ndarray, rows: tuple[int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """A random (size, size, 3) crop whose rows lie within ``rows``, flipped left-right at random."""
    y = int(rng.integers(rows[0], rows[1] - size + 1))
    x = int(rng.integers(0, img.shape[1] - size + 1))
    out = img[y : y + size, x : x + size]
    return out[:, ::-1] if rng.random() < 0.5 else out


def make_photo_mvtec(
    root: Path,
    names: tuple[str, ...] = PHOTOS,
    crop: int = 160,
    n_train: int = 200,
    n_test_good: int = 20,
    n_per_defect: int = 8,
    seed: int = 0,
) -> Path:
    """Write ROOT/<name>/{train/good, test/<kind>, ground_truth/<kind>} PNGs (MVTec layout). Returns ROOT."""
    for name in names:
        img = photograph(name)
        split = int(img.shape[0] * SPLIT)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        base = root / name
        jobs = [("train", "good", i) for i in range(n_train)] + [("test", "good", i) for i in range(n_test_good)]
        jobs += [("test", kind, i) for kind in DEFECTS for i in range(n_per_defect)]
        for split_name, kind, i in jobs:
            rows = (0, split) if split_name == "train" else (split, img.shape[0])
            out = np.ascontiguousarray(_crop(img, rows, crop, rng))
            if kind != "good":
                out, mask = visible_defect(out, kind, rng, region=0.15)
                (base / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(base / "ground_truth" / kind / f"{i:03d}_mask.png")
            (base / split_name / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
                base / split_name / kind / f"{i:03d}.png"
            )
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/ablation/photo"))
    ap.add_argument("--names", default="+".join(PHOTOS))
    args = ap.parse_args()
    print(make_photo_mvtec(args.out, tuple(args.names.split("+"))))


if __name__ == "__main__":
    main()
