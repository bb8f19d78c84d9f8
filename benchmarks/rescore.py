"""Re-score trained runs with other scoring settings, without training again.

The restoration model of a run stays as it was trained; only how its output is compared changes.
A variant is ``key=value`` pairs joined by ``;``:

- ``layers=2+5+8``: the reference ViT blocks the feature score compares (every block up to the
  run's last one is in its saved reference encoder);
- ``sigma=4``: the Gaussian that smooths the score map, in pixels;
- ``flips=none|h|v|hv``: the test-time flips (``ScoreConfig.test_flips``; the runs were trained
  with both flips);
- ``score=l2+feature``: a subset of the run's score kinds (each keeps the scale training measured);
- ``image=max|mean|top1|std``: the image score taken from the map;
- ``border=0.05``: the share of the image size at each edge that the image score ignores;
- ``band=0.05``: the image score read from that outer band of the map alone, its interior left out (what the border
  holds: an experiment, not an option of the package);
- ``shift=4``: the test-time shift in pixels (``ScoreConfig.test_shift``; 0: one view);
- ``grid=K:D``: K x K shifted views instead of the shift's four, D px apart in each axis and centred on the image
  (``3:5``: offsets -5, 0, 5; ``4:4``: -6, -2, 2, 6); an experiment, not an option of the package;
- ``masks=K``: the complementary patch masks of an inpainting run (``ScoreConfig.test_masks``; runs of other
  objectives are skipped);
- ``precision=fp32|bf16``: the precision the maps are computed in (default: the run's, as ``anovit test``);
- ``map=all|ordinary``: the channels a token run's map localises with (``ModelConfig.token_map_channels``): the
  model rebuilt so, the weights kept (a run trained with the loss over all channels keeps it), the ordinary channels
  and peak levels measured on the run's own hold-out as training measures them (``--benchmark`` of MVTec-layout runs
  only);
- ``peaks=0.05``: a token run's group peak levels measured again on its hold-out without the patches that reach into
  that outer share of the side (training measures them without the image score's border; a run saved with border 0
  measured them over every patch; ``--benchmark`` of MVTec-layout runs only).

The default variant ``base`` keeps the run's own settings. Writes OUT/rescore.json (every variant
measured so far) and OUT/TABLE.md (the variants given). The runs are the ablation's
(OUT/runs/<data>/<setting>, ablation.py), or with ``--benchmark DIR`` those of an ``anovit benchmark``
folder (DIR/runs/<class>/<model>, every model; OUT defaults to DIR; ``--data ROOT``: its dataset's root):

    python benchmarks/rescore.py --setting tiny --variants base,sigma=4,sigma=8,flips=h,flips=hv
    python benchmarks/rescore.py --benchmark benchmarks/ablation/digits-tiny --variants base,flips=h,flips=hv
    python benchmarks/rescore.py --benchmark BENCH --data ../shared/data/mvtec --variants shift=0,shift=4,shift=8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ablation import _num, _write_markdown, datasets, load_set  # noqa: E402
from anovit.config import RunConfig  # noqa: E402
from anovit.data import ImageDataset, mvtec_samples, split_train_val  # noqa: E402
from anovit.data.oneclass import one_class_data  # noqa: E402
from anovit.evaluation.evaluate import evaluate, measure_channel_energy, measure_peak_levels  # noqa: E402
from anovit.files import WEIGHTS_FILE
from anovit.models import build_model
from anovit.models.checkpoint import load_trained_model
from anovit.runtime.device import resolve_device
from anovit.scoring import maps  # noqa: E402

VARIANT_KEYS = (
    "layers",
    "sigma",
    "flips",
    "score",
    "image",
    "masks",
    "shift",
    "grid",
    "precision",
    "border",
    "band",
    "map",
    "peaks",
)


def parse_variant(text: str) -> dict[str, str]:
    """``sigma=4;flips=h`` -> {"sigma": "4", "flips": "h"}; ``base`` -> {}."""
    if text == "base":
        return {}
    out = dict(part.split("=", 1) for part in text.split(";"))
    unknown = set(out) - set(VARIANT_KEYS)
    if unknown:
        raise SystemExit(f"variant {text!r}: unknown keys {sorted(unknown)}; expected {', '.join(VARIANT_KEYS)}")
    return out


def grid_offsets(text: str) -> tuple[tuple[int, int], ...]:
    """``K:D`` -> the (dy, dx) offsets of K x K views D px apart, centred: ``4:4`` -> -6, -2, 2, 6 in each axis."""
    k, d = (int(x) for x in text.split(":"))
    if (k - 1) * d % 2:
        raise SystemExit(f"grid={text}: (K - 1) x D must be even, for whole-pixel offsets centred on the image")
    steps = [i * d - (k - 1) * d // 2 for i in range(k)]
    return tuple((dy, dx) for dy in steps for dx in steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="mvtec:../shared/data/mvtec:bottle,synthetic,photo")
    ap.add_argument("--setting", default="tiny")
    ap.add_argument(
        "--benchmark", type=Path, metavar="DIR", help="re-score the runs of this 'anovit benchmark' folder instead"
    )
    ap.add_argument("--data", type=Path, help="with --benchmark: the dataset's root (not needed for digits)")
    ap.add_argument("--variants", default="base,sigma=4,sigma=8,flips=h,flips=hv")
    ap.add_argument(
        "--out",
        type=Path,
        help="where rescore.json and the table go (default: benchmarks/ablation, or --benchmark's DIR)",
    )
    ap.add_argument(
        "--table", default="rescore", help="the table's name: OUT/TABLE.md, with one column per variant given"
    )
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    dev = resolve_device("auto")
    out = args.out or args.benchmark or Path("benchmarks/ablation")
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "rescore.json"
    rows = json.loads(results_file.read_text()) if results_file.is_file() else []
    done = {(r["data"], r["setting"], r["variant"]) for r in rows}
    variants = args.variants.split(",")
    for label, setting, run, test_set in runs_to_score(args, out):
        if not (run / WEIGHTS_FILE).is_file() or all((label, setting, v) in done for v in variants):
            continue
        cfg, trained = load_trained_model(run, dev)
        test = test_set(cfg.data.image_size)
        reference = getattr(trained, "reference", None)
        own_layers = reference.layers if reference is not None else ()
        for v in variants:
            opts = parse_variant(v)
            if (label, setting, v) in done:
                continue
            model = trained
            if "map" in opts or "peaks" in opts:
                if not (cfg.model.token_decoder_depth and args.benchmark and args.data):
                    continue  # a token run of an MVTec-layout benchmark: its hold-out is read again
                category = label.split("/", 1)[1]
                channels = opts.get("map", cfg.model.token_map_channels)
                peaks_border = float(opts.get("peaks", cfg.score.border))
                holdout = hold_out(args.data, category, cfg)
                model = with_map_channels(cfg, trained, channels, holdout, dev, peaks_border)
            if "layers" in opts:
                layers = tuple(int(i) for i in opts["layers"].split("+"))
                if reference is None or max(layers) >= len(reference.vit.blocks):
                    continue  # no reference encoder, or one without that block
                reference.layers = layers
            kinds = tuple(opts["score"].split("+")) if "score" in opts else cfg.score.kinds
            if not set(kinds) <= set(cfg.score.kinds):
                continue  # the run does not compute that map
            if "masks" in opts and cfg.train.objective != "inpaint":
                continue  # only an inpainting model fills hidden patches
            scale = dict(zip(cfg.score.kinds, cfg.score.scales or (1.0,) * len(cfg.score.kinds)))
            score = replace(
                cfg.score,
                sigma=float(opts.get("sigma", cfg.score.sigma)),
                test_flips=opts.get("flips", cfg.score.test_flips),
                test_shift=int(opts.get("shift", cfg.score.test_shift)),
                kinds=kinds,
                scales=tuple(scale[k] for k in kinds) if cfg.score.scales else (),
                image_score=opts.get("image", cfg.score.image_score),
                test_masks=int(opts.get("masks", cfg.score.test_masks)),
                border=float(opts.get("border", cfg.score.border)),
            )
            own_offsets, own_image_scores = maps.shift_offsets, maps.image_scores
            if "grid" in opts:  # combined_map asks maps.shift_offsets for its views
                grid = grid_offsets(opts["grid"])
                maps.shift_offsets = lambda _shift, grid=grid: grid
            if "band" in opts:  # score_batch asks maps.image_scores for the image scores
                maps.image_scores = band_image_scores(float(opts["band"]), own_image_scores)
            try:
                ev = evaluate(model, test, score, dev, opts.get("precision", cfg.train.precision), progress=False)
            finally:
                maps.shift_offsets, maps.image_scores = own_offsets, own_image_scores
            rows.append(
                dict(
                    data=label,
                    setting=setting,
                    variant=v,
                    image_auroc=ev.image_auroc,
                    pixel_auroc=ev.pixel_auroc,
                    aupro=ev.aupro,
                )
            )
            print(
                f"{label:20s} {setting:8s} {v:16s} image {ev.image_auroc:.3f} pixel {_num(ev.pixel_auroc)} aupro "
                f"{_num(ev.aupro)}",
                flush=True,
            )
            results_file.write_text(json.dumps(rows, indent=1))
            if reference is not None:
                reference.layers = own_layers
    write_table(rows, variants, out / f"{args.table}.md")


def band_image_scores(share: float, image_scores: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``image_scores`` read from the outer ``share`` of the map's side at each edge alone: (B, H, W) -> (B,)."""

    def scores(smoothed: torch.Tensor, _border: float, how: str = "max") -> torch.Tensor:
        band = band_mask(int(smoothed.shape[-2]), int(smoothed.shape[-1]), share).to(smoothed.device)
        return image_scores(smoothed[:, band].unsqueeze(1), 0.0, how)  # (B, 1, pixels of the band)

    return scores


def band_mask(h: int, w: int, share: float) -> torch.Tensor:
    """(H, W) bool: True on the outer ``share`` of the side at each edge (the pixels ``--border`` leaves out)."""
    bh, bw = round(share * h), round(share * w)
    band = torch.ones(h, w, dtype=torch.bool)
    band[bh : h - bh, bw : w - bw] = False
    return band


def hold_out(root: Path, category: str, cfg: RunConfig) -> Dataset:
    """The normal hold-out a run of ``category`` (an MVTec-layout folder under ``root``) was calibrated on."""
    normal = ImageDataset(mvtec_samples(root, category, "train"), cfg.data.image_size, progress=False)
    _, val_idx = split_train_val(len(normal), cfg.data.val_fraction, cfg.train.seed)
    return normal.subset(val_idx)


def with_map_channels(
    cfg: RunConfig,
    trained: torch.nn.Module,
    channels: str,
    holdout: Dataset,
    dev: torch.device,
    peaks_border: float,
) -> torch.nn.Module:
    """A token run's model rebuilt to localise with ``channels`` (``ModelConfig.token_map_channels``): its trained
    weights, and what training measures on the hold-out (its ordinary channels, its peak levels, these without the
    patches in the outer ``peaks_border`` of the side) measured again."""
    model = build_model(replace(cfg.model, token_map_channels=channels), load_encoder_weights=False)
    measured = ("group_peaks", "ordinary")
    model.load_state_dict({k: v for k, v in trained.state_dict().items() if k not in measured}, strict=False)
    model.to(dev).eval()
    if channels == "ordinary":
        model.set_ordinary_channels(measure_channel_energy(model, holdout, dev, cfg.train.precision))
    if model.merge == "max":
        model.set_peak_levels(measure_peak_levels(model, holdout, dev, cfg.train.precision, border=peaks_border))
    return model


def runs_to_score(args: argparse.Namespace, out: Path) -> list[tuple[str, str, Path, Callable[[int], Dataset]]]:
    """(data label, setting, run folder, image size -> test set) for each run to re-score; ``out``: the ablation's
    folder."""
    if args.benchmark is None:
        return [
            (
                label,
                args.setting,
                out / "runs" / label.replace("/", "_") / args.setting,
                lambda size, label=label, root=root, category=category: load_set(label, root, category, size)[1],
            )
            for label, root, category in datasets(args.sets, out)
        ]
    bench = json.loads((args.benchmark / "results.json").read_text())
    dataset = bench["dataset"]
    if dataset == "mvtec" and args.data is None:
        raise SystemExit("--benchmark of an MVTec AD folder: --data ROOT, the root its categories were read from")

    def test_set(category: str) -> Callable[[int], Dataset]:
        if dataset == "mvtec":
            return lambda size: ImageDataset(mvtec_samples(args.data, category, "test"), size, progress=False)
        return lambda size: one_class_data(dataset, args.data, category, size).test

    # every trained run in the folder: results.json lists the last call's categories only where a script made the
    # folder one category at a time (benchmarks/resolution.py)
    runs = args.benchmark / "runs"
    return [
        (f"{dataset}/{category.name}", model.name, model, test_set(category.name))
        for category in sorted(runs.iterdir())
        for model in sorted(category.iterdir())
        if (model / WEIGHTS_FILE).is_file()
    ]


def write_table(rows: list[dict], variants: list[str], path: Path) -> None:
    """One row per dataset and setting, one column per variant: image / pixel AUROC, and the mean of each setting."""
    keys = sorted({(r["data"], r["setting"]) for r in rows if r["variant"] in variants})
    cell = {(r["data"], r["setting"], r["variant"]): r for r in rows}

    def both(got: list[dict]) -> str:
        mean = {
            k: sum(r[k] for r in got) / len(got) if all(r[k] is not None for r in got) else None
            for k in ("image_auroc", "pixel_auroc")
        }
        return f"{_num(mean['image_auroc'])} / {_num(mean['pixel_auroc'])}"

    body = [[d, st, *(both([cell[d, st, v]]) if (d, st, v) in cell else "–" for v in variants)] for d, st in keys]
    for setting in sorted({st for _, st in keys}):  # the mean of each setting's rows, where a variant has them all
        mine = [k for k in keys if k[1] == setting]
        got = [[cell[k + (v,)] for k in mine if k + (v,) in cell] for v in variants]
        body.append([f"**mean** ({len(mine)})", setting, *(both(g) if len(g) == len(mine) else "–" for g in got)])
    _write_markdown(path, ["data", "setting", *(v.replace(";", ", ") for v in variants)], body)
    print(f"table: {path}")


if __name__ == "__main__":
    main()
