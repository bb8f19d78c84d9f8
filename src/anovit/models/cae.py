"""The l2-CAE baseline of Bergmann et al. (2019b), the paper's comparison model.

The encoder of the original, for 128 x 128 inputs (kernel/stride, channels):
    4/2 32, 4/2 32, 3/1 32, 4/2 64, 3/1 64, 4/2 128, 3/1 64, 3/1 32, 8/1 d (latent, 1 x 1)
with LeakyReLU(0.2) after every layer but the latent one; the decoder mirrors it with transposed
convolutions. For larger inputs one extra 4/2 convolution is put in front per doubling of the
size beyond 128 (as Bergmann et al. 2019a do for 256 px MVTec images), and the latent layer's
kernel is whatever spatial size is left (e.g. 12 at 384 px, 14 at 224 px).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from anovit.errors import InputError


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class L2CAE(nn.Module):
    def __init__(self, image_size: int, latent_dim: int = 100, base_channels: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        c1, c2, c4 = base_channels, 2 * base_channels, 4 * base_channels
        n_extra = max(0, int(math.floor(math.log2(image_size / 128)))) if image_size >= 256 else 0
        n_down = 4 + n_extra
        if image_size % (2**n_down):
            raise InputError(f"l2-CAE needs an image size divisible by {2**n_down}; got {image_size}")
        bottleneck = image_size // 2**n_down
        self.latent_size = bottleneck

        enc: list[nn.Module] = []
        c_prev = in_channels
        for _ in range(n_extra):
            enc += [nn.Conv2d(c_prev, c1, 4, 2, 1), _act()]
            c_prev = c1
        enc += [
            nn.Conv2d(c_prev, c1, 4, 2, 1),
            _act(),
            nn.Conv2d(c1, c1, 4, 2, 1),
            _act(),
            nn.Conv2d(c1, c1, 3, 1, 1),
            _act(),
            nn.Conv2d(c1, c2, 4, 2, 1),
            _act(),
            nn.Conv2d(c2, c2, 3, 1, 1),
            _act(),
            nn.Conv2d(c2, c4, 4, 2, 1),
            _act(),
            nn.Conv2d(c4, c2, 3, 1, 1),
            _act(),
            nn.Conv2d(c2, c1, 3, 1, 1),
            _act(),
            nn.Conv2d(c1, latent_dim, bottleneck, 1, 0),
        ]
        dec: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, c1, bottleneck, 1, 0),
            _act(),
            nn.Conv2d(c1, c2, 3, 1, 1),
            _act(),
            nn.Conv2d(c2, c4, 3, 1, 1),
            _act(),
            nn.ConvTranspose2d(c4, c2, 4, 2, 1),
            _act(),
            nn.Conv2d(c2, c2, 3, 1, 1),
            _act(),
            nn.ConvTranspose2d(c2, c1, 4, 2, 1),
            _act(),
            nn.Conv2d(c1, c1, 3, 1, 1),
            _act(),
            nn.ConvTranspose2d(c1, c1, 4, 2, 1),
            _act(),
        ]
        for _ in range(n_extra):
            dec += [nn.ConvTranspose2d(c1, c1, 4, 2, 1), _act()]
        dec += [nn.ConvTranspose2d(c1, in_channels, 4, 2, 1)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward_encoder(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, d, 1, 1)

    def forward_decoder(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B, 3, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> reconstruction (B, 3, H, W)."""
        return self.forward_decoder(self.forward_encoder(x))
