"""AnoViT on the token level: a decoder gives back the frozen pretrained ViT's own patch tokens.

After Dinomaly (Guo et al., "Dinomaly: The Less Is More Philosophy in Multi-Class Unsupervised Anomaly
Detection", CVPR 2025): the patch tokens of the ViT's middle blocks are the target; their mean goes through a
noisy bottleneck (an MLP with dropout, so that the decoder cannot learn to copy whatever it is given) and a stack
of transformer blocks, whose outputs, last block first, must match the encoder's blocks, first block first. The
blocks are compared in two groups (``groups``: the earlier and the later half, each averaged): a patch the decoder
cannot give back is anomalous, so the score map is 1 - cosine per patch, summed over the groups (``merge="sum"``) or,
with ``merge="max"``, the larger of the two after each is divided by its peak level on normal images (the mean of
each hold-out image's highest 1 % of patches, :meth:`TokenAnoViT.peak_levels`, measured after training and saved
with the weights, over the patches the image score reads: the grid's outer ring, where the ViT's corner patches peak
on every normal image, is left out with the score's border): a patch is as anomalous as the group that finds it most
so, each judged against its own normal peaks, so neither group's noise drowns what the other sees.

A few channels of a pretrained ViT's middle blocks carry massive activations (Sun et al., "Massive Activations in
Large Language Models", COLM 2024, find them in ViTs too): in the ViT-Ti's blocks 6-9 one channel holds over 90 % of
the tokens' energy, so the cosine there reads little but that channel. With ``map_channels="ordinary"`` the map a
defect is localised on leaves those channels out (found on the normal hold-out before training, where a channel's
mean square is over :data:`MASSIVE_RATIO` times the median channel's, and saved with the weights), while the image
score still reads the cosine over all channels, whose verdicts they help: ``forward`` then gives both maps, and the
loss counts the cosine over the ordinary channels beside the one over all, so that the decoder learns them too.

Training sees normal images only and weights the best-reconstructed share of the patches down (Dinomaly's loose,
hard-mined loss), so the decoder does not sharpen what it already gives back at the cost of the rest.

The decoder's blocks attend with softmax (timm's ``Block``) or, as Dinomaly's and the default's, with linear
attention (:mod:`anovit.models.attention`). What it leaves out: Dinomaly's DINOv2 encoder (any timm ViT here; the
default's ViT-Ti/16), and the ramp of the hard-mined share over the first steps.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anovit.config import TOKEN_MAP_CHANNELS, TOKEN_MERGES
from anovit.errors import InputError
from anovit.models.attention import decoder_block
from anovit.models.encoder import tiled_reference

EASY_WEIGHT = 0.1  # the hard-mined loss's weight on the patches reconstructed best
# a channel whose mean square on normal tokens is over this many times the median channel's is a massive activation;
# in the ViT-Ti's blocks 6-9 the one such channel has about 4,000 times it, the next under 40 times
MASSIVE_RATIO = 1000.0
PEAK_SHARE = 0.01  # the share of an image's patches whose mean is its peak level (merge="max")


class TokenAnoViT(nn.Module):
    """Frozen ViT -> noisy bottleneck -> transformer decoder -> the encoder's middle-block tokens again.

    ``pairs`` gives (encoder, decoder) tokens per group of blocks; ``forward`` the map (B, H, W) of their
    dissimilarity at the input size (with ``map_channels="ordinary"`` two maps, (B, 2, H, W): the one to localise with,
    over the ordinary channels, and the one to judge the image by, over all), or the training loss on a batch of
    normal images (``loss``).
    """

    def __init__(
        self,
        image_size: int,
        encoder: str,
        patch_size: int,
        layers: tuple[int, ...],
        depth: int,
        dropout: float,
        encoder_overrides: dict[str, Any] | None = None,
        pretrained: bool = False,
        encoder_weights: str | Path | None = None,
        merge: str = "sum",
        attention: str = "softmax",
        tiles: int = 1,
        patch_stride: int = 0,
        groups: int = 2,
        map_channels: str = "all",
    ) -> None:
        super().__init__()
        if merge not in TOKEN_MERGES:
            raise InputError(f"token group merge {merge!r}: expected one of {', '.join(TOKEN_MERGES)}")
        if map_channels not in TOKEN_MAP_CHANNELS:
            raise InputError(f"token map channels {map_channels!r}: expected one of {', '.join(TOKEN_MAP_CHANNELS)}")
        if groups < 1:
            raise InputError(f"token groups {groups}: expected 1 or more groups of blocks")
        if depth < min(groups, len(layers)):
            raise InputError(f"token decoder depth {depth}: expected at least {min(groups, len(layers))} blocks")
        # frozen: blocks up to the last target
        self.encoder = tiled_reference(
            encoder,
            image_size,
            patch_size,
            tuple(sorted(layers)),
            tiles,
            encoder_overrides,
            pretrained,
            encoder_weights,
            patch_stride,
        )
        dim = self.encoder.vit.embed_dim
        heads = int(self.encoder.vit.blocks[0].attn.num_heads)
        self.bottleneck = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.decoder = nn.ModuleList(decoder_block(dim, heads, attention) for _ in range(depth))
        self.groups = min(groups, len(layers))
        self.dim = dim
        self.merge = merge
        self.map_channels = map_channels
        if map_channels == "ordinary":  # 1 where the localising map reads a channel; all until measured
            self.register_buffer("ordinary", torch.ones(self.groups, dim))
        if merge == "max":  # each group's peak level on normal images, per map; ones until measured (set_peak_levels)
            self.register_buffer("group_peaks", torch.ones(self.groups * self.maps))

    @property
    def maps(self) -> int:
        """How many maps ``forward`` gives: 1, or 2 with ``map_channels="ordinary"`` (to localise, to judge)."""
        return 2 if self.map_channels == "ordinary" else 1

    @property
    def grid(self) -> tuple[int, int]:
        return self.encoder.grid

    @property
    def target_shape(self) -> tuple[int, int, int]:
        """(G, N, D) of one image's :meth:`targets`."""
        gh, gw = self.grid
        return self.groups, gh * gw, self.dim

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> the frozen encoder's tokens of each target block [(B, N, D)]."""
        with torch.no_grad():
            grids = self.encoder(images)  # [(B, D, gh, gw)] per target block
        return [g.flatten(2).transpose(1, 2) for g in grids]

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> what the decoder must give back: the encoder's tokens averaged over each group
        of target blocks, (B, G, N, D). Training on a small set computes them once per view
        (:mod:`anovit.training.token_cache`)."""
        return torch.stack(_grouped(self.encode(images), self.groups), dim=1)

    def decode(self, targets: torch.Tensor) -> list[torch.Tensor]:
        """Group targets (B, G, N, D) -> each decoder block's output, last block first [(B, N, D)]. The decoder
        starts from the mean over all target blocks (each group weighted by its number of blocks)."""
        sizes = _group_sizes(len(self.encoder.layers), self.groups)
        x = sum(n * t for n, t in zip(sizes, targets.unbind(1))) / sum(sizes)  # (B, N, D)
        x = self.bottleneck(x)
        out = []
        for block in self.decoder:
            x = block(x)
            out.append(x)
        return out[::-1]

    def pairs(self, images: torch.Tensor, cached: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(B, 3, H, W) in [0, 1], or with ``cached`` their :meth:`targets` (B, G, N, D) -> per group of blocks,
        (encoder tokens, decoder tokens), each (B, N, D)."""
        target = images if cached else self.targets(images)
        return list(zip(target.unbind(1), _grouped(self.decode(target), self.groups)))

    def distances(self, images: torch.Tensor, cached: bool = False) -> list[torch.Tensor]:
        """(B, 3, H, W) in [0, 1] (or, ``cached``, their targets) -> per map and group of blocks (the judging map's
        groups first), 1 - cosine of each patch's tokens and their reconstruction, (B, N) fp32: over all channels,
        then, with ``map_channels="ordinary"``, over the ordinary ones (one decoder pass for both)."""
        pairs = [(a.float(), b.float()) for a, b in self.pairs(images, cached)]
        out = [1 - F.cosine_similarity(a, b, dim=-1) for a, b in pairs]
        if self.map_channels == "ordinary":
            out += [1 - F.cosine_similarity(a * w, b * w, dim=-1) for (a, b), w in zip(pairs, self.ordinary)]
        return out

    def forward(self, images: torch.Tensor, easy_share: float | None = None, cached: bool = False) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> 1 - cosine of the tokens and their reconstruction, merged over the groups
        (``merge``), upsampled: (B, H, W), or with ``map_channels="ordinary"`` (B, 2, H, W), the map to localise
        with and the map to judge the image by; with ``easy_share``, the training loss (:meth:`loss`) instead, on the
        images or (``cached``) their targets, so that training goes through the module's call (and
        DistributedDataParallel's)."""
        if easy_share is not None:
            return self.loss(images, easy_share, cached)
        dists = self.distances(images)  # [(B, N)] per map and group
        if self.merge == "max":
            dists = [d / p for d, p in zip(dists, self.group_peaks)]
        per_map = [dists[i : i + self.groups] for i in range(0, len(dists), self.groups)]  # judging map first
        merged = [torch.stack(g).amax(dim=0) if self.merge == "max" else sum(g) for g in per_map]  # [(B, N)]
        gh, gw = self.grid
        h, w = int(images.shape[-2]), int(images.shape[-1])
        dist = torch.stack(merged[::-1], dim=1).view(-1, len(merged), gh, gw)  # (B, maps, gh, gw), localising first
        up = F.interpolate(dist, size=(h, w), mode="bilinear", align_corners=False)  # (B, maps, H, W)
        return up.squeeze(1) if self.maps == 1 else up

    @torch.no_grad()
    def peak_levels(self, images: torch.Tensor, border: float = 0.0) -> torch.Tensor:
        """(B, 3, H, W) normal images in [0, 1] -> (B, maps x G): each map's and group's mean over its highest
        :data:`PEAK_SHARE` of each image's patches (the order of :meth:`distances`), without the patches that reach
        into the outer ``border`` share of the side at each edge (``ScoreConfig.border``, which the image score
        leaves out)."""
        gh, gw = self.grid
        rh, rw = (min(math.ceil(border * n), (n - 1) // 2) for n in (gh, gw))  # rings of patches left out
        groups = [d.view(-1, gh, gw)[:, rh : gh - rh, rw : gw - rw].flatten(1) for d in self.distances(images)]
        k = max(1, round(PEAK_SHARE * groups[0].shape[1]))
        return torch.stack([d.topk(k, dim=1).values.mean(dim=1) for d in groups], dim=1)

    def set_peak_levels(self, levels: torch.Tensor) -> None:
        """Store the groups' peak levels on normal images (maps x G,) for ``merge="max"``."""
        self.group_peaks.copy_(levels.clamp_min(1e-6))

    @torch.no_grad()
    def channel_energy(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normal images in [0, 1] -> (B, G, D): each group's mean square of each channel over the
        image's patches."""
        return self.targets(images).float().pow(2).mean(dim=2)

    def set_ordinary_channels(self, energy: torch.Tensor) -> None:
        """From the channels' energy on normal images (G, D) (:meth:`channel_energy`), keep for the localising map and
        the loss each group's channels up to :data:`MASSIVE_RATIO` times its median channel's: before training (the
        loss reads them) and before the peak levels (which depend on them)."""
        median = energy.median(dim=1, keepdim=True).values  # (G, 1)
        ordinary = (energy <= MASSIVE_RATIO * median) | (median <= 0)  # a group mostly silent has no scale to judge by
        self.ordinary.copy_(ordinary.to(self.ordinary.dtype))

    def loss(self, images: torch.Tensor, easy_share: float, cached: bool = False) -> torch.Tensor:
        """Mean over the maps' groups (:meth:`distances`) of the patches' 1 - cosine, the lowest ``easy_share`` of
        each weighted :data:`EASY_WEIGHT`: a scalar in fp32. With ``map_channels="ordinary"`` each group counts over
        all channels and over the ordinary ones, so that the decoder learns the channels its map localises with and
        not the massive ones alone. ``images`` as in :meth:`pairs`."""
        total = torch.zeros((), device=images.device)
        groups = self.distances(images, cached)
        for d in groups:  # (B, N)
            weight = torch.ones_like(d)
            if easy_share > 0:
                easy = d.detach() < torch.quantile(d.detach().flatten(), easy_share)
                weight = torch.where(easy, EASY_WEIGHT, 1.0)
            total = total + (d * weight).sum() / weight.sum()
        return total / len(groups)


def _group_sizes(n: int, groups: int) -> list[int]:
    """How many of ``n`` consecutive blocks each of ``groups`` groups holds (the first ones the larger)."""
    base, extra = divmod(n, groups)
    return [base + 1] * extra + [base] * (groups - extra)


def _grouped(tokens: list[torch.Tensor], groups: int) -> list[torch.Tensor]:
    """The mean of each of ``groups`` consecutive parts of ``tokens`` (:func:`_group_sizes`): [(B, N, D)]."""
    out, start = [], 0
    for n in _group_sizes(len(tokens), groups):
        out.append(torch.stack(tokens[start : start + n]).mean(dim=0))
        start += n
    return out
