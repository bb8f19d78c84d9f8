"""Built-in data: a small MVTec-layout dataset of textured images with planted defects.

Normal images are a woven texture (a few sinusoidal gratings with fixed frequencies, random
phases, mild noise). Anomalous test images carry one defect of a known kind, drawn at the same
time into the image and into its exact ground-truth mask:

- ``scratch``: a thin straight line, darker or brighter than the texture;
- ``spot``: a filled ellipse of a foreign colour;
- ``crack``: a dark random-walk polyline;
- ``stain``: a soft-edged region whose colour is shifted (mask = where the shift exceeds 50 %).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

DEFECTS = ("scratch", "spot", "crack", "stain")


def _texture_params(category: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequencies (k, 2), channel weights (k, 3) and base colour (3,) fixed by the category name."""
    rng = np.random.default_rng(zlib.crc32(category.encode()))
    k = 4
    angles = rng.uniform(0, np.pi, k)
    freqs = rng.uniform(3.0, 9.0, k)  # cycles per image side
    waves = np.stack([np.cos(angles) * freqs, np.sin(angles) * freqs], axis=1)
    weights = rng.uniform(0.04, 0.12, (k, 3))
    base = rng.uniform(0.35, 0.65, 3)
    return waves, weights, base


def normal_image(category: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One defect-free image (size, size, 3) float in [0, 1]."""
    waves, weights, base = _texture_params(category)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.broadcast_to(base, (size, size, 3)).copy()
    for (fx, fy), w in zip(waves, weights):
        phase = rng.uniform(0, 2 * np.pi)
        img += np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)[..., None] * w
    img *= rng.uniform(0.95, 1.05)
    img += rng.normal(0, 0.015, img.shape)
    return np.clip(img, 0, 1)


def _to_pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray((img * 255 + 0.5).astype(np.uint8))


def add_defect(img: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Plant one defect. -> (image (S, S, 3) float, mask (S, S) bool)."""
    size = img.shape[0]
    canvas, mask = _to_pil(img), Image.new("L", (size, size), 0)
    draw, mdraw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    lo, hi = int(size * 0.15), int(size * 0.85)
    if kind == "scratch":
        p0 = tuple(rng.integers(lo, hi, 2).tolist())
        angle, length = rng.uniform(0, np.pi), rng.uniform(0.25, 0.5) * size
        p1 = (int(p0[0] + np.cos(angle) * length), int(p0[1] + np.sin(angle) * length))
        width = max(1, size // 40)
        colour = (15, 15, 15) if rng.random() < 0.5 else (240, 240, 240)
        draw.line([p0, p1], fill=colour, width=width)
        mdraw.line([p0, p1], fill=255, width=width)
    elif kind == "spot":
        cx, cy = rng.integers(lo, hi, 2)
        rx, ry = rng.integers(max(2, size // 20), max(3, size // 8), 2)
        box = [int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry)]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse(box, fill=colour)
        mdraw.ellipse(box, fill=255)
    elif kind == "crack":
        point = rng.integers(lo, hi, 2).astype(float)
        points = [tuple(point.astype(int).tolist())]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(12):
            heading += rng.normal(0, 0.6)
            point = np.clip(point + size / 24 * np.array([np.cos(heading), np.sin(heading)]), 1, size - 2)
            points.append(tuple(point.astype(int).tolist()))
        width = max(1, size // 64)
        draw.line(points, fill=(10, 10, 10), width=width)
        mdraw.line(points, fill=255, width=width)
    elif kind == "stain":
        cx, cy = rng.integers(lo, hi, 2)
        r = rng.uniform(0.08, 0.16) * size
        yy, xx = np.mgrid[0:size, 0:size]
        weight = np.clip(1.5 - np.hypot(xx - cx, yy - cy) / r, 0, 1)  # soft edge, 1 in the core
        shift = rng.choice([-1, 1], 3) * rng.uniform(0.25, 0.4, 3)
        out = np.clip(img + weight[..., None] * shift, 0, 1)
        return out, weight > 0.5
    else:
        raise ValueError(f"unknown defect kind {kind!r}; expected one of {DEFECTS}")
    return np.asarray(canvas, dtype=np.float64) / 255.0, np.asarray(mask) > 0


def make_synthetic_mvtec(
    root: Path,
    categories: tuple[str, ...] = ("weave",),
    size: int = 128,
    n_train: int = 80,
    n_test_good: int = 20,
    n_per_defect: int = 8,
    defects: tuple[str, ...] = DEFECTS,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Write ROOT/<category>/{train/good, test/<kind>, ground_truth/<kind>} PNGs. Returns ROOT."""
    root = Path(root)
    for category in categories:
        rng = np.random.default_rng([seed, zlib.crc32(category.encode())])
        base = root / category
        jobs = [("train", "good", i) for i in range(n_train)]
        jobs += [("test", "good", i) for i in range(n_test_good)]
        jobs += [("test", kind, i) for kind in defects for i in range(n_per_defect)]
        for split, kind, i in tqdm(jobs, desc=f"writing {category}", disable=not progress, leave=False):
            img = normal_image(category, size, rng)
            out = base / split / kind
            out.mkdir(parents=True, exist_ok=True)
            name = f"{i:03d}.png"
            if kind != "good":
                img, mask = add_defect(img, kind, rng)
                gt = base / "ground_truth" / kind
                gt.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(gt / f"{i:03d}_mask.png")
            _to_pil(img).save(out / name)
    return root
