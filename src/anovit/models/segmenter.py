"""A light segmentation head on (image, reconstruction), after DRAEM's discriminative network.

Trained beside the ``restore`` objective: it sees an image with a synthetic anomaly next to the
model's restoration of it and learns to output the anomaly's mask (focal loss,
:func:`anovit.training.objectives.segmentation_loss`). At test time its probability map is the
``segment`` score. A small U-Net (three levels, 16-32-64 channels by default). At full
resolution its convolutions cost more than ViT-Ti's blocks at 224 px (fp32 training step on 2 CPU
cores, batch 16: 2.1 s against 1.3 s); ``scale`` 2 runs it on the pair averaged over 2 x 2 pixels,
at about a seventh of that (0.3 s), and upsamples its logits back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SegmentationHead(nn.Module):
    """(image, reconstruction) (B, 3, H, W) each -> anomaly logits (B, H, W)."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), scale: int = 1) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"the segmentation head needs at least two levels, got widths {widths}")
        if scale < 1:
            raise ValueError(f"the segmentation head's scale is a downscaling factor >= 1, got {scale}")
        self.scale = scale  # the pair is averaged over scale x scale pixels first; the logits are upsampled back
        self.down = nn.ModuleList([_block(6 if i == 0 else widths[i - 1], w) for i, w in enumerate(widths)])
        self.up = nn.ModuleList(
            [_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1))]
        )
        self.out = nn.Conv2d(widths[0], 1, 1)

    def forward(self, images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        x = torch.cat([images, recon.to(images.dtype)], dim=1)  # (B, 6, H, W)
        size = x.shape[-2:]
        if self.scale > 1:
            x = F.avg_pool2d(x, self.scale)  # (B, 6, H / s, W / s)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))  # (B, w_i, H / 2^i, W / 2^i)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))  # (B, w_i, H / 2^i, W / 2^i)
        x = self.out(x)  # (B, 1, H / s, W / s)
        if self.scale > 1:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # (B, 1, H, W)
        return x.squeeze(1)  # (B, H, W)
