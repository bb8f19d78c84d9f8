"""Measure a model's position norm (``ModelConfig.position_norm``) on normal images, and their image scores as
images the statistics have not seen (leave-one-out), for the thresholds set on the same images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from anovit.config import Precision, ScoreConfig
from anovit.evaluation.evaluate import Evaluation, evaluate
from anovit.models.position import PositionNorm
from anovit.scoring.maps import image_scores
from anovit.scoring.position import fit_position_stats, leave_one_out_maps


def fit_position_norm(
    model: nn.Module,
    normal: Dataset,
    score: ScoreConfig,
    device: torch.device,
    precision: Precision = "fp32",
    progress: bool = True,
) -> Evaluation:
    """Fill ``model.position`` with the statistics of the raw score maps of ``normal`` (at least
    :data:`anovit.scoring.position.MIN_IMAGES` normal images); returns their :class:`Evaluation` with leave-one-out
    image scores (each image standardised by the others' statistics), on which thresholds are not biased low."""
    norm = getattr(model, "position", None)
    if not isinstance(norm, PositionNorm):
        raise ValueError("fit_position_norm needs a model built with ModelConfig.position_norm")
    norm.reset()  # the maps measured are the raw ones; the image scores below are computed again
    result = evaluate(model, normal, score, device, precision, keep_maps=range(len(normal)), progress=progress)
    maps = torch.stack([torch.from_numpy(result.maps[i]) for i in range(len(normal))])  # (N, S, S)
    fit_position_stats(norm, maps.to(norm.mean.device))
    held_out = image_scores(leave_one_out_maps(maps), score.border, score.image_score)  # (N,)
    return replace(result, image_scores=held_out.numpy().astype(np.float64), maps={})
