"""``anovit export``: the trained model plus scoring as one ONNX graph.

The graph takes ``images`` (B, 3, S, S) float32 RGB in [0, 1] (S = the run's image size) and
returns ``score_map`` (B, S, S), the Gaussian-smoothed per-pixel squared error averaged over
channels, and ``image_score`` (B,), the max of each map: the same numbers ``anovit test`` and
``anovit predict`` compute. The batch size is dynamic. The run's thresholds go beside it in the
model's metadata (``image_threshold``, ``pixel_threshold``) when the run has them.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checkpoint as ckpt
from .config import ScoreConfig
from .errors import InputError
from .scoring import score_maps
from .thresholds import THRESHOLDS_FILE, load_thresholds

log = logging.getLogger(__name__)

OPSET = 18


class ScoringModel(nn.Module):
    """Reconstruction model + scoring: images (B, 3, S, S) -> (score maps (B, S, S), image scores (B,))."""

    def __init__(self, model: nn.Module, score: ScoreConfig) -> None:
        super().__init__()
        self.model = model
        self.sigma, self.truncate = score.sigma, score.truncate

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = score_maps(images, self.model(images), self.sigma, self.truncate)
        return scores.maps, scores.image


@dataclass(frozen=True)
class Export:
    """The written file and, when onnxruntime is installed, its largest deviation from PyTorch."""

    path: Path
    map_error: float | None = None  # max |ONNX - PyTorch| over the score maps of a random batch
    score_error: float | None = None  # the same for the image scores


def check_parity(scorer: nn.Module, path: Path, images: torch.Tensor) -> tuple[float, float]:
    """Run the ONNX file with onnxruntime and PyTorch on ``images`` (B, 3, S, S): max abs differences (maps, scores)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_maps, onnx_scores = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        maps, scores = scorer(images)
    return float(np.abs(onnx_maps - maps.numpy()).max()), float(np.abs(onnx_scores - scores.numpy()).max())


def export_onnx(run_dir: Path, out: Path | None = None, opset: int = OPSET, verify: bool = True) -> Export:
    """Write ``model.onnx`` (default: in the run folder), check it, and compare it with PyTorch when onnxruntime is there."""
    try:
        import onnx
    except ImportError:
        raise InputError("ONNX export needs the onnx package: pip install 'anovit[export]'") from None
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "model.onnx"
    cfg, model = ckpt.load_trained_model(run_dir, "cpu")
    scorer = ScoringModel(model, cfg.score).eval()
    size = cfg.data.image_size
    example = torch.rand(2, 3, size, size)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on timm's shape asserts
            torch.onnx.export(
                scorer, (example,), str(tmp), input_names=["images"], output_names=["score_map", "image_score"],
                dynamic_axes={"images": {0: "batch"}, "score_map": {0: "batch"}, "image_score": {0: "batch"}},
                opset_version=opset, dynamo=False,
            )  # fmt: skip
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        meta = {"anovit_model": cfg.model.name, "image_size": str(size), "sigma": str(cfg.score.sigma),
                "input": "RGB float32 in [0, 1], (batch, 3, image_size, image_size)"}  # fmt: skip
        if (run_dir / THRESHOLDS_FILE).is_file():
            t = load_thresholds(run_dir)
            meta |= {"image_threshold": repr(t.image), "pixel_threshold": repr(t.pixel)}
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))

    ckpt.atomic_write(out, write)
    log.info("exported %s to %s", cfg.model.name, out)
    if not verify or importlib.util.find_spec("onnxruntime") is None:
        return Export(out)
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0))  # another batch size than traced
    return Export(out, *check_parity(scorer, out, images))
