"""Per-pixel dissimilarity maps between images and their reconstructions, beyond the paper's L2.

- :func:`ssim_map`: 1 - SSIM (Wang et al. 2004; Bergmann et al. 2019b score with it), Gaussian
  window (sigma 1.5, 11 taps), averaged over channels;
- :func:`gms_map`: 1 - multi-scale gradient-magnitude similarity (Xue et al. 2014, as InTra scores):
  Sobel gradient magnitudes of the grey images at full, 1/2, 1/4 and 1/8 resolution, compared with
  (2 g1 g2 + c) / (g1^2 + g2^2 + c) and averaged after upsampling back;
- :func:`patch_distance`: 1 - cosine similarity of two images' patch tokens in a reference
  encoder, the ``feature`` score and the feature loss (on the patch grid, not per pixel).

All take (B, C, H, W) float in [0, 1] and return (B, H, W), computed in fp32 with plain
convolutions so they export to ONNX with the rest of the scoring.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2
GMS_C = 0.0026  # Xue et al.'s constant for images in [0, 1]
GMS_SCALES = (1, 2, 4, 8)


def _gauss_window(sigma: float = 1.5, taps: int = 11, device: torch.device | None = None) -> torch.Tensor:
    x = torch.arange(taps, dtype=torch.float32, device=device) - (taps - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()  # (taps,)


def _filter(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable filter of each channel of (B, C, H, W), reflect-padded to keep the size."""
    c, h, w, r = x.shape[1], int(x.shape[2]), int(x.shape[3]), (window.numel() - 1) // 2
    x = F.pad(x.reshape(-1, 1, h, w), (r, r, r, r), mode="reflect")  # (B * C, 1, H + 2r, W + 2r)
    x = F.conv2d(F.conv2d(x, window.view(1, 1, 1, -1)), window.view(1, 1, -1, 1))  # (B * C, 1, H, W)
    return x.reshape(-1, c, h, w)


def ssim_map(images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """1 - SSIM per pixel, mean over channels: (B, C, H, W) x2 -> (B, H, W), 0 where identical."""
    x, y = images.float(), recon.float()
    w = _gauss_window(device=x.device)
    mx, my = _filter(x, w), _filter(y, w)
    sxx = _filter(x * x, w) - mx * mx
    syy = _filter(y * y, w) - my * my
    sxy = _filter(x * y, w) - mx * my
    ssim = ((2 * mx * my + SSIM_C1) * (2 * sxy + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (sxx + syy + SSIM_C2))
    return (1 - ssim).mean(dim=1)  # (B, H, W)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma (ITU-R 601)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True) if x.shape[1] == 3 else x.mean(dim=1, keepdim=True)


def _gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of (B, 1, H, W), replicate-padded: (B, 1, H, W)."""
    k = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], device=x.device) / 4
    kernels = torch.stack([k, k.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels)  # (B, 2, H, W)
    return (g.pow(2).sum(dim=1, keepdim=True) + 1e-12).sqrt()


def gms_map(images: torch.Tensor, recon: torch.Tensor, scales: tuple[int, ...] = GMS_SCALES) -> torch.Tensor:
    """1 - mean over scales of the gradient-magnitude similarity: (B, C, H, W) x2 -> (B, H, W)."""
    x, y = _grey(images.float()), _grey(recon.float())
    h, w = x.shape[-2:]
    total = torch.zeros_like(x)
    for s in scales:
        xs = F.avg_pool2d(x, s) if s > 1 else x
        ys = F.avg_pool2d(y, s) if s > 1 else y
        gx, gy = _gradient_magnitude(xs), _gradient_magnitude(ys)
        gms = (2 * gx * gy + GMS_C) / (gx * gx + gy * gy + GMS_C)  # (B, 1, h/s, w/s)
        total = total + (F.interpolate(gms, size=(h, w), mode="bilinear", align_corners=False) if s > 1 else gms)
    return (1 - total / len(scales)).squeeze(1)  # (B, H, W)


def patch_distance(got: Sequence[torch.Tensor], wanted: Sequence[torch.Tensor]) -> torch.Tensor:
    """1 - cosine similarity of two images' patch tokens, mean over the reference encoder's layers.

    ``got``, ``wanted``: [(B, D, gh, gw) per layer] -> (B, gh, gw) fp32. The ``feature`` score
    (:func:`anovit.scoring.maps.feature_map`) and the feature loss (:func:`anovit.training.objectives.feature_loss`).
    """
    return torch.stack([1 - F.cosine_similarity(a.float(), b.float(), dim=1) for a, b in zip(got, wanted)]).mean(dim=0)
