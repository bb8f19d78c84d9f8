"""Which blocks of the reference ViT the ``feature`` score should compare: re-scores trained runs.

The ``tiny`` default compares blocks (2, 5, 8) of the frozen ViT-Ti (mean of 1 - cosine over the
three). This re-scores every trained run of one ablation setting with other block sets, without
training again (the restoration model is the same; only the comparison changes; every block up to
the run's last one is in its saved reference encoder), and writes OUT/feature_layers.md.

    python benchmarks/feature_layers.py --runs benchmarks/ablation/runs --setting tiny \\
        --layers 2+5+8,2,5,8,2+5,5+8,0+2+5+8 --out benchmarks/ablation
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ablation import _write_markdown, datasets, load_set  # noqa: E402

from anovit import checkpoint as ckpt  # noqa: E402
from anovit.engine import evaluate, resolve_device  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="mvtec:../shared/data/mvtec:bottle,synthetic,photo")
    ap.add_argument("--setting", default="tiny")
    ap.add_argument("--layers", default="2+5+8,2,5,8,2+5,5+8,0+2+5+8")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/ablation"))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    dev = resolve_device("auto")
    results_file = args.out / "feature_layers.json"
    rows = json.loads(results_file.read_text()) if results_file.is_file() else []
    done = {(r["data"], r["setting"], r["layers"]) for r in rows}
    variants = args.layers.split(",")
    for label, root, category in datasets(args.sets, args.out):
        run = args.out / "runs" / label.replace("/", "_") / args.setting
        if not (run / ckpt.WEIGHTS_FILE).is_file() or all((label, args.setting, v) in done for v in variants):
            continue
        cfg, model = ckpt.load_trained_model(run, dev)
        _, test = load_set(label, root, category, cfg.data.image_size)
        kept = len(model.reference.vit.blocks)
        for v in variants:
            layers = tuple(int(i) for i in v.split("+"))
            if (label, args.setting, v) in done or max(layers) >= kept:
                continue
            model.reference.layers = layers  # blocks up to the run's last one are all there
            ev = evaluate(model, test, replace(cfg.score, kinds=("feature",)), dev, cfg.train.precision, progress=False)
            rows.append(dict(data=label, setting=args.setting, layers=v, image_auroc=ev.image_auroc, pixel_auroc=ev.pixel_auroc))
            print(f"{label:20s} {v:10s} image {ev.image_auroc:.3f} pixel {ev.pixel_auroc:.3f}", flush=True)
            results_file.write_text(json.dumps(rows, indent=1))
    write_table(rows, variants, args.out / "feature_layers.md")


def write_table(rows: list[dict], variants: list[str], path: Path) -> None:
    """One row per dataset, one column per block set: image / pixel AUROC, and the mean over the datasets."""
    data = sorted({r["data"] for r in rows})
    cell = {(r["data"], r["layers"]): r for r in rows}
    body = [[d, *(f"{cell[d, v]['image_auroc']:.3f} / {cell[d, v]['pixel_auroc']:.3f}" if (d, v) in cell else "–" for v in variants)]
            for d in data]  # fmt: skip
    means = []
    for v in variants:
        got = [cell[d, v] for d in data if (d, v) in cell]
        means.append(f"{sum(r['image_auroc'] for r in got) / len(got):.3f} / {sum(r['pixel_auroc'] for r in got) / len(got):.3f}"
                     if len(got) == len(data) else "–")
    _write_markdown(path, ["data", *(f"blocks {v.replace('+', ', ')}" for v in variants)], [*body, ["**mean**", *means]])
    print(f"table: {path}")

if __name__ == "__main__":
    main()
