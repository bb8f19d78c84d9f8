"""Training objectives: what the model sees and what it must output (``TrainConfig.objective``).

- ``reconstruct`` (the paper): the image in, the same image out.
- ``inpaint`` (after RIAD and InTra): a random share of the patches (``mask_ratio``) is replaced by
  a learned mask token inside the encoder; the model still outputs the whole image, so it learns
  to predict hidden patches from their context. At test time ``ScoreConfig.test_masks`` hides
  every patch once (:func:`anovit.scoring.reconstruct`), so no pixel is reconstructed from itself.
- ``restore`` (after DRAEM, with no outside data): a synthetic anomaly
  (:mod:`anovit.data.anomalies`) is planted in ``anomaly_fraction`` of the images and the clean
  image is the target, so copying the input is no longer the answer.

Each objective is a function ``(model, images, generator) -> (output, target)``; the loss is the
paper's L2 between them, plus, with ``TrainConfig.feature_loss`` w > 0, w times the distance of
their patch features in the frozen reference encoder (:func:`feature_loss`): L2 alone rewards a blurred
average image, which then differs from every sharp normal image in the features the ``feature``
score compares.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .data.anomalies import synthesize

Objective = Callable[[nn.Module, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def reconstruct(model: nn.Module, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return model(images), images  # (B, 3, H, W) x2


def _grid(model: nn.Module) -> tuple[int, int]:
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    return inner.grid


def inpaint_with(mask_ratio: tuple[float, float]) -> Objective:
    lo, hi = mask_ratio

    def inpaint(model: nn.Module, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        b = images.shape[0]
        gh, gw = _grid(model)
        n = gh * gw
        ratio = lo + (hi - lo) * float(torch.rand((), generator=generator))
        k = max(1, min(n - 1, round(ratio * n)))
        order = torch.rand(b, n, generator=generator).argsort(dim=1)  # a random ranking of the patches per image
        hidden = (order < k).to(images.device)  # (B, N): k hidden patches per image
        return model(images, hidden), images

    return inpaint


def restore_with(anomaly_fraction: float) -> Objective:
    def restore(model: nn.Module, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        corrupted, _ = synthesize(images.float(), generator, anomaly_fraction)  # (B, 3, H, W), (B, H, W)
        return model(corrupted.to(images.dtype)), images

    return restore


def feature_loss(model: nn.Module, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the reference encoder's layers and patches of 1 - cosine(features(output), features(target))."""
    reference = getattr(getattr(model, "module", model), "reference", None)
    if reference is None:
        raise ValueError("feature_loss needs a model with a reference encoder (ModelConfig.reference_layers)")
    with torch.no_grad():
        wanted = reference(target)  # [(B, D, gh, gw)]
    got = reference(output.to(target.dtype))
    return torch.stack([(1 - F.cosine_similarity(a.float(), b.float(), dim=1)).mean() for a, b in zip(got, wanted)]).mean()


def build_objective(cfg: TrainConfig) -> Objective:
    if cfg.objective == "reconstruct":
        return reconstruct
    if cfg.objective == "inpaint":
        return inpaint_with(tuple(cfg.mask_ratio))
    if cfg.objective == "restore":
        return restore_with(cfg.anomaly_fraction)
    raise ValueError(f"unknown objective {cfg.objective!r}")
