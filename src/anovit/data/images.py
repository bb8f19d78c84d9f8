"""Reading images and masks from disk into fixed-size tensors, with one-line errors on bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _open(path: Path, decode: bool = True) -> Image.Image:
    """Open an image (decoded, or only its header read); a one-line error for anything unreadable."""
    try:
        img = Image.open(path)
        if decode:
            img.load()
        return img
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as an image ({exc})") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any mode (grey, 16-bit grey, palette, RGBA, CMYK) -> 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def check_image(path: Path) -> None:
    """Read only the header: a one-line error for a file that is not an image, before any work starts."""
    _open(Path(path), decode=False).close()


def open_rgb(path: Path) -> Image.Image:
    """Read an image of any mode as 8-bit RGB, at its own size; a one-line error for unreadable files."""
    return _to_rgb(_open(Path(path)))


def load_image(path: Path, size: int) -> torch.Tensor:
    """Read an image, convert it to RGB and resize it to size x size. -> (3, S, S) uint8."""
    img = open_rgb(path)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def load_mask(path: Path, size: int) -> torch.Tensor:
    """Read a ground-truth mask (non-zero = anomalous) resized with nearest neighbour. -> (S, S) bool."""
    img = _open(Path(path))
    arr = np.asarray(img.convert("L") if img.mode not in ("L", "1", "I;16", "I") else img)
    mask = Image.fromarray((arr > 0).astype(np.uint8) * 255)
    if mask.size != (size, size):
        mask = mask.resize((size, size), Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(mask) > 127)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
