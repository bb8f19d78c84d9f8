"""Built-in data: a small MVTec-layout dataset of textures and objects with planted defects.

Normal images of each category (any other name gets a woven texture of its own):

- ``weave`` (regular): a few sinusoidal gratings with fixed frequencies, random phases, mild noise;
- ``sand`` (stochastic): band-pass filtered noise, a new grain in every image;
- ``fibres`` (high-frequency): many thin oriented strands at random positions;
- ``tiles`` (regular, sharp): a grid of tiles with dark grout, slightly shifted per image;
- ``capsule`` (object): a two-coloured pill on a plain background, slightly moved and turned;
- ``nut`` (object): a hexagonal nut with a hole, turned at random, on a textured background.

Anomalous test images carry one defect of a known kind, drawn at the same time into the image and
into its exact ground-truth mask (dark and light, thin and large, colour and structure):

- ``scratch``: a thin straight line, darker or brighter than the texture;
- ``spot``: a filled ellipse of a foreign colour;
- ``crack``: a dark random-walk polyline;
- ``stain``: a soft-edged region whose colour is shifted (mask = where the shift exceeds 50 %);
- ``smudge``: a region blurred flat, with its colour kept (structure lost, nothing foreign added).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm.auto import tqdm

DEFECTS = ("scratch", "spot", "crack", "stain", "smudge")
TEXTURES = ("weave", "sand", "fibres", "tiles", "capsule", "nut")
OBJECTS = ("capsule", "nut")


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


def _blur(img: np.ndarray, radius: float) -> np.ndarray:
    pil = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float64) / 255.0


def _sand(size: int, rng: np.random.Generator) -> np.ndarray:
    grain = rng.normal(0, 1, (size, size, 1)).repeat(3, axis=2)
    fine, coarse = _blur(0.5 + 0.15 * grain, 0.8), _blur(0.5 + 0.3 * grain, 2.5)
    img = np.array([0.62, 0.52, 0.38]) + 1.2 * (fine - coarse) + 0.5 * (coarse - 0.5)
    return img + rng.normal(0, 0.01, img.shape)


def _fibres(size: int, rng: np.random.Generator) -> np.ndarray:
    canvas = Image.new("RGB", (size, size), (70, 80, 95))
    draw = ImageDraw.Draw(canvas)
    for _ in range(size * 2):
        x, y = rng.uniform(-0.1, 1.1, 2) * size
        angle = rng.normal(np.pi / 4, 0.25)
        length = rng.uniform(0.1, 0.3) * size
        shade = int(rng.integers(110, 200))
        draw.line(
            [(x, y), (x + np.cos(angle) * length, y + np.sin(angle) * length)],
            fill=(shade, shade, min(255, shade + 20)),
            width=1,
        )
    return np.asarray(canvas, dtype=np.float64) / 255.0 + rng.normal(0, 0.01, (size, size, 3))


def _tiles(size: int, rng: np.random.Generator) -> np.ndarray:
    period = size / 6
    ox, oy = rng.uniform(0, period, 2)
    yy, xx = np.mgrid[0:size, 0:size]
    gx, gy = (xx + ox) % period, (yy + oy) % period
    grout = (np.minimum(gx, period - gx) < 1.5) | (np.minimum(gy, period - gy) < 1.5)
    img = np.broadcast_to(np.array([0.78, 0.74, 0.66]), (size, size, 3)).copy()
    img += ((((xx + ox) // period + (yy + oy) // period) % 2) * 0.04)[..., None]
    img[grout] = (0.25, 0.23, 0.22)
    return _blur(img, 0.6) + rng.normal(0, 0.012, img.shape)


def _capsule(size: int, rng: np.random.Generator) -> np.ndarray:
    canvas = Image.new("RGB", (size, size), (200, 205, 210))
    cx, cy = size / 2 + rng.normal(0, size / 60, 2)
    angle = rng.normal(0, 0.05)
    length, radius = 0.32 * size, 0.12 * size
    d = np.array([np.cos(angle), np.sin(angle)])
    halves = [((200, 60, 50), -1), ((235, 225, 200), 1)]
    draw = ImageDraw.Draw(canvas)
    for colour, side in halves:
        for t in np.linspace(0, 1, 40):
            px, py = np.array([cx, cy]) + side * d * length * t
            draw.ellipse([px - radius, py - radius, px + radius, py + radius], fill=colour)
    img = np.asarray(canvas, dtype=np.float64) / 255.0
    return _blur(img, 0.8) + rng.normal(0, 0.01, img.shape)


def _nut(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    background = 0.3 + 0.03 * np.sin(2 * np.pi * 11 * xx) * np.sin(2 * np.pi * 9 * yy)
    canvas = Image.fromarray((np.clip(np.stack([background] * 3, axis=2), 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    c = size / 2 + rng.normal(0, size / 80, 2)
    turn = rng.uniform(0, np.pi / 3)
    outer = [
        (c[0] + 0.33 * size * np.cos(turn + k * np.pi / 3), c[1] + 0.33 * size * np.sin(turn + k * np.pi / 3))
        for k in range(6)
    ]
    draw.polygon(outer, fill=(165, 160, 150))
    r = 0.13 * size
    draw.ellipse([c[0] - r - 3, c[1] - r - 3, c[0] + r + 3, c[1] + r + 3], fill=(120, 115, 110))
    draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=(40, 40, 45))
    img = np.asarray(canvas, dtype=np.float64) / 255.0
    return _blur(img, 0.7) + rng.normal(0, 0.01, img.shape)


_MAKERS = {"sand": _sand, "fibres": _fibres, "tiles": _tiles, "capsule": _capsule, "nut": _nut}


def normal_image(category: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One defect-free image (size, size, 3) float in [0, 1]."""
    if category in _MAKERS:
        return np.clip(_MAKERS[category](size, rng), 0, 1)
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


def add_defect(
    img: np.ndarray, kind: str, rng: np.random.Generator, region: float = 0.15
) -> tuple[np.ndarray, np.ndarray]:
    """Plant one defect, centred in [region, 1 - region] of the image. -> (image (S, S, 3) float, mask (S, S) bool)."""
    size = img.shape[0]
    canvas, mask = _to_pil(img), Image.new("L", (size, size), 0)
    draw, mdraw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    lo, hi = int(size * region), int(size * (1 - region))
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
    elif kind == "smudge":
        cx, cy = rng.integers(lo, hi, 2)
        r = rng.uniform(0.07, 0.12) * size
        yy, xx = np.mgrid[0:size, 0:size]
        weight = np.clip(1.5 - np.hypot(xx - cx, yy - cy) / r, 0, 1)
        flat = _blur(img, size / 16)
        changed = np.abs(flat - img).mean(axis=2) * weight
        out = img * (1 - weight[..., None]) + flat * weight[..., None]
        # only where the blur changed something visible: a smudge over a flat area is no defect
        return out, (weight > 0.5) & (_blur(np.repeat(changed[..., None], 3, 2), 1.0)[..., 0] > 0.04)
    else:
        raise ValueError(f"unknown defect kind {kind!r}; expected one of {DEFECTS}")
    return np.asarray(canvas, dtype=np.float64) / 255.0, np.asarray(mask) > 0


def visible_defect(
    img: np.ndarray, kind: str, rng: np.random.Generator, region: float, tries: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`add_defect`, drawn again where it changed nothing visible (a smudge over an object's flat
    background has an empty mask): an image labelled anomalous must show its defect."""
    for _ in range(tries):
        out, mask = add_defect(img, kind, rng, region)
        if mask.any():
            return out, mask
    raise RuntimeError(f"no visible {kind} defect in {tries} tries")


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
                img, mask = visible_defect(img, kind, rng, region=0.3 if category in OBJECTS else 0.15)
                gt = base / "ground_truth" / kind
                gt.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(gt / f"{i:03d}_mask.png")
            _to_pil(img).save(out / name)
    return root
