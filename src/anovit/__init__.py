"""anovit: AnoViT (Lee & Kang, 2022) anomaly detection and localisation, with the l2-CAE baseline.

import anovit

run = anovit.load_run("runs/bottle-anovit")         # or anovit.train(data, category, out, ...)
results = run.predict(["a.png", "b.jpg"])            # paths, PIL images, numpy arrays or tensors
"""

from __future__ import annotations

import importlib
from typing import Any

from anovit.config import DataConfig, ModelConfig, RunConfig, ScoreConfig, TrainConfig
from anovit.errors import InputError
from anovit.presets import PRESETS
from anovit.resolve import resolve_config

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "DataConfig",
    "ImageResult",
    "InputError",
    "ModelConfig",
    "Run",
    "RunConfig",
    "ScoreConfig",
    "TrainConfig",
    "load_run",
    "resolve_config",
    "train",
]

# the rest of the public API, imported on first use (``import anovit`` stays light and torch-free)
_API = {
    "ImageResult": "anovit.deploy.api",
    "Run": "anovit.deploy.api",
    "load_run": "anovit.deploy.api",
    "train": "anovit.runs.train",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
