"""Feature reconstruction through a noisy bottleneck (after Dinomaly, Guo et al., CVPR 2025) on the offline ViT-Ti:
does it detect real defects better than the default and the knn baseline?

The frozen pretrained ViT's patch tokens of the middle blocks are the target; a dropout MLP (the noisy bottleneck)
on their mean feeds a few transformer blocks that must give them back. Anomalous patches are reconstructed worse,
so 1 - cosine between the encoder's and the decoder's tokens, per patch and per group of blocks, is the score map
(upsampled, Gaussian sigma 4; image score = mean of the top 1 %). The encoder never trains, so its tokens are
computed once per training image (with horizontal and vertical flips as augmentation) and the decoder trains on
the cache: a few minutes on 2 CPU cores.

    python benchmarks/feature_recon.py [--categories bottle,tire,screw] [--size 224] [--steps 1500] [--seeds 0]

This is the prototype that chose ``--objective tokens`` (anovit.models.tokens), run outside the package's training
loop (cached tokens, no affine augmentation, AdamW with gradient clipping); the package's preset ``tokens`` is
measured through ``anovit benchmark`` (README).

Writes benchmarks/feature_recon/TABLE.md and results.json (one row per category, size, seed and setting).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from anovit.data.datasets import as_float_tensor, load_image, load_mask  # noqa: E402
from anovit.data.mvtec import mvtec_samples  # noqa: E402
from anovit.evaluation.metrics import image_auroc  # noqa: E402
from anovit.models.encoder import ViTEncoder  # noqa: E402
from anovit.runtime.precision import cpu_name  # noqa: E402
from anovit.scoring.maps import image_scores  # noqa: E402
from anovit.scoring.smoothing import gaussian_blur  # noqa: E402

WEIGHTS = HERE.parents[1] / "shared/weights/vit_tiny_patch16_224.safetensors"
DATA = HERE.parents[1] / "shared/data/mvtec"


class Encoder(nn.Module):
    """The frozen ViT: (B, 3, S, S) in [0, 1] -> patch tokens of every block (L, B, N, D)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.enc = ViTEncoder("vit_tiny_patch16_224", size, 16, weights=WEIGHTS)
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.enc.vit
        t = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed((x - self.enc.mean) / self.enc.std))))
        out = []
        for block in vit.blocks:
            t = block(t)
            out.append(t[:, self.enc.num_prefix_tokens :])
        return torch.stack(out)  # (L, B, N, D)


class Decoder(nn.Module):
    """Noisy bottleneck (dropout MLP on the mean of the target blocks' tokens) + ``depth`` transformer blocks."""

    def __init__(self, dim: int, depth: int, dropout: float, n_tokens: int) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        self.bottleneck = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.blocks = nn.ModuleList(Block(dim, num_heads=3, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth))

    def forward(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """tokens (T, B, N, D) of the target blocks -> each decoder block's output [(B, N, D)], last first."""
        x = self.bottleneck(tokens.mean(dim=0))
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out[::-1]


def grouped(feats: list[torch.Tensor] | torch.Tensor, groups: int) -> list[torch.Tensor]:
    """Mean of each of ``groups`` consecutive equal groups: [(B, N, D)] per group."""
    n = len(feats)
    k = n // groups
    return [torch.stack(list(feats[i * k : (i + 1) * k])).mean(dim=0) for i in range(groups)]


def distance(enc: torch.Tensor, dec: list[torch.Tensor], groups: int) -> torch.Tensor:
    """(T, B, N, D) encoder tokens, decoder outputs -> per-patch 1 - cosine, summed over groups: (B, N)."""
    return sum(1 - F.cosine_similarity(a, b, dim=-1) for a, b in zip(grouped(enc, groups), grouped(dec, groups)))


def hard_mined_loss(enc: torch.Tensor, dec: list[torch.Tensor], groups: int, share: float) -> torch.Tensor:
    """Dinomaly's loose loss: the points reconstructed best (the lowest ``share``) count a tenth."""
    loss = 0.0
    for a, b in zip(grouped(enc, groups), grouped(dec, groups)):
        d = 1 - F.cosine_similarity(a, b, dim=-1)  # (B, N)
        thr = torch.quantile(d.detach().flatten().float(), share)
        w = torch.where(d.detach() < thr, 0.1, 1.0)
        loss = loss + (d * w).sum() / w.sum()
    return loss / groups


def load(paths: list[Path], size: int) -> torch.Tensor:
    return as_float_tensor(torch.stack([load_image(p, size) for p in paths]))


def run(category: str, size: int, steps: int, seed: int, layers: range, depth: int, dropout: float) -> dict:
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    encoder = Encoder(size)
    train = load([s.image for s in mvtec_samples(DATA, category, "train")], size)
    test_samples = mvtec_samples(DATA, category, "test")
    test = load([s.image for s in test_samples], size)
    labels = np.array([s.label for s in test_samples])
    have_masks = any(s.mask is not None for s in test_samples)
    masks = None
    if have_masks:
        masks = torch.stack(
            [load_mask(s.mask, size) if s.mask else torch.zeros(size, size, dtype=torch.bool) for s in test_samples]
        )
    lay = list(layers)
    cache = []
    views = [(), (-1,), (-2,), (-2, -1)]
    for d in views:
        for chunk in (train.flip(d) if d else train).split(32):
            cache.append(encoder(chunk)[lay].to(torch.bfloat16))
    cache = torch.cat(cache, dim=1)  # (T, V * n, N, D)
    t_cache = time.perf_counter() - t0

    decoder = Decoder(encoder.enc.embed_dim, depth, dropout, cache.shape[2])
    opt = torch.optim.AdamW(decoder.parameters(), lr=1e-3, weight_decay=1e-4, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    groups = 2
    decoder.train()
    t1 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(cache.shape[1], (16,), generator=gen)
        target = cache[:, idx].float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = decoder(target)
        share = 0.9 * min(1.0, step / (0.1 * steps))
        loss = hard_mined_loss(target, [o.float() for o in out], groups, share)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 0.1)
        opt.step()
        sched.step()
    t_train = time.perf_counter() - t1

    decoder.eval()
    gh = size // 16
    maps = []
    with torch.no_grad():
        for chunk in test.split(16):
            enc = encoder(chunk)[lay]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = decoder(enc)
            d = distance(enc, [o.float() for o in out], groups).view(-1, 1, gh, gh)
            maps.append(F.interpolate(d, size=(size, size), mode="bilinear", align_corners=False).squeeze(1))
    maps = gaussian_blur(torch.cat(maps), 4.0, 4.0)
    scores = {
        how: image_auroc(image_scores(maps, 0.0, how).numpy(), labels) for how in ("max", "top1", "top10", "mean")
    }
    pixel = None
    if masks is not None:
        from sklearn.metrics import roc_auc_score

        pixel = float(roc_auc_score(masks.flatten().numpy(), maps.flatten().numpy()))
    return dict(
        category=category,
        size=size,
        steps=steps,
        seed=seed,
        layers=f"{lay[0]}-{lay[-1]}",
        depth=depth,
        dropout=dropout,
        image=scores,
        pixel=pixel,
        cache_s=round(t_cache, 1),
        train_s=round(t_train, 1),
        loss=float(loss.detach()),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--categories", default="bottle,tire,screw")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--layers", default="2-9", help="the target blocks, first-last")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--out", type=Path, default=HERE / "feature_recon")
    ap.add_argument("--table", default="TABLE")
    args = ap.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "results.json"
    rows = json.loads(store.read_text()) if store.is_file() else []
    lo, hi = map(int, args.layers.split("-"))
    for category in [c for c in args.categories.split(",") if c]:  # '' rewrites the table only
        for seed in map(int, args.seeds.split(",")):
            row = run(category, args.size, args.steps, seed, range(lo, hi + 1), args.depth, args.dropout)
            print(json.dumps(row), flush=True)
            rows.append(row)
            store.write_text(json.dumps(rows, indent=1))
    lines = [
        f"Feature reconstruction (after Dinomaly) on the offline ViT-Ti; CPU: {cpu_name()}.",
        "",
        "| set | px | blocks | decoder depth | dropout | steps | seed | image AUROC max / top1 / top10 / mean "
        "| pixel AUROC | cache / train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        img = " / ".join(f"{r['image'][k]:.3f}" for k in ("max", "top1", "top10", "mean"))
        px = "-" if r["pixel"] is None else f"{r['pixel']:.3f}"
        lines.append(
            f"| {r['category']} | {r['size']} | {r['layers']} | {r['depth']} | {r['dropout']} | {r['steps']} "
            f"| {r['seed']} | {img} | {px} | {r['cache_s']} / {r['train_s']} |"
        )
    (args.out / f"{args.table}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
