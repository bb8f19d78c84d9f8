"""One-class datasets (paper, section 4.1.1): one class is normal, the other nine anomalous.

Readers for the files a user already has, no download:

- MNIST idx files ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]`` (in ROOT, ROOT/raw or ROOT/MNIST/raw);
- CIFAR-10 python batches ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch`` (in ROOT or
  ROOT/cifar-10-batches-py), read with an unpickler that only rebuilds numpy arrays;
- a class-per-folder tree ``ROOT/{train,test}/<class>/*.png`` (torchvision's ImageFolder layout);
- scikit-learn's 8 x 8 handwritten digits (``load_digits``), split 50/50 per class with a fixed seed.

The normal class's training images are split into train and validation (80/20 for MNIST and
folders, 4500/500 for CIFAR-10); the test set is the whole test split, label 1 = another class.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from anovit.data import ONE_CLASS_DATASETS as DATASETS
from anovit.data.datasets import as_float_tensor, load_image
from anovit.data.images import list_images, model_input, open_rgb
from anovit.data.mvtec import Sample
from anovit.errors import InputError

MNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MNIST_URL_HINT = "get them from https://yann.lecun.com/exdb/mnist/ or torchvision.datasets.MNIST(ROOT, download=True)"
CIFAR_URL_HINT = "get cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it in ROOT"


class ArrayImageDataset(Dataset):
    """Images held at their native size (N, C, h, w) uint8, resized to ``image_size`` on access.

    Serves the same items as :class:`ImageDataset` (``image`` (3, S, S) float in [0, 1],
    ``label``, ``index``), without masks.
    """

    has_masks = False

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        image_size: int,
        samples: list[Sample],
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be (N, C, h, w) uint8, got {tuple(images.shape)} {images.dtype}")
        self.images, self.labels, self.image_size = images, labels.long(), image_size
        self.samples, self.augment = samples, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image = self.images[i]  # (C, h, w)
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)  # grey -> 3 channels
        if image.shape[-1] != self.image_size or image.shape[-2] != self.image_size:
            rgb = Image.fromarray(image.permute(1, 2, 0).numpy())  # (h, w, 3)
            image = torch.from_numpy(model_input(rgb, self.image_size))  # (3, S, S), as predict and serve resize
        if self.augment is not None:
            image = self.augment(image)
        return {"image": as_float_tensor(image), "label": self.labels[i], "index": torch.tensor(i)}

    def subset(
        self, indices: list[int], augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> ArrayImageDataset:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return ArrayImageDataset(
            self.images[idx], self.labels[idx], self.image_size, [self.samples[i] for i in idx.tolist()], augment
        )


@dataclass
class OneClassData:
    """The normal class's training images (train + validation are split later) and the labelled test set."""

    train: ArrayImageDataset
    test: ArrayImageDataset
    val_fraction: float
    class_name: str


# ---------------------------------------------------------------------------------------------
# Readers: (images (N, C, h, w) uint8, labels (N,) int64)
# ---------------------------------------------------------------------------------------------
def _find(root: Path, names: tuple[str, ...], hint: str) -> Path:
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise InputError(f"{root}: no {' or '.join(names)} found (also looked in raw/ and MNIST/raw/); {hint}")


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (MNIST's format), gzipped or not."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise InputError(f"{path}: not an idx file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise InputError(f"{path}: truncated idx file (header says {dims}, found {data.size} bytes)")
    return data.reshape(dims)


def read_mnist(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = "train" if split == "train" else "t10k"
    img_path = _find(Path(root), (f"{prefix}-images-idx3-ubyte", f"{prefix}-images-idx3-ubyte.gz"), MNIST_URL_HINT)
    lab_path = _find(Path(root), (f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels-idx1-ubyte.gz"), MNIST_URL_HINT)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise InputError(
            f"{img_path}: expected N x 28 x 28 images matching {lab_path.name}, got {images.shape} and {labels.shape}"
        )
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR-10's batches are pickles: rebuild numpy arrays and nothing else (no code runs)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol < 3; only converts text to bytes
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise InputError(f"{path}: expected an N x 3072 'data' array and N labels, got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(root)
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise InputError(f"{folder}: missing CIFAR-10 batch files {', '.join(missing)}; {CIFAR_URL_HINT}")
    parts = [_read_cifar_batch(folder / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


def read_digits(split: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits (8 x 8, values 0..16), a fixed 50/50 split per class."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0) + 0.5, 0, 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(10):
        idx = np.flatnonzero(digits.target == c)
        rng.shuffle(idx)
        half = len(idx) // 2
        chosen.append(idx[:half] if split == "train" else idx[half:])
    sel = np.sort(np.concatenate(chosen))
    return torch.from_numpy(images[sel]).unsqueeze(1), torch.from_numpy(digits.target[sel].astype(np.int64))


def read_class_folders(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """ROOT/<split>/<class>/* -> images resized to the first image's size; classes sorted by name."""
    base = Path(root) / split
    if not base.is_dir():
        raise InputError(f"{base}: folder not found (expected ROOT/train/<class>/ and ROOT/test/<class>/)")
    classes = tuple(sorted(p.name for p in base.iterdir() if p.is_dir()))
    if not classes:
        raise InputError(f"{base}: no class folders")
    files = [(f, c) for c, name in enumerate(classes) for f in list_images(base / name)]
    if not files:
        raise InputError(f"{base}: no image files in its class folders")

    with Image.open(files[0][0]) as first:
        size = max(first.size)
    images = torch.stack([load_image(f, size) for f, _ in files])
    return images, torch.tensor([c for _, c in files]), classes


# ---------------------------------------------------------------------------------------------


def class_names(dataset: str, root: Path | None = None) -> tuple[str, ...]:
    if dataset in ("mnist", "digits"):
        return MNIST_CLASSES
    if dataset == "cifar10":
        return CIFAR10_CLASSES
    if dataset == "folder":
        base = Path(root or ".") / "train"
        if not base.is_dir():
            raise InputError(f"{base}: folder not found (expected ROOT/train/<class>/)")
        return tuple(sorted(p.name for p in base.iterdir() if p.is_dir()))
    raise InputError(f"unknown one-class dataset {dataset!r}; expected one of {DATASETS}")


NATIVE_SIZES = {"mnist": 28, "cifar10": 32, "digits": 8}


def native_size(dataset: str, root: Path | None) -> int:
    """The side of a one-class dataset's images as stored: fixed for MNIST, CIFAR-10 and digits; a class-per-folder
    tree's first training image (its header only) for ``folder``."""
    if dataset in NATIVE_SIZES:
        return NATIVE_SIZES[dataset]
    with Image.open(_training_files(root)[0]) as img:
        return max(img.size)


BLANK_LEVELS = 8  # grey levels (of 255) from pure black or pure white that still count as blank background
BLANK_SAMPLE = 256  # training images read to measure it


def blank_share(dataset: str, root: Path | None) -> float:
    """How much of a typical training image is blank background: the median, over up to :data:`BLANK_SAMPLE` images
    spread evenly over the training split, of the share of an image's pixels whose grey level (the channels' mean)
    is within :data:`BLANK_LEVELS` of black or of white, whichever is larger. Drawings on paper or screen score
    high (MNIST ~0.8), photographs near 0."""
    if dataset == "folder":
        files = _training_files(root)
        picked = [files[i] for i in _spread(len(files))]
        grey = [np.asarray(_at_most(open_rgb(f), 256), dtype=np.float32).mean(-1).ravel() for f in picked]  # (h*w,)
    else:
        readers: dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]] = {
            "mnist": lambda: read_mnist(Path(root or "."), "train"),
            "cifar10": lambda: read_cifar10(Path(root or "."), "train"),
            "digits": lambda: read_digits("train"),
        }
        if dataset not in readers:
            raise InputError(f"unknown one-class dataset {dataset!r}; expected one of {DATASETS}")
        images = readers[dataset]()[0]  # (N, C, h, w) uint8
        grey = list(images[_spread(len(images))].float().mean(1).flatten(1).numpy())
    shares = [max(float((g <= BLANK_LEVELS).mean()), float((g >= 255 - BLANK_LEVELS).mean())) for g in grey]
    return float(np.median(shares))


def _at_most(img: Image.Image, side: int) -> Image.Image:
    """``img`` shrunk to fit ``side`` x ``side`` if larger (a blank background stays blank; decoding stays quick)."""
    if max(img.size) > side:
        img.thumbnail((side, side))
    return img


def _spread(n: int) -> np.ndarray:
    """Up to :data:`BLANK_SAMPLE` indices spread evenly over ``range(n)`` (sorted splits hold one class per run)."""
    return np.unique(np.linspace(0, n - 1, min(n, BLANK_SAMPLE)).round().astype(np.int64))


def _training_files(root: Path | None) -> list[Path]:
    """The image files of a class-per-folder tree's training split, class by class."""
    base = Path(root or ".") / "train"
    files = [f for c in sorted(base.iterdir()) if c.is_dir() for f in list_images(c)] if base.is_dir() else []
    if not files:
        raise InputError(f"{base}: no class folders with images (expected ROOT/train/<class>/*.png)")
    return files


def one_class_data(dataset: str, root: Path | None, normal: str, image_size: int) -> OneClassData:
    """Normal class ``normal`` (a name or index) of ``dataset``: its training images and the labelled test set."""
    names = class_names(dataset, root)
    if normal in names:
        c = names.index(normal)
    elif normal.isdigit() and int(normal) < len(names):
        c = int(normal)
    else:
        raise InputError(f"class {normal!r} is not one of {dataset}'s classes: {', '.join(names)}")
    val_fraction = 0.2
    if dataset == "mnist":
        (tr_x, tr_y), (te_x, te_y) = read_mnist(root, "train"), read_mnist(root, "test")
    elif dataset == "cifar10":
        (tr_x, tr_y), (te_x, te_y) = read_cifar10(root, "train"), read_cifar10(root, "test")
        val_fraction = 500 / 5000  # the paper: 4,500 train and 500 validation images per class
    elif dataset == "digits":
        (tr_x, tr_y), (te_x, te_y) = read_digits("train"), read_digits("test")
    else:
        tr_x, tr_y, _ = read_class_folders(root, "train")
        te_x, te_y, _ = read_class_folders(root, "test")
    keep = torch.nonzero(tr_y == c).flatten()
    if len(keep) == 0:
        raise InputError(f"{dataset}: no training images of class {names[c]!r}")
    train_samples = [Sample(Path(f"{dataset}/train/{int(i):05d}"), 0, None, names[c]) for i in keep]
    test_labels = (te_y != c).long()
    test_samples = [
        Sample(Path(f"{dataset}/test/{i:05d}"), int(label), None, names[int(y)])
        for i, (label, y) in enumerate(zip(test_labels, te_y))
    ]
    return OneClassData(
        train=ArrayImageDataset(tr_x[keep], torch.zeros(len(keep), dtype=torch.long), image_size, train_samples),
        test=ArrayImageDataset(te_x, test_labels, image_size, test_samples),
        val_fraction=val_fraction,
        class_name=names[c],
    )
