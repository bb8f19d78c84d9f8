"""The public Python API: load a trained run once, then score images from anywhere.

    import anovit

    run = anovit.load_run("runs/bottle-anovit")               # backend="onnxruntime" / "openvino" too
    for r in run.predict(["a.png", pil_image, numpy_array]):
        print(r.score, r.verdict, r.anomalous_fraction)      # r.anomaly_map (H, W), r.mask (H, W)

    run = anovit.train("~/data/mvtec", "bottle", "runs/bottle-anovit", preset="tiny")

``anovit predict``, ``anovit serve`` and a notebook all go through :meth:`Run.predict` /
:meth:`Run.score_rgb`, so they give the same numbers for the same image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anovit.config import Precision, RunConfig
from anovit.data.images import model_input, to_rgb
from anovit.deploy.backends import Backend, Scorer, load_scorer
from anovit.evaluation.thresholds import Thresholds, decision_mask, load_thresholds


@dataclass(frozen=True)
class ImageResult:
    """One scored image. ``anomaly_map`` is the smoothed score map resized to the image's own size."""

    score: float
    anomalous: bool
    anomaly_map: np.ndarray  # (H, W) float32
    mask: np.ndarray  # (H, W) bool: empty for a normal image, else anomaly_map >= the pixel threshold (decision_mask)
    width: int
    height: int

    @property
    def verdict(self) -> str:
        return "anomalous" if self.anomalous else "normal"

    @property
    def anomalous_fraction(self) -> float:
        return float(self.mask.mean())


def resize_map(score_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a map (S, S') to (H, W), half-pixel centres, as ``F.interpolate(...,
    align_corners=False)``."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), (src - i0)

    m = np.asarray(score_map, dtype=np.float64)
    r0, r1, wr = axis(m.shape[0], height)
    c0, c1, wc = axis(m.shape[1], width)
    rows = m[r0] * (1 - wr)[:, None] + m[r1] * wr[:, None]  # (H, S')
    return (rows[:, c0] * (1 - wc) + rows[:, c1] * wc).astype(np.float32)  # (H, W)


class Run:
    """A trained run loaded once: its configuration, thresholds and a scorer on one backend."""

    def __init__(self, run_dir: Path, scorer: Scorer, thresholds: Thresholds, config: RunConfig) -> None:
        self.run_dir, self.scorer, self.thresholds, self.config = Path(run_dir), scorer, thresholds, config

    @property
    def image_size(self) -> int:
        return self.scorer.image_size

    @property
    def name(self) -> str:
        return self.run_dir.name

    def score_rgb(self, images: Sequence[np.ndarray]) -> list[ImageResult]:
        """Score RGB images (H, W, 3) uint8 of any sizes in one batch."""
        if not images:
            return []
        maps, scores = self.scorer(
            np.stack([model_input(Image.fromarray(rgb), self.image_size) for rgb in images])
        )  # (B, S, S), (B,)
        out = []
        for rgb, score_map, score in zip(images, maps, scores.tolist()):
            h, w = rgb.shape[:2]
            full = resize_map(score_map, h, w)  # (H, W)
            anomalous = score >= self.thresholds.image
            mask = decision_mask(full, anomalous, self.thresholds.pixel)
            out.append(ImageResult(float(score), anomalous, full, mask, w, h))
        return out

    def predict(self, images: Any | Sequence[Any], batch_size: int = 8) -> list[ImageResult]:
        """Score images given as paths, PIL images, numpy arrays or tensors (one or a list); one result each, in
        order."""
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        results: list[ImageResult] = []
        for start in range(0, len(items), batch_size):
            results += self.score_rgb([to_rgb(x) for x in items[start : start + batch_size]])
        return results

    def info(self) -> dict[str, Any]:
        """What a client needs to know about the run (GET /v1/runs)."""
        return {
            "name": self.name,
            "model": self.config.model.name,
            "image_size": self.image_size,
            "backend": self.scorer.description,
            "thresholds": self.thresholds.summary(),
            "config": self.config.to_dict(),
        }


def load_run(
    run_dir: str | Path,
    backend: Backend = "torch",
    model_file: str | Path | None = None,
    device: str = "auto",
    precision: Precision | None = None,
) -> Run:
    """Load a run folder written by ``anovit train`` (and ``anovit export`` for the other backends)."""
    run_dir = Path(run_dir)
    thresholds = load_thresholds(run_dir)
    scorer = load_scorer(run_dir, backend, Path(model_file) if model_file is not None else None, device, precision)
    return Run(run_dir, scorer, thresholds, RunConfig.load(run_dir / "config.json"))
