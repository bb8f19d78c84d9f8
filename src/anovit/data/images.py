"""Images without torch: reading files and uploads (one-line errors on bad ones), the model's input array,
ground-truth masks, and PNG/JPEG data URIs for pages and JSON answers."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from anovit.errors import ImageTooLarge, InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _open(
    path: Path | Any, decode: bool = True, label: str | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Open an image (decoded, or only its header read); a one-line error for anything unreadable.

    Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, about 179 M pixels) is kept: a
    file claiming more pixels is refused from its header, before anything is decoded; ``max_pixels``
    refuses smaller ones the same way (``serve --max-pixels``).
    """
    label = label or str(path)
    try:
        img = Image.open(path)
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ImageTooLarge(
                f"{label}: {img.width} x {img.height} = {img.width * img.height:,} pixels, more than the limit of "
                f"{max_pixels:,} (--max-pixels)"
            )
        if decode:
            img.load()
        return img
    except FileNotFoundError:
        raise InputError(f"{label}: file not found") from None
    except Image.DecompressionBombError as exc:
        numbers = re.findall(r"\d+", str(exc))
        claim = f"its header claims {int(numbers[0]):,} pixels, " if len(numbers) >= 2 else ""
        raise ImageTooLarge(
            f"{label}: refused as a possible decompression bomb: {claim}more than twice Pillow's limit "
            f"Image.MAX_IMAGE_PIXELS ({Image.MAX_IMAGE_PIXELS:,})"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).replace(repr(path), repr(label))  # Pillow names a file object by its repr
        raise InputError(f"{label}: cannot be read as an image ({reason})") from None


def as_rgb(img: Image.Image) -> Image.Image:
    """Any mode (grey, 16-bit grey, float, palette, RGBA, CMYK) -> 8-bit RGB.

    16-bit integers are scaled from [0, 65535]; float images (32-bit TIFF) from [0, 1] when their
    values lie there, else from [0, 255] or [0, 65535], whichever holds their maximum.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(arr.max()) if arr.size else 0.0
        if img.mode.startswith("I;16"):
            top = 65535.0
        elif img.mode == "F" and peak <= 1.0:
            top = 1.0
        else:
            top = 255.0 if peak <= 255 else 65535.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def to_rgb(image: Any) -> np.ndarray:
    """A path, PIL image, numpy array ((H, W), (H, W, 1|3|4); uint8, uint16 or float in [0, 1]) or torch
    tensor ((C, H, W) or (H, W)) -> RGB (H, W, 3) uint8, upright (EXIF) for files and PIL images."""
    if isinstance(image, (str, Path)):
        return np.asarray(open_rgb(Path(image)), dtype=np.uint8)
    if isinstance(image, Image.Image):
        return np.asarray(as_rgb(upright(image)), dtype=np.uint8)
    if type(image).__module__.startswith("torch"):
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3, 4):
            image = image.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"cannot score an object of type {type(image).__name__}: expected a path, PIL image, numpy array or tensor"
        )
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(f"cannot score an array of shape {arr.shape}: expected (H, W), (H, W, 3) or (H, W, 4)")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError("cannot score a float array with NaN or infinite values: expected values in [0, 1]")
        low, high = float(arr.min()), float(arr.max())
        if low < 0.0 or high > 1.0:
            raise InputError(
                f"cannot score a float array with values in [{low:g}, {high:g}]: expected [0, 1] "
                "(divide by 255, or pass a uint8 array for 0-255)"
            )
        arr = (arr.astype(np.float64) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise InputError(f"cannot score an array of dtype {arr.dtype}: expected uint8, uint16 or float in [0, 1]")
    return np.asarray(as_rgb(Image.fromarray(arr)), dtype=np.uint8)


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (a phone photo taken sideways lands upright); a no-op without EXIF."""
    try:
        return ImageOps.exif_transpose(img)
    except (ValueError, OSError, SyntaxError, KeyError):  # a broken EXIF block: keep the pixels as stored
        return img


def _upright_rgb(img: Image.Image, label: str) -> Image.Image:
    """``as_rgb(upright(img))`` with a one-line error naming ``label`` for a mode Pillow cannot convert (e.g. LAB)."""
    try:
        return as_rgb(upright(img))
    except (ValueError, OSError) as exc:
        raise InputError(f"{label}: cannot convert this {img.mode} image to RGB ({exc})") from None


def decode_bytes(data: bytes, name: str, max_pixels: int | None = None) -> np.ndarray:
    """An image file's bytes (e.g. an HTTP upload) -> RGB (H, W, 3) uint8, upright; one-line errors naming ``name``;
    more than ``max_pixels`` is refused from the header (:class:`ImageTooLarge`), before decoding."""
    img = _open(io.BytesIO(data), label=name, max_pixels=max_pixels)
    return np.asarray(_upright_rgb(img, name), dtype=np.uint8)


def check_image(path: Path) -> None:
    """Read only the header: a one-line error for a file that is not an image, before any work starts."""
    _open(Path(path), decode=False).close()


def open_rgb(path: Path) -> Image.Image:
    """Read an image of any mode as 8-bit RGB, upright, at its own size; a one-line error for unreadable files."""
    return _upright_rgb(_open(Path(path)), str(path))


def model_input(img: Image.Image, size: int) -> np.ndarray:
    """An RGB image at any size -> the model's input (3, S, S) uint8: bilinear resize, channels first.

    The one resize of training, testing, ``predict`` and ``serve``, so they all see the same pixels.
    """
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def mask_input(path: Path, size: int) -> np.ndarray:
    """A ground-truth mask (non-zero = anomalous) resized to size x size with nearest neighbour. -> (S, S) bool."""
    img = upright(_open(Path(path)))
    arr = np.asarray(img.convert("L") if img.mode not in ("L", "1", "I;16", "I", "F") else img)
    mask = Image.fromarray((arr > 0).astype(np.uint8) * 255)
    if mask.size != (size, size):
        mask = mask.resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(mask) > 127


def as_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 (B, 3, S, S) -> float32 in [0, 1]; float input is passed on as float32."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(images, dtype=np.float32)


def data_uri(array: np.ndarray, fmt: str = "PNG", **options: Any) -> str:
    """An image array (H, W[, 3]) uint8 as a ``data:image/...;base64`` URI, for an HTML page or a JSON answer;
    ``options`` go to Pillow's ``save`` (e.g. ``optimize=True``, ``quality=88``)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **options)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")
