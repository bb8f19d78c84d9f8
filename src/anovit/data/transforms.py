"""Training augmentations named in the paper (section 4.3): random affine, horizontal and vertical flip."""

from __future__ import annotations

from torchvision.transforms import v2

from ..config import DataConfig


def build_augment(cfg: DataConfig) -> v2.Transform | None:
    """A transform on uint8 images (3, H, W), or None when every augmentation is off."""
    steps: list[v2.Transform] = []
    if cfg.affine_degrees > 0 or cfg.affine_translate > 0 or tuple(cfg.affine_scale) != (1.0, 1.0):
        steps.append(
            v2.RandomAffine(
                degrees=cfg.affine_degrees,
                translate=(cfg.affine_translate, cfg.affine_translate) if cfg.affine_translate > 0 else None,
                scale=tuple(cfg.affine_scale),
                interpolation=v2.InterpolationMode.BILINEAR,
            )
        )
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if cfg.vflip:
        steps.append(v2.RandomVerticalFlip())
    return v2.Compose(steps) if steps else None

