"""Decision thresholds: from scores to verdicts (normal / anomalous) and binary masks.

A run carries two thresholds in ``thresholds.json``: one on the image score (from the smoothed
score map: its max, or as the run's ``image_score`` says) and one on the pixel scores. They come from a validation set:

- with anomalous images, the image threshold maximises image-level F1 on it ("f1-max");
  with ground-truth masks too, the pixel threshold maximises pixel-level F1 ("f1-max");
- with normal images only (what training has: its 20 % hold-out), the image threshold is the
  ``quantile`` (default 0.99) of the normal images' scores ("normal-quantile"): about 1 % of
  normal images are flagged; without masks the pixel threshold is the image rule applied to a score on the
  map's own scale ("image-threshold", :func:`anovit.image_score.level_statistic`): the image threshold itself, unless
  the image score has a spread in it (``top1+std``) or reads a position-normalised map
  (``ModelConfig.position_norm``), whose scale the raw map does not share.

An image is anomalous when its score is >= the image threshold. Its mask follows one rule,
whatever the image score (:func:`decision_mask`): an image called normal has an empty mask; an image
called anomalous is masked where its smoothed score is >= the pixel threshold, and at least at its peak.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anovit.errors import InputError
from anovit.files import THRESHOLDS_FILE, write_json

if TYPE_CHECKING:
    from anovit.evaluation.evaluate import Evaluation

DEFAULT_QUANTILE = 0.99


@dataclass(frozen=True)
class Thresholds:
    """The image and pixel thresholds of a run and how they were chosen."""

    image: float
    pixel: float
    image_method: str  # "f1-max" or "normal-quantile"
    pixel_method: str  # "f1-max" or "image-threshold"
    source: str  # the validation images they were computed on
    n_normal: int
    n_anomalous: int
    image_f1: float | None = None  # F1 on the validation set at ``image`` (None without anomalies)
    pixel_f1: float | None = None  # F1 of the pixels at ``pixel`` (None without masks)
    quantile: float | None = None  # for "normal-quantile"
    notes: list[str] = field(default_factory=list)
    precision: str | None = None  # the precision the scores were computed at (fp32, bf16, fp16); None in old runs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The two thresholds and their rules, as quoted in metrics.json and predictions.json."""
        return {
            "image": self.image,
            "pixel": self.pixel,
            "image_method": self.image_method,
            "pixel_method": self.pixel_method,
            "precision": self.precision,
        }


def calibrate(
    evaluation: Evaluation, source: str, quantile: float = DEFAULT_QUANTILE, precision: str | None = None
) -> Thresholds:
    """Thresholds from the scores of a validation set (see the module docstring for the rules); ``precision``:
    the one the scores were computed at, kept with the thresholds so that every backend scores at it."""
    if not 0 < quantile <= 1:
        raise InputError(f"quantile must be in (0, 1], got {quantile}")
    scores, labels = np.asarray(evaluation.image_scores, dtype=np.float64), np.asarray(evaluation.labels).astype(int)
    if len(scores) == 0:
        raise InputError(f"{source}: no validation images to compute thresholds on")
    n_anomalous = int(labels.sum())
    n_normal = len(labels) - n_anomalous
    notes: list[str] = []
    image, image_f1, image_method, q = _image_rule(scores, labels, quantile)
    if image_method == "f1-max" and n_normal == 0:
        notes.append("the validation set has no normal images: the image threshold is the lowest anomalous score")
    if image_method == "normal-quantile":
        notes.append(
            f"the validation set has no anomalous images: the image threshold is the {quantile:g} quantile "
            f"of the {n_normal} normal scores, not an F1 optimum"
        )
    pixel_best = evaluation.pixel_hist.f1_max() if evaluation.pixel_hist is not None else None
    if pixel_best is not None:
        pixel_f1, pixel, pixel_method = pixel_best[0], pixel_best[1], "f1-max"
    else:
        peaks = scores if evaluation.map_peaks is None else np.asarray(evaluation.map_peaks, dtype=np.float64)
        pixel_f1, pixel, pixel_method = None, _image_rule(peaks, labels, quantile)[0], "image-threshold"
        notes.append(
            "no ground-truth masks: the pixel threshold is the image threshold"
            if np.array_equal(peaks, scores)
            else "no ground-truth masks: the pixel threshold is the image rule on the raw maps' level (the part of "
            "the image score on the map's scale), as the image score is not on it"
        )
    return Thresholds(
        image=image,
        pixel=pixel,
        image_method=image_method,
        pixel_method=pixel_method,
        source=source,
        n_normal=n_normal,
        n_anomalous=n_anomalous,
        image_f1=image_f1,
        pixel_f1=pixel_f1,
        quantile=q,
        notes=notes,
        precision=precision,
    )


def _image_rule(
    scores: np.ndarray, labels: np.ndarray, quantile: float
) -> tuple[float, float | None, str, float | None]:
    """(threshold, its F1 or None, method, quantile or None): the F1 optimum with anomalous images, else the
    ``quantile`` of the normal scores."""
    # late: scikit-learn, which predict does without
    from anovit.evaluation.metrics import image_f1_max

    best = image_f1_max(scores, labels)
    if best is not None:
        return best[1], best[0], "f1-max", None
    return float(np.quantile(scores, quantile)), None, "normal-quantile", quantile


def decision_mask(score_map: np.ndarray, anomalous: bool, pixel_threshold: float) -> np.ndarray:
    """The mask of one image (H, W) bool under the verdict: empty when the image is called normal, else the
    pixels at or above the pixel threshold, and at least the map's peak (the top-1 % or mean image score can
    call an image anomalous while no single pixel reaches a higher pixel threshold)."""
    score_map = np.asarray(score_map)
    if not anomalous:
        return np.zeros(score_map.shape, dtype=bool)
    return score_map >= min(float(pixel_threshold), float(score_map.max()))


def scoring_precision(run_dir: Path, requested: str | None, fallback: str = "auto") -> str:
    """The precision to score a run at: the one asked for, else the one its thresholds were set at
    (``thresholds.json``), else ``fallback`` (the run's training precision, for runs without thresholds)."""
    if requested is not None:
        return requested
    path = Path(run_dir) / THRESHOLDS_FILE
    recorded = load_thresholds(Path(run_dir)).precision if path.is_file() else None
    return recorded or fallback


def save_thresholds(run_dir: Path, thresholds: Thresholds) -> Path:
    path = Path(run_dir) / THRESHOLDS_FILE
    write_json(path, thresholds.to_dict())
    return path


def load_thresholds(run_dir: Path) -> Thresholds:
    """The run's thresholds; a clear error when the run has none or the file is damaged."""
    path = Path(run_dir) / THRESHOLDS_FILE
    if not path.is_file():
        raise InputError(
            f"{path}: not found; this run has no thresholds yet: run 'anovit calibrate --run {run_dir} --val DIR'"
        )
    try:
        data = json.loads(path.read_text())
        return Thresholds(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise InputError(f"{path}: not a thresholds file written by anovit ({exc})") from None


def decision_metrics(evaluation: Evaluation, thresholds: Thresholds) -> dict[str, Any]:
    """F1 of a test set at the run's thresholds (what a user of those thresholds gets)."""
    from anovit.evaluation.metrics import image_f1_at

    hist = evaluation.pixel_hist
    return {
        "image_f1": image_f1_at(evaluation.image_scores, evaluation.labels, thresholds.image),
        "pixel_f1": hist.f1_at(thresholds.pixel) if hist is not None else None,
        "thresholds": thresholds.summary(),
    }
