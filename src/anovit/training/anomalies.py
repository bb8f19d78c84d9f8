"""Synthetic anomalies made from the user's own normal images, for the ``restore`` objective.

In the spirit of DRAEM (Zavrtanik et al. 2021) but with no outside data: a region shaped by
thresholded Perlin noise (blobs of many sizes) or by a thin random segment (scratches) is filled
with something the normal images do not show there, and the model learns to output the clean
image. The fills, all taken from the batch itself:

- ``patch``: the same region of another image of the batch, flipped or rotated;
- ``shift``: the same image moved by a random offset (structure from the wrong place);
- ``colour``: an intensity or colour shift, darker or lighter;
- ``noise``: Gaussian noise;
- ``flat``: one flat random colour;
- ``blur``: the same image blurred (structure lost, colour kept: a smear, a worn or out-of-focus spot).

Everything runs on the batch's device, in whole batches, from a ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch

from anovit.config import ANOMALY_FILLS
from anovit.scoring.smoothing import gaussian_blur

FILLS = ANOMALY_FILLS  # ("patch", "shift", "colour", "noise", "flat", "blur")
VISIBLE = 0.02  # a mean absolute change (in [0, 1] intensity) below which a masked pixel counts as unchanged


def perlin_noise(batch: int, size: int, scale: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """2D Perlin (gradient) noise with ``scale`` cells per side: (B, size, size), roughly in [-1, 1]."""
    angles = torch.rand(batch, scale + 1, scale + 1, generator=generator) * 2 * math.pi
    grads = torch.stack([angles.cos(), angles.sin()], dim=-1).to(device)  # (B, s+1, s+1, 2)
    t = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) * scale / size  # (S,) in cell units
    cell, frac = t.floor().long().clamp(max=scale - 1), t - t.floor().clamp(max=scale - 1)
    fy, fx = frac.view(size, 1), frac.view(1, size)  # (S, 1), (1, S)
    iy, ix = cell.view(size, 1), cell.view(1, size)

    def corner(dy: int, dx: int) -> torch.Tensor:
        g = grads[:, iy + dy, ix + dx]  # (B, S, S, 2)
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)  # (B, S, S)

    fade = lambda v: v * v * v * (v * (v * 6 - 15) + 10)  # noqa: E731
    wy, wx = fade(fy), fade(fx)
    top = corner(0, 0) * (1 - wx) + corner(0, 1) * wx
    bottom = corner(1, 0) * (1 - wx) + corner(1, 1) * wx
    return (top * (1 - wy) + bottom * wy) * math.sqrt(2)


def blob_masks(batch: int, size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Thresholded Perlin noise at a random scale per image: (B, S, S) float {0, 1}, never empty."""
    masks = torch.zeros(batch, size, size, device=device)
    scales = torch.randint(1, 6, (batch,), generator=generator)  # 2 to 32 cells per side
    for i, s in enumerate(scales.tolist()):
        noise = perlin_noise(1, size, 2**s, generator, device)[0]  # (S, S)
        level = 0.3 + 0.3 * float(torch.rand((), generator=generator))
        m = (noise > level).float()
        if m.sum() < 4:  # too little above the level: keep the highest values instead
            m = (noise >= noise.flatten().topk(max(4, size * size // 100)).values[-1]).float()
        masks[i] = m
    return masks


def line_masks(batch: int, size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Thin straight or slightly bent segments (scratches): (B, S, S) float {0, 1}."""
    p0 = torch.rand(batch, 2, generator=generator) * size
    angle = torch.rand(batch, generator=generator) * math.pi
    length = (0.15 + 0.45 * torch.rand(batch, generator=generator)) * size
    width = 0.5 + torch.rand(batch, generator=generator) * max(1.0, size / 64)
    d = torch.stack([angle.cos(), angle.sin()], dim=1)  # (B, 2)
    p0, d, length, width = p0.to(device), d.to(device), length.to(device), width.to(device)
    yy, xx = torch.meshgrid(torch.arange(size, device=device), torch.arange(size, device=device), indexing="ij")
    pts = torch.stack([xx, yy], dim=-1).float().view(1, size, size, 2)  # (1, S, S, 2)
    rel = pts - p0.view(batch, 1, 1, 2)  # (B, S, S, 2)
    along = (rel * d.view(batch, 1, 1, 2)).sum(-1).clamp(min=0).minimum(length.view(batch, 1, 1))  # (B, S, S)
    nearest = p0.view(batch, 1, 1, 2) + along.unsqueeze(-1) * d.view(batch, 1, 1, 2)
    dist = (pts - nearest).norm(dim=-1)  # (B, S, S)
    return (dist <= width.view(batch, 1, 1)).float()


def _fills(images: torch.Tensor, generator: torch.Generator, fills: tuple[str, ...] = FILLS) -> torch.Tensor:
    """What goes into each image's anomalous region: (B, 3, S, S) in [0, 1], one kind of ``fills`` per image."""
    b, _, s, _ = images.shape
    dev = images.device
    rand = lambda *shape: torch.rand(*shape, generator=generator).to(dev)  # noqa: E731
    kinds = torch.randint(0, len(fills), (b,), generator=generator).tolist()
    out = torch.empty_like(images)
    for i, kind in enumerate(fills[k] for k in kinds):
        img = images[i]
        if kind == "patch":
            other = (
                images[(i + 1 + int(torch.randint(0, max(1, b - 1), (1,), generator=generator))) % b] if b > 1 else img
            )
            out[i] = torch.rot90(other, int(torch.randint(0, 4, (1,), generator=generator)), dims=(1, 2))
        elif kind == "shift":
            dy, dx = (torch.randint(s // 8, s - s // 8, (2,), generator=generator)).tolist()
            out[i] = torch.roll(img, shifts=(dy, dx), dims=(1, 2))
        elif kind == "colour":
            sign = 1.0 if float(torch.rand((), generator=generator)) < 0.5 else -1.0
            shift = sign * (0.15 + 0.35 * rand(3, 1, 1))  # per channel; same sign: darker or lighter
            out[i] = img + shift
        elif kind == "noise":
            out[i] = img + torch.randn(img.shape, generator=generator).to(dev) * (
                0.1 + 0.2 * float(torch.rand((), generator=generator))
            )
        elif kind == "blur":
            sigma = s * (1 / 64 + (1 / 12 - 1 / 64) * float(torch.rand((), generator=generator)))  # 3.5 to 19 px at 224
            out[i] = gaussian_blur(img, sigma)  # each channel (as a batch of 3 maps), separably
        else:  # flat
            out[i] = rand(3, 1, 1).expand_as(img)
    return out.clamp(0, 1)


def synthesize(
    images: torch.Tensor, generator: torch.Generator, fraction: float = 0.5, fills: tuple[str, ...] = FILLS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plant a synthetic anomaly in about ``fraction`` of the images, filled with one of ``fills`` each.

    images (B, 3, S, S) float in [0, 1] -> (corrupted images (B, 3, S, S), masks (B, S, S) in {0, 1});
    the images left clean have empty masks. The fill is blended with an opacity of 0.5 to 1. The mask
    is the whole region, also where a fill changed nothing (a blur of a flat stretch); the
    segmentation head learns :func:`visible_change` of it.
    """
    unknown = sorted(set(fills) - set(FILLS))
    if unknown or not fills:
        raise ValueError(f"unknown anomaly fill(s) {unknown}; expected some of {FILLS}")
    b, _, s, _ = images.shape
    dev = images.device
    chosen = (torch.rand(b, generator=generator) < fraction).to(dev)  # (B,)
    thin = (torch.rand(b, generator=generator) < 0.3).to(dev)  # (B,): a scratch rather than a blob
    masks = torch.where(thin.view(b, 1, 1), line_masks(b, s, generator, dev), blob_masks(b, s, generator, dev))
    masks = masks * chosen.view(b, 1, 1).float()  # (B, S, S)
    opacity = (0.5 + 0.5 * torch.rand(b, 1, 1, 1, generator=generator)).to(dev)
    alpha = masks.unsqueeze(1) * opacity  # (B, 1, S, S)
    filled = _fills(images.float(), generator, fills)
    corrupted = images.float() * (1 - alpha) + filled * alpha
    return corrupted, masks


def visible_change(masks: torch.Tensor, clean: torch.Tensor, corrupted: torch.Tensor) -> torch.Tensor:
    """The masks' pixels (B, S, S) where the image visibly changed: the locally averaged absolute change of
    clean -> corrupted (B, 3, S, S) exceeds :data:`VISIBLE`. A blur or a shift that changed nothing there
    is no anomaly for the segmentation head to find. -> (B, S, S) in {0, 1}."""
    change = gaussian_blur((corrupted.float() - clean.float()).abs().mean(dim=1), 1.0)  # (B, S, S)
    return masks * (change > VISIBLE).float()
