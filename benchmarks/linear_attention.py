"""Dinomaly's linear attention in the default's decoder, against its softmax attention (issue 24), as an experiment:
the package's decoder keeps timm's ``Block``; here its attention is swapped for the run's whole process.

Linear attention (Katharopoulos et al., ICML 2020; Dinomaly, Guo et al., CVPR 2025, uses it so that the decoder
cannot focus on the one token it should not copy): phi(x) = elu(x) + 1, out_i = phi(q_i) sum_j phi(k_j) v_j^T /
phi(q_i) sum_j phi(k_j), with the same qkv and projection weights as softmax attention.

    python benchmarks/linear_attention.py --data ../shared/data/mvtec --categories screw,tire,bottle --seed 0 \
        --runs RUNS --out benchmarks/linear_attention

The runs under RUNS are ordinary ``anovit benchmark`` folders, but their weights need the swap to score as they were
trained (a plain ``anovit test`` would score them with softmax attention): they are for this comparison only.
Writes OUT/linear_attention-seedS.md from the runs' metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention, Block

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import anovit.models.tokens as tokens  # noqa: E402
from ablation import WEIGHTS, _num, _write_markdown  # noqa: E402
from anovit.experiments.benchmark import run_benchmark  # noqa: E402


def linear_attention(
    self: Attention, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **_: object
) -> torch.Tensor:
    """timm ``Attention.forward`` with softmax(q k^T) v replaced by the kernel form above: (B, N, C) -> (B, N, C)."""
    b, n, _c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
    q, k = F.elu(self.q_norm(q)) + 1.0, F.elu(self.k_norm(k)) + 1.0
    kv = k.transpose(-2, -1) @ v  # (B, heads, head_dim, head_dim)
    norm = q @ k.sum(dim=-2, keepdim=True).transpose(-2, -1)  # (B, heads, N, 1)
    out = (q @ kv) / (norm + 1e-6)  # (B, heads, N, head_dim)
    out = out.transpose(1, 2).reshape(b, n, -1)
    return self.proj_drop(self.proj(self.norm(out)))


class LinearBlock(Block):
    """timm's ``Block`` with :func:`linear_attention`: what the decoder is built of while the script runs."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.attn.forward = linear_attention.__get__(self.attn)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="an MVTec-layout root")
    ap.add_argument("--categories", default="screw,tire,bottle")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=Path, required=True, help="where the benchmark folder goes (not the repo)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/linear_attention"))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    tokens.Block = LinearBlock  # the decoder's blocks only: the frozen encoder is timm's own ViT
    bench = args.runs / f"linear-seed{args.seed}"
    categories = args.categories.split(",")
    run_benchmark("mvtec", args.data, ["anovit"], bench, categories=categories, seed=args.seed, encoder_weights=WEIGHTS)
    body = []
    for c in categories:
        m = json.loads((bench / "runs" / c / "anovit" / "metrics.json").read_text())
        pixel = f"{_num(m['pixel_auroc'])} ({_num(m['aupro'])})" if m["pixel_auroc"] is not None else _num(None)
        body.append([c, args.seed, _num(m["image_auroc"]), pixel, f"{m['seconds']:.0f}"])
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / f"linear_attention-seed{args.seed}.md"
    _write_markdown(table, ["set", "seed", "image AUROC", "pixel AUROC (AUPRO)", "scoring seconds"], body)
    print(table.read_text())


if __name__ == "__main__":
    main()
