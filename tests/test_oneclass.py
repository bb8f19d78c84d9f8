"""One-class datasets read from tiny stand-ins in the exact file formats (idx, gzip, CIFAR batches)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from anovit.data.oneclass import CIFAR10_CLASSES, blank_share, one_class_data, read_cifar10, read_idx, read_mnist
from anovit.errors import InputError
from anovit.one_class_rule import DRAWING_MIN_BLANK


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def make_mnist(root: Path, n_train_per_class: int = 10, n_test_per_class: int = 3, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, per in (("train", n_train_per_class), ("t10k", n_test_per_class)):
        labels = np.repeat(np.arange(10), per)
        rng.shuffle(labels)
        images = (rng.random((len(labels), 28, 28)) * 50).astype(np.uint8)
        images[:, 4:24, 4:24] += (labels * 20).astype(np.uint8)[:, None, None]  # class-dependent content
        suffix = ".gz" if gz else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)


def make_cifar(root: Path, n_per_batch: int = 20, n_test: int = 30) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_per_batch
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(x) for x in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"{i}.png".encode() for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files(tmp_path: Path, gz: bool) -> None:
    make_mnist(tmp_path, gz=gz)
    images, labels = read_mnist(tmp_path, "train")
    assert images.shape == (100, 1, 28, 28) and images.dtype == torch.uint8
    assert sorted(labels.tolist()) == sorted(list(range(10)) * 10)
    means = [images[labels == c, :, 10, 10].float().mean().item() for c in range(10)]
    assert means == sorted(means)  # images stay paired with their labels
    raw_suffix = ".gz" if gz else ""
    assert read_idx(tmp_path / f"train-labels-idx1-ubyte{raw_suffix}").tolist() == labels.tolist()


def test_mnist_one_class_protocol(tmp_path: Path) -> None:
    make_mnist(tmp_path, n_train_per_class=10, n_test_per_class=3)
    data = one_class_data("mnist", tmp_path, "3", image_size=32)
    assert len(data.train) == 10 and data.val_fraction == 0.2
    assert len(data.test) == 30 and int(data.test.labels.sum()) == 27  # nine anomalous classes
    assert all((s.defect == "3") == (s.label == 0) for s in data.test.samples)
    item = data.train[0]
    assert item["image"].shape == (3, 32, 32)  # grey -> 3 channels, resized
    assert torch.equal(item["image"][0], item["image"][1])


def test_cifar_batches(tmp_path: Path) -> None:
    folder = make_cifar(tmp_path)
    images, labels = read_cifar10(tmp_path, "train")
    assert images.shape == (100, 3, 32, 32) and labels.shape == (100,)
    first = pickle.loads((folder / "data_batch_1").read_bytes())
    assert torch.equal(images[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32)))  # channel-first rows
    data = one_class_data("cifar10", tmp_path, "cat", image_size=32)
    assert data.class_name == "cat" and data.val_fraction == pytest.approx(0.1)  # 4,500 / 500 split
    cat = CIFAR10_CLASSES.index("cat")
    assert len(data.train) == int((labels == cat).sum())
    test_labels = read_cifar10(tmp_path, "test")[1]
    assert torch.equal(data.test.labels, (test_labels != cat).long())


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    folder = make_cifar(tmp_path)

    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(InputError, match="test_batch: not a CIFAR-10 python batch"):
        read_cifar10(tmp_path, "test")


def test_missing_files_say_where_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="train-images-idx3-ubyte.*yann.lecun"):
        read_mnist(tmp_path, "train")
    with pytest.raises(InputError, match="data_batch_1.*cifar.html"):
        read_cifar10(tmp_path, "train")
    make_mnist(tmp_path)
    with pytest.raises(InputError, match="not one of mnist's classes"):
        one_class_data("mnist", tmp_path, "eleven", 32)


def test_digits_split_is_fixed_and_disjoint() -> None:
    data = one_class_data("digits", None, "0", image_size=16)
    n_test_normal = int((data.test.labels == 0).sum())
    assert abs(len(data.train) - n_test_normal) <= 1  # half of the 178 zeros each
    train_all = one_class_data("digits", None, "1", image_size=16)
    assert len(data.test) == len(train_all.test)  # the same test split whatever the normal class
    assert 880 <= len(data.test) <= 910


def test_class_per_folder_tree(tmp_path: Path) -> None:
    from PIL import Image

    for split, n in (("train", 5), ("test", 2)):
        for c, shade in (("cats", 40), ("dogs", 200)):
            folder = tmp_path / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("L" if c == "cats" else "RGB", (20, 20), shade if c == "cats" else (shade,) * 3).save(
                    folder / f"{i}.png"
                )
    data = one_class_data("folder", tmp_path, "dogs", image_size=16)
    assert data.class_name == "dogs" and len(data.train) == 5
    assert data.test.labels.tolist() == [1, 1, 0, 0]  # cats (sorted first) are the anomalies
    assert data.train[0]["image"].mean() > 0.7 and data.test[0]["image"].mean() < 0.2
    with pytest.raises(InputError, match="folder not found"):
        one_class_data("folder", tmp_path / "nope", "dogs", 16)


def test_blank_share_tells_drawings_from_photographs(tmp_path: Path) -> None:
    """What the one-class rule reads: strokes on black (MNIST's files) or on white paper (a folder of sketches) are
    drawings; noise-textured images (the CIFAR-10 and MNIST stand-ins) are not; scikit-learn's real digits are."""
    from PIL import Image

    rng = np.random.default_rng(0)
    strokes = np.zeros((40, 28, 28), np.uint8)  # (N, 28, 28): black with a white bar and a grey one
    strokes[:, 6:22, 12:15] = 255
    strokes[:, 20:23, 5:20] = 128
    (tmp_path / "mnist").mkdir()
    write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte", strokes, gz=False)
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte", np.arange(40) % 10, gz=False)
    assert blank_share("mnist", tmp_path / "mnist") >= 0.8
    make_mnist(tmp_path / "noisy")  # uniform 0..50 with a brighter square
    assert blank_share("mnist", tmp_path / "noisy") < DRAWING_MIN_BLANK
    make_cifar(tmp_path / "cifar")
    assert blank_share("cifar10", tmp_path / "cifar") < 0.05
    assert blank_share("digits", None) >= DRAWING_MIN_BLANK
    for name, background, ink in (("sketch", 255, 0), ("photo", None, None)):
        for c in ("a", "b"):
            (tmp_path / name / "train" / c).mkdir(parents=True)
            for i in range(3):
                if background is None:
                    img = rng.integers(20, 236, (48, 64, 3), dtype=np.uint8)
                else:
                    img = np.full((48, 64, 3), background, np.uint8)
                    img[10 + 5 * i : 14 + 5 * i, 5:60] = ink
                Image.fromarray(img).save(tmp_path / name / "train" / c / f"{i}.png")
    big = np.full((600, 800, 3), 255, np.uint8)  # a scan larger than the 256 px it is shrunk to
    big[100:140, 50:750] = 0
    Image.fromarray(big).save(tmp_path / "sketch" / "train" / "b" / "scan.jpg")
    assert blank_share("folder", tmp_path / "sketch") >= 0.8
    assert blank_share("folder", tmp_path / "photo") < 0.05
    with pytest.raises(InputError, match="no class folders with images"):
        blank_share("folder", tmp_path / "nothing")
