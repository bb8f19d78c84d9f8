"""``benchmarks/class_folders.py``: real photographs as class-per-folder one-class sets (``--dataset folder``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anovit.data.oneclass import class_names, native_size, one_class_data

from .conftest import benchmark_script

pytest.importorskip("skimage")
class_folders = benchmark_script("class_folders")


def test_faces_are_two_classes_split_in_disjoint_halves(tmp_path: Path) -> None:
    root = class_folders.make_faces(tmp_path)
    assert class_names("folder", root) == ("face", "nonface") and native_size("folder", root) == 25
    for name in ("face", "nonface"):
        train = {p.name for p in (root / "train" / name).iterdir()}
        test = {p.name for p in (root / "test" / name).iterdir()}
        assert len(train) == len(test) == 50 and not train & test
    data = one_class_data("folder", root, "nonface", 32)
    assert len(data.train) == 50 and len(data.test) == 100 and int(data.test.labels.sum()) == 50
    assert data.train[0]["image"].shape == (3, 32, 32)


def test_scenes_are_one_class_per_photograph_at_cifar_size(tmp_path: Path) -> None:
    root = class_folders.make_scenes(tmp_path, n_train=3, n_test=2)
    assert class_names("folder", root) == tuple(sorted(class_folders.SCENES))
    assert native_size("folder", root) == class_folders.SIZE == 32
    data = one_class_data("folder", root, "coins", 32)
    assert len(data.train) == 3 and len(data.test) == 2 * len(class_folders.SCENES)
    assert int(data.test.labels.sum()) == 2 * (len(class_folders.SCENES) - 1)  # every other photograph is anomalous
