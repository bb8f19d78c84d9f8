"""Data: the MVTec AD layout, in-memory datasets, augmentations and the built-in synthetic set.

Names are imported on first use (PEP 562), so that reading images and folders (``data.images``,
``data.mvtec``) does not import torch: the deployment path of ``predict`` runs without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "ImageDataset": "datasets",
    "split_train_val": "datasets",
    "load_image": "datasets",
    "load_mask": "datasets",
    "Sample": "mvtec",
    "labelled_folder_samples": "mvtec",
    "mvtec_samples": "mvtec",
    "make_synthetic_mvtec": "synthetic",
}

__all__ = sorted(_WHERE)

MVTEC = "mvtec"  # the MVTec AD folder layout
ONE_CLASS_DATASETS: tuple[str, ...] = ("mnist", "cifar10", "digits", "folder")  # one class normal, the others anomalous
DATASETS: tuple[str, ...] = (MVTEC, *ONE_CLASS_DATASETS)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
