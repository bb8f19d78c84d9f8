"""What the nearest-neighbour baseline (:class:`anovit.models.knn.PatchKNN`) has instead of training: the memory
bank of its normal patch features, reduced by PatchCore's greedy coreset subsampling."""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from anovit.config import Precision
from anovit.data.datasets import loader_workers
from anovit.models.knn import PatchKNN
from anovit.runtime.device import batches_on
from anovit.runtime.precision import autocast

log = logging.getLogger(__name__)

PROJECTION_DIM = 128  # PatchCore's random projection, used to choose the coreset only


@torch.no_grad()
def greedy_coreset(features: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Indices (k,) of a greedy k-center coreset of ``features`` (N, C) (PatchCore, section 3.2).

    Each step adds the feature farthest from those chosen so far, so the coreset covers the whole set
    with the smallest radius this greedy approximation finds. Distances are measured in a random
    projection to 128 dimensions (Johnson-Lindenstrauss), as PatchCore does, to keep each step cheap.
    """
    n = features.shape[0]
    if k >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    x = features.float()
    if x.shape[1] > PROJECTION_DIM:
        x = x @ torch.randn(x.shape[1], PROJECTION_DIM, generator=g).to(x.device)  # (N, 128)
    norms = x.pow(2).sum(dim=1)  # (N,)
    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = int(torch.randint(n, (1,), generator=g))
    nearest = torch.full((n,), float("inf"))  # (N,) squared distance to the coreset
    for i in range(k):
        if i:
            chosen[i] = int(nearest.argmax())
        c = int(chosen[i])
        nearest = torch.minimum(nearest, norms - 2.0 * (x @ x[c]) + norms[c])  # |x - x_c|^2
    return chosen


@torch.no_grad()
def fit_bank(
    model: PatchKNN,
    dataset: Dataset,
    share: float,
    device: torch.device,
    precision: Precision = "fp32",
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> int:
    """Fill ``model.bank`` with the coreset of ``dataset``'s patch features (``share`` of them); returns its size."""
    if not 0 < share <= 1:
        raise ValueError(f"knn_coreset must be a share in (0, 1], got {share}")
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=loader_workers(dataset))
    parts = []
    for batch in tqdm(batches_on(loader, device), total=len(loader), desc="memory bank", disable=not progress):
        with autocast(device, precision):
            feats = model.embed(batch["image"])  # (B, C, gh, gw)
        parts.append(feats.float().permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).cpu())  # (B * N, C)
    features = torch.cat(parts)  # (N_all, C)
    k = max(1, round(share * features.shape[0]))
    keep = greedy_coreset(features, k, seed)
    model.bank = features[keep].contiguous().to(device)  # (k, C)
    log.info(
        "memory bank: %d of %d patch features (%.0f %%), %d dims, %.1f MiB",
        k,
        features.shape[0],
        100 * k / features.shape[0],
        features.shape[1],
        model.bank.numel() * 4 / 2**20,
    )
    return k
