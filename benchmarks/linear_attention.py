"""The token decoder's attention: linear (Dinomaly's; the default since it measured level with softmax at about 60 %
of its training time) against softmax, on real sets (issue 24).

Linear attention (Katharopoulos et al., ICML 2020; Dinomaly, Guo et al., CVPR 2025): phi(x) = elu(x) + 1, out_i =
phi(q_i) sum_j phi(k_j) v_j^T / phi(q_i) sum_j phi(k_j), with the same qkv and projection weights as softmax attention
(``anovit.models.attention``). Each setting is one ``anovit benchmark`` with ``--token-attention``; with the same
seed both decoders start from the same weights.

    python benchmarks/linear_attention.py --data ../shared/data/mvtec --categories screw,tire,bottle --seed 0 \
        --attention linear --runs RUNS --out benchmarks/linear_attention

Writes OUT/linear_attention-seedS.md (``--attention softmax``: softmax_attention-seedS.md) from the runs' metrics.
The committed seed-0 and seed-1 tables were written by this script's first form, which swapped timm's attention
in-process; ``--token-attention linear`` builds the same decoder bit for bit (same initial weights, same outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ablation import WEIGHTS, _num, _write_markdown  # noqa: E402
from anovit.config import TOKEN_ATTENTIONS  # noqa: E402
from anovit.experiments.benchmark import run_benchmark  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="an MVTec-layout root")
    ap.add_argument("--categories", default="screw,tire,bottle")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attention", default="linear", choices=TOKEN_ATTENTIONS)
    ap.add_argument("--runs", type=Path, required=True, help="where the benchmark folder goes (not the repo)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/linear_attention"))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    bench = args.runs / f"{args.attention}-seed{args.seed}"
    categories = args.categories.split(",")
    run_benchmark(
        "mvtec",
        args.data,
        ["anovit"],
        bench,
        categories=categories,
        seed=args.seed,
        encoder_weights=WEIGHTS,
        token_attention=args.attention,
    )
    body = []
    for c in categories:
        m = json.loads((bench / "runs" / c / "anovit" / "metrics.json").read_text())
        pixel = f"{_num(m['pixel_auroc'])} ({_num(m['aupro'])})" if m["pixel_auroc"] is not None else _num(None)
        body.append([c, args.seed, _num(m["image_auroc"]), pixel, f"{m['seconds']:.0f}"])
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / f"{args.attention}_attention-seed{args.seed}.md"
    _write_markdown(table, ["set", "seed", "image AUROC", "pixel AUROC (AUPRO)", "scoring seconds"], body)
    print(table.read_text())


if __name__ == "__main__":
    main()
