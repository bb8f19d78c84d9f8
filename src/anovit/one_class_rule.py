"""The default's rule for one-class data (MNIST, CIFAR-10, scikit-learn digits, a class-per-folder tree), where
the anomaly is a whole image of another kind: the settings follow what the images are, not which dataset holds them.

Torch-free. The rule reads two things from a dataset's training images (:class:`OneClassImages`, measured by
:func:`anovit.data.oneclass.native_size` and :func:`anovit.data.oneclass.blank_share`): their side as stored and
whether they are drawings on a blank background (handwritten digits, sketches) or photographs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anovit.presets import DEFAULT_PRESET

SEMANTIC_PIXEL_PRESET = "tiny"  # the rule's pixel-reconstructing variant (pixel_variant)
# the rule's training budget for the pixel variant and the l2-CAE: a digit class (~70 images) would otherwise stop
# at 300 steps, where the inpainting ViT still restores other digits (benchmarks/ablation/semantic/steps.md)
SEMANTIC_MIN_STEPS = 1000
# the rule's budget for the token-reconstructing default: the MVTec preset's 600 steps
SEMANTIC_TOKEN_STEPS = 600
# a drawing: at least this share of a typical image's pixels is pure black or white (MNIST ~0.8, scikit-learn's
# digits ~0.5; photographs of faces, scenes and CIFAR-10-sized crops ~0.0-0.05)
DRAWING_MIN_BLANK = 1 / 3


@dataclass(frozen=True)
class OneClassImages:
    """What the rule reads from a one-class dataset's training images."""

    side: int  # the longer side of an image as stored, px
    blank: float  # the median share of an image's pixels that are pure black or white

    @property
    def drawing(self) -> bool:
        """Strokes on a blank background (digits, sketches) rather than a photograph."""
        return self.blank >= DRAWING_MIN_BLANK


PHOTOGRAPHS = OneClassImages(side=224, blank=0.0)  # what the rule assumes where nothing was measured


def semantic_options(
    model: str, images: OneClassImages, preset: str = DEFAULT_PRESET, objective: str | None = None
) -> dict[str, Any]:
    """The keywords of :func:`anovit.resolve.resolve_config` the rule gives ``model`` on ``images`` (``objective``:
    the one the user asked for, if any).

    - Objects are not flip-invariant (a flipped 2 or 7 is no normal 2 or 7): no flips in training or testing.
    - The anomaly is the whole image, not a local defect: every model scores the map's mean, border included.
    - Photographs: pretrained features are read where they were learnt: AnoViT's frozen ViT (``tokens``, the
      default) and the knn baseline see the image resized to 224 px. AnoViT trains :data:`SEMANTIC_TOKEN_STEPS`
      optimiser steps and at least one epoch, however many images (MNIST's and CIFAR-10's ~4,500 per class would
      otherwise take the preset's 30 epochs at 224 px).
    - Drawings (:attr:`OneClassImages.drawing`, unless ``--objective tokens`` asks for the tokens), and every image
      with ``--preset tiny``: AnoViT reconstructs pixels at the native size rounded up to its 16-px patches (32 to
      224 px), inpainting each quarter of its patch grid from the rest, scoring pixel error plus the frozen ViT's
      feature distance, for :data:`SEMANTIC_MIN_STEPS` steps and at least one epoch (:func:`pixel_variant`; a full
      MNIST class of ~4,700 images would otherwise take the preset's 30 epochs, ~8,800 steps).
    - The l2-CAE reconstructs pixels at no less than 128 px (its five downsamplings) and takes at least
      :data:`SEMANTIC_MIN_STEPS` steps, however few its images.
    """
    size = min(224, max(32, 16 * -(-images.side // 16)))
    common: dict[str, Any] = dict(image_score="mean", test_flips="none", test_shift=0, augment_flips=False, border=0.0)
    if model == "anovit" and pixel_variant(preset, images, objective):
        pixels = dict(
            image_size=size, objective="inpaint", score=("l2", "feature"), epochs=1, min_steps=SEMANTIC_MIN_STEPS
        )
        return common | pixels
    if model == "anovit":
        return common | dict(image_size=224, epochs=1, min_steps=SEMANTIC_TOKEN_STEPS)
    if model == "cae":
        return common | dict(image_size=max(size, 128), min_steps=SEMANTIC_MIN_STEPS)
    return common | dict(image_size=224)


def pixel_variant(preset: str, images: OneClassImages, objective: str | None = None) -> bool:
    """Whether the rule's AnoViT reconstructs pixels (on :data:`SEMANTIC_PIXEL_PRESET`) rather than the frozen
    ViT's tokens: asked for with that preset, or the images are drawings and ``objective`` (the user's) is not
    ``tokens``. On strokes against a blank background an
    ImageNet ViT's tokens see little the pixels do not (real MNIST: 0.945 image AUROC with pixels, 0.928 with
    tokens); on photographs they see far more (0.955 against 0.796)."""
    return preset == SEMANTIC_PIXEL_PRESET or (images.drawing and objective != "tokens")


def follows_one_class_rule(dataset: str, preset: str) -> bool:
    """Whether a run of ``preset`` on ``dataset`` takes the rule: every dataset but MVTec AD, with the default or
    :data:`SEMANTIC_PIXEL_PRESET`."""
    return preset in (DEFAULT_PRESET, SEMANTIC_PIXEL_PRESET) and dataset != "mvtec"


def base_preset(dataset: str, preset: str, images: OneClassImages | None = None, objective: str | None = None) -> str:
    """The preset a run on ``dataset`` starts from: the rule's pixel variant builds on
    :data:`SEMANTIC_PIXEL_PRESET`, whatever the default is."""
    rule = follows_one_class_rule(dataset, preset)
    return SEMANTIC_PIXEL_PRESET if rule and pixel_variant(preset, images or PHOTOGRAPHS, objective) else preset


def dataset_options(
    dataset: str, preset: str, model: str, options: dict[str, Any], images: OneClassImages | None = None
) -> dict[str, Any]:
    """``options`` (the keywords of :func:`anovit.resolve.resolve_config`) with a preset's settings for ``dataset``
    where the user gave none: the paper's MNIST and CIFAR-10 setting (section 4.1.1: ViT-B/16 at 224 px); the rule
    (:func:`semantic_options`, for the default and :data:`SEMANTIC_PIXEL_PRESET`) on every dataset but MVTec AD.
    ``epochs`` the user gave is what trains, exactly: the rule's step budget goes with it."""
    defaults: dict[str, Any] = {}
    if preset == "paper" and dataset != "mvtec":
        defaults = {"image_size": 224, "encoder": "vit_base_patch16_224"}
    elif follows_one_class_rule(dataset, preset):
        defaults = semantic_options(model, images or PHOTOGRAPHS, preset, options.get("objective"))
    asked = {k: v for k, v in options.items() if v is not None}
    if "epochs" in asked:
        defaults.pop("min_steps", None)
    return defaults | asked
