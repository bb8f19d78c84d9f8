"""Training augmentations named in the paper (section 4.3): random affine, horizontal and vertical flip.

The affine transform runs on a reflect-padded image that is cropped back afterwards
(:class:`ReflectAffine`), so rotated and shifted images keep real content in their corners:
torchvision's constant fill would teach the model black corners, which then light up the score
maps of every test image (a border artefact).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from anovit.config import DataConfig


class ReflectAffine(nn.Module):
    """``v2.RandomAffine`` on the image reflect-padded by :meth:`margin`, then cropped back to its size.

    The translation is torchvision's: a share of the padded image's side.
    """

    def __init__(self, degrees: float, translate: float, scale: tuple[float, float]) -> None:
        super().__init__()
        self.degrees, self.translate, self.scale = degrees, translate, tuple(scale)
        self.affine = v2.RandomAffine(
            degrees=degrees,
            translate=(translate, translate) if translate > 0 else None,
            scale=self.scale,
            interpolation=v2.InterpolationMode.BILINEAR,
        )

    def margin(self, size: int) -> int:
        """Pixels of reflected content around a ``size`` image for the turned, scaled crop's corners.

        A square turned by up to ``degrees`` reaches (cos + sin) of its half-side beyond its centre, most at 45
        degrees (sqrt 2), and shrinking by the smallest scale widens that. The translation is counted as a share of
        the image, not of the padded image it is drawn from, so at the extremes a few corner pixels still come from
        torchvision's fill: with the presets' 10 degrees, 5 % and 0.95-1.05 at 224 px, 3 views in 1,000 had up to
        39 of their 50,176 pixels filled. Reflect padding takes at most ``size - 1`` pixels.
        """
        turn = math.radians(min(abs(self.degrees), 45.0))  # past 45 degrees the corner's reach shrinks again
        overhang = (math.cos(turn) + math.sin(turn)) / min(self.scale) - 1  # a turned, shrunk square's reach
        return max(0, min(size - 1, math.ceil(size * (overhang / 2 + self.translate)) + 2))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) -> (C, H, W)."""
        h, w = image.shape[-2:]
        m = self.margin(min(h, w))
        padded = TF.pad(image, [m, m, m, m], padding_mode="reflect")  # (C, H + 2m, W + 2m)
        return TF.center_crop(self.affine(padded), [h, w])


def build_augment(cfg: DataConfig) -> v2.Transform | None:
    """A transform on uint8 images (3, H, W), or None when every augmentation is off."""
    steps: list[nn.Module] = []
    if cfg.affine_degrees > 0 or cfg.affine_translate > 0 or tuple(cfg.affine_scale) != (1.0, 1.0):
        steps.append(ReflectAffine(cfg.affine_degrees, cfg.affine_translate, tuple(cfg.affine_scale)))
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if cfg.vflip:
        steps.append(v2.RandomVerticalFlip())
    if cfg.brightness > 0:
        steps.append(v2.ColorJitter(brightness=cfg.brightness))
    return v2.Compose(steps) if steps else None
