"""The ``torch`` backend: a run's PyTorch model scoring numpy batches like the exported files do.

Kept apart from :mod:`anovit.deploy.backends`, which imports it only when ``--backend torch`` is chosen,
so that the ONNX Runtime and OpenVINO path imports no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from anovit.config import Precision
from anovit.data.images import as_float_images
from anovit.evaluation.evaluate import score_images
from anovit.evaluation.thresholds import scoring_precision
from anovit.models.checkpoint import load_trained_model
from anovit.runtime.device import resolve_device
from anovit.runtime.precision import usable_precision


class TorchScorer:
    """The run's PyTorch model (``model.safetensors``) on ``device`` at ``precision``."""

    def __init__(self, run_dir: Path, device: str = "auto", precision: Precision | None = None) -> None:
        self.device = resolve_device(device)
        self.cfg, self.model = load_trained_model(run_dir, self.device)
        # the precision the run's thresholds were set at, unless told otherwise
        at = scoring_precision(run_dir, precision, self.cfg.train.precision)
        self.precision: Precision = usable_precision(at, self.device)  # type: ignore[arg-type]
        self.image_size = self.cfg.data.image_size
        self.description = f"torch ({self.device}, {self.precision})"

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = score_images(
            self.model, torch.from_numpy(as_float_images(images)), self.cfg.score, self.device, self.precision
        )
        return scores.maps.float().cpu().numpy(), scores.image.float().cpu().numpy()
