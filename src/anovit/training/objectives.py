"""Training objectives: what the model sees and what it must output (``TrainConfig.objective``).

- ``reconstruct`` (the paper): the image in, the same image out.
- ``inpaint`` (after RIAD and InTra): a random share of the patches (``mask_ratio``) is replaced by
  a learned mask token inside the encoder; the model still outputs the whole image, so it learns
  to predict hidden patches from their context. At test time ``ScoreConfig.test_masks`` hides
  every patch once (:func:`anovit.scoring.maps.reconstruct`), so no pixel is reconstructed from itself.
- ``restore`` (after DRAEM, with no outside data): a synthetic anomaly
  (:mod:`anovit.training.anomalies`) is planted in ``anomaly_fraction`` of the images and the clean
  image is the target, so copying the input is no longer the answer.
- ``tokens`` (after Dinomaly): no pixels; a decoder gives back the frozen encoder's middle-block tokens
  through a noisy bottleneck (:class:`anovit.models.tokens.TokenAnoViT`), its loss is the model's own.

Each objective is a function ``(model, images, generator) -> Step``; the loss is the paper's L2
between the step's output and target, plus, with ``TrainConfig.feature_loss`` w > 0, w times the
distance of their patch features in the frozen reference encoder (:func:`feature_loss`): L2 alone
rewards a blurred average image, which then differs from every sharp normal image in the features
the ``feature`` score compares. A model with a segmentation head adds its focal loss on the
synthetic anomalies' masks (:func:`segmentation_loss`, ``restore`` only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from anovit.config import TrainConfig
from anovit.scoring.similarity import patch_distance
from anovit.training.anomalies import synthesize, visible_change


class Step(NamedTuple):
    """One batch through an objective: the model's ``output`` and its ``target`` (B, 3, H, W), the
    ``inputs`` it saw (B, 3, H, W), for ``restore`` the synthetic anomalies' ``mask`` (B, H, W), and for
    ``tokens``, which outputs no pixels, its own ``loss`` (then ``output`` and ``target`` are the inputs)."""

    output: torch.Tensor
    target: torch.Tensor
    inputs: torch.Tensor
    mask: torch.Tensor | None = None
    loss: torch.Tensor | None = None


Objective = Callable[[nn.Module, torch.Tensor, torch.Generator], Step]


def reconstruct(model: nn.Module, images: torch.Tensor, generator: torch.Generator) -> Step:
    return Step(model(images), images, images)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel wraps the model


def inpaint_with(mask_ratio: tuple[float, float]) -> Objective:
    lo, hi = mask_ratio

    def inpaint(model: nn.Module, images: torch.Tensor, generator: torch.Generator) -> Step:
        b = images.shape[0]
        gh, gw = _unwrap(model).grid
        n = gh * gw
        ratio = lo + (hi - lo) * float(torch.rand((), generator=generator))
        k = max(1, min(n - 1, round(ratio * n)))
        order = torch.rand(b, n, generator=generator).argsort(dim=1)  # a random ranking of the patches per image
        hidden = (order < k).to(images.device)  # (B, N): k hidden patches per image
        return Step(model(images, hidden), images, images)

    return inpaint


def restore_with(anomaly_fraction: float, fills: tuple[str, ...]) -> Objective:
    def restore(model: nn.Module, images: torch.Tensor, generator: torch.Generator) -> Step:
        corrupted, mask = synthesize(images.float(), generator, anomaly_fraction, fills)  # (B, 3, H, W), (B, H, W)
        corrupted = corrupted.to(images.dtype)
        return Step(model(corrupted), images, corrupted, mask)

    return restore


def tokens_with(easy_share: float, cached: bool = False) -> Objective:
    """The tokens objective on images or, ``cached``, on their targets (anovit.training.token_cache)."""

    def tokens(model: nn.Module, images: torch.Tensor, generator: torch.Generator) -> Step:
        if not hasattr(_unwrap(model), "pairs"):
            raise ValueError("the tokens objective needs a model built with token_decoder_depth > 0")
        return Step(images, images, images, loss=model(images, easy_share=easy_share, cached=cached))

    return tokens


def feature_loss(model: nn.Module, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the reference encoder's layers and patches of 1 - cosine(features(output), features(target))."""
    reference = getattr(_unwrap(model), "reference", None)
    if reference is None:
        raise ValueError("feature_loss needs a model with a reference encoder (ModelConfig.reference_layers)")
    with torch.no_grad():
        wanted = reference(target)  # [(B, D, gh, gw)]
    got = reference(output.to(target.dtype))  # [(B, D, gh, gw)]
    return patch_distance(got, wanted).mean()


def segmentation_loss(model: nn.Module, step: Step) -> torch.Tensor | None:
    """Focal loss (gamma 2, as DRAEM) of the model's segmentation head on the visibly changed part of the
    step's anomaly mask (:func:`~anovit.training.anomalies.visible_change`); None when the model has no head.
    The head sees the output detached: it does not steer the restoration."""
    head = getattr(_unwrap(model), "segmenter", None)
    if head is None:
        return None
    if step.mask is None:
        raise ValueError("the segmentation head learns from synthetic anomalies: train it with the restore objective")
    logits = head(step.inputs, step.output.detach())  # (B, H, W)
    target = visible_change(step.mask, step.target, step.inputs)  # (B, H, W): the region where the image changed
    return sigmoid_focal_loss(logits.float(), target, alpha=-1, gamma=2.0, reduction="mean")


def build_objective(cfg: TrainConfig, cached: bool = False) -> Objective:
    """``cfg.objective`` as a function; ``cached``: the tokens objective reads cached targets, not images."""
    if cfg.objective == "reconstruct":
        return reconstruct
    if cfg.objective == "inpaint":
        return inpaint_with(tuple(cfg.mask_ratio))
    if cfg.objective == "restore":
        return restore_with(cfg.anomaly_fraction, tuple(cfg.anomaly_fills))
    if cfg.objective == "tokens":
        return tokens_with(cfg.easy_share, cached)
    raise ValueError(f"unknown objective {cfg.objective!r}")
