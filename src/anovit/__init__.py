"""anovit: AnoViT (Lee & Kang, 2022) anomaly detection and localisation, with the l2-CAE baseline.

    import anovit

    run = anovit.load_run("runs/bottle-anovit")         # or anovit.train(data, category, out, ...)
    results = run.predict(["a.png", "b.jpg"])            # paths, PIL images, numpy arrays or tensors
"""

from __future__ import annotations

from typing import Any

from .config import DataConfig, ModelConfig, RunConfig, ScoreConfig, TrainConfig
from .errors import InputError
from .presets import PRESETS, resolve_config

__version__ = "0.1.0"

__all__ = ["PRESETS", "DataConfig", "ImageResult", "InputError", "ModelConfig", "Run", "RunConfig", "ScoreConfig", "TrainConfig",
           "load_run", "resolve_config", "train"]  # fmt: skip

_API = ("ImageResult", "Run", "load_run", "train")


def __getattr__(name: str) -> Any:
    """The API of :mod:`anovit.api`, imported on first use (``import anovit`` stays light)."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
