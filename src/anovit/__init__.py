"""anovit: AnoViT (Lee & Kang, 2022) anomaly detection and localisation, with the l2-CAE baseline."""

from .config import PRESETS, DataConfig, ModelConfig, RunConfig, ScoreConfig, TrainConfig, resolve_config
from .errors import InputError

__version__ = "0.1.0"

__all__ = ["PRESETS", "DataConfig", "InputError", "ModelConfig", "RunConfig", "ScoreConfig", "TrainConfig", "resolve_config"]
