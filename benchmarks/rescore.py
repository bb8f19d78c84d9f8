"""Re-score trained runs with other scoring settings, without training again.

The restoration model of a run stays as it was trained; only how its output is compared changes.
A variant is ``key=value`` pairs joined by ``;``:

- ``layers=2+5+8``: the reference ViT blocks the feature score compares (every block up to the
  run's last one is in its saved reference encoder);
- ``sigma=4``: the Gaussian that smooths the score map, in pixels;
- ``flips=none|h|v|hv``: the test-time flips (``ScoreConfig.test_flips``; the runs were trained
  with both flips).

The default variant ``base`` keeps the run's own settings. Writes OUT/rescore.json (every variant measured so far) and OUT/TABLE.md (the variants given).

    python benchmarks/rescore.py --setting tiny --variants base,sigma=4,sigma=8,flips=h
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


def parse_variant(text: str) -> dict[str, str]:
    """``sigma=4;flips=h`` -> {"sigma": "4", "flips": "h"}; ``base`` -> {}."""
    if text == "base":
        return {}
    out = dict(part.split("=", 1) for part in text.split(";"))
    unknown = set(out) - {"layers", "sigma", "flips"}
    if unknown:
        raise SystemExit(f"variant {text!r}: unknown keys {sorted(unknown)}; expected layers, sigma, flips")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="mvtec:../shared/data/mvtec:bottle,synthetic,photo")
    ap.add_argument("--setting", default="tiny")
    ap.add_argument("--variants", default="base,sigma=4,sigma=8,flips=h,flips=hv")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/ablation"))
    ap.add_argument("--table", default="rescore", help="the table's name: OUT/TABLE.md, with one column per variant given")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    dev = resolve_device("auto")
    results_file = args.out / "rescore.json"
    rows = json.loads(results_file.read_text()) if results_file.is_file() else []
    done = {(r["data"], r["setting"], r["variant"]) for r in rows}
    variants = args.variants.split(",")
    for label, root, category in datasets(args.sets, args.out):
        run = args.out / "runs" / label.replace("/", "_") / args.setting
        if not (run / ckpt.WEIGHTS_FILE).is_file() or all((label, args.setting, v) in done for v in variants):
            continue
        cfg, model = ckpt.load_trained_model(run, dev)
        _, test = load_set(label, root, category, cfg.data.image_size)
        kept = len(model.reference.vit.blocks)
        own_layers = model.reference.layers
        for v in variants:
            opts = parse_variant(v)
            layers = tuple(int(i) for i in opts["layers"].split("+")) if "layers" in opts else own_layers
            if (label, args.setting, v) in done or max(layers) >= kept:
                continue
            model.reference.layers = layers
            score = replace(cfg.score, sigma=float(opts.get("sigma", cfg.score.sigma)), test_flips=opts.get("flips", cfg.score.test_flips))
            ev = evaluate(model, test, score, dev, cfg.train.precision, progress=False)
            rows.append(dict(data=label, setting=args.setting, variant=v, image_auroc=ev.image_auroc, pixel_auroc=ev.pixel_auroc,
                             aupro=ev.aupro))  # fmt: skip
            print(f"{label:20s} {v:16s} image {ev.image_auroc:.3f} pixel {ev.pixel_auroc:.3f} aupro {ev.aupro or 0:.3f}", flush=True)
            results_file.write_text(json.dumps(rows, indent=1))
        model.reference.layers = own_layers
    write_table(rows, variants, args.out / f"{args.table}.md")


def write_table(rows: list[dict], variants: list[str], path: Path) -> None:
    """One row per dataset, one column per variant: image / pixel AUROC, and the mean over the datasets."""
    data = sorted({r["data"] for r in rows})
    cell = {(r["data"], r["variant"]): r for r in rows}
    body = [[d, *(f"{cell[d, v]['image_auroc']:.3f} / {cell[d, v]['pixel_auroc']:.3f}" if (d, v) in cell else "–" for v in variants)]
            for d in data]  # fmt: skip
    means = []
    for v in variants:
        got = [cell[d, v] for d in data if (d, v) in cell]
        means.append(f"{sum(r['image_auroc'] for r in got) / len(got):.3f} / {sum(r['pixel_auroc'] for r in got) / len(got):.3f}"
                     if len(got) == len(data) else "–")
    _write_markdown(path, ["data", *(v.replace(";", ", ") for v in variants)], [*body, ["**mean**", *means]])
    print(f"table: {path}")


if __name__ == "__main__":
    main()
