"""Ablation for the CPU default: objective x score x resolution x {random, pretrained ViT-Ti} (issue 10).

Each training setting is trained once per dataset; every score that the trained model supports is
then evaluated on the same model (the scales of combined scores are measured on the validation
hold-out, as ``anovit train`` does). The l2-CAE (the paper's baseline) is trained with the same
epochs and size. Rows already in the results file are skipped, so the script resumes.

    python benchmarks/ablation.py --sets mvtec:../shared/data/mvtec:bottle,synthetic \
        --settings cae,tiny-reconstruct,tiny,... --out benchmarks/ablation

The README's summary table, on the built-in sets and bottle, then on real photographs (photo_sets.py):

    python benchmarks/ablation.py --sets mvtec:../shared/data/mvtec:bottle,synthetic \
        --settings cae,tiny-reconstruct,tiny-128,tiny-inpaint-floss,tiny-5fills,tiny,tiny-random \
        --scores l2@max,feature@max,feature@top1,l2@top1
    python benchmarks/ablation.py --sets mvtec:../shared/data/mvtec:bottle,photo \
        --settings cae,tiny,tiny-reconstruct-224 \
        --scores l2@max,feature@max,feature@top1,l2@top1

Writes OUT/results.json (one row per dataset x setting x score), OUT/ablation.md and OUT/summary.md
(OUT/digits.md for digits). A score ``KIND@IMAGE_SCORE`` (e.g. ``l2+feature@mean``) also sets
``--image-score``; a plain ``KIND`` takes the setting's own, and the row names it. ``KIND@IMAGE_SCORE/FLIPS``
(e.g. ``feature@top1/hv``) also sets ``--test-flips``; without it a row takes the setting's own, and
names it unless it is ``none``. The digits table of the README:

    python benchmarks/ablation.py --sets digits --out benchmarks/ablation/digits \
        --settings cae,cae-32,tiny-reconstruct-32,tiny-32,tiny-inpaint-32 \
        --scores l2@max,feature@max,l2+feature@max,l2@mean,feature@mean,l2+feature@mean
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from anovit.config import PRE_BLUR_FILLS, RunConfig, ScoreConfig  # noqa: E402
from anovit.data import ImageDataset, make_synthetic_mvtec, mvtec_samples, split_train_val  # noqa: E402
from anovit.data.oneclass import one_class_data  # noqa: E402
from anovit.evaluation.evaluate import evaluate, measure_scales  # noqa: E402
from anovit.files import WEIGHTS_FILE
from anovit.models.checkpoint import load_trained_model
from anovit.resolve import resolve_config  # noqa: E402
from anovit.runs.train import train_on  # noqa: E402
from anovit.runtime.device import resolve_device
from photo_sets import PHOTOS, make_photo_mvtec  # noqa: E402

WEIGHTS = os.environ.get(
    "ANOVIT_ENCODER_WEIGHTS",
    str(Path(__file__).resolve().parents[2] / "shared/weights/vit_tiny_patch16_224.safetensors"),
)
SYNTHETIC = ("weave", "sand", "fibres", "tiles", "capsule", "nut")

# name -> (preset, options for resolve_config). Pretrained settings get the shared ViT-Ti (WEIGHTS).
PRETRAINED = dict(encoder_weights=WEIGHTS)
RANDOM = dict(pretrained=False, feature_loss=0.0, score=("l2",))


def opts(*base: dict, **kw: object) -> dict:
    """The options of ``base`` dicts merged in order, then ``kw``."""
    return {k: v for d in (*base, kw) for k, v in d.items()}


# restore's anomalies before the blur fill: the settings measured then keep them, so that they reproduce
FIVE_FILLS = dict(anomaly_fills=PRE_BLUR_FILLS)
# The CPU default before 224 px (issue 10, first pass): 128 px, a wider decoder, at least 400 steps.
AT128 = dict(FIVE_FILLS, image_size=128, decoder_channels=(256, 128, 64, 32, 16), min_steps=400, preset_epochs=40)
NARROW = (128, 64, 32, 16, 16)
SETTINGS: dict[str, tuple[str, dict]] = {
    "cae": ("tiny", dict(AT128, model="cae")),  # the paper's baseline, same size and steps as the 128-px settings
    "small": ("small", dict(score=("l2",))),  # the former CPU default: from scratch, 64 px, reconstruct
    "tiny-reconstruct": (
        "tiny",
        opts(PRETRAINED, AT128, objective="reconstruct", feature_loss=0.0),
    ),  # the paper's objective
    "tiny-reconstruct-floss": ("tiny", opts(PRETRAINED, AT128, objective="reconstruct")),
    "tiny-inpaint-floss": ("tiny", opts(PRETRAINED, AT128, objective="inpaint")),
    "tiny-restore-l2loss": ("tiny", opts(PRETRAINED, AT128, feature_loss=0.0)),
    "tiny-128": ("tiny", opts(PRETRAINED, AT128)),  # the first default: restore + feature loss at 128 px
    "tiny-224": ("tiny", opts(PRETRAINED, AT128, image_size=224)),  # the same at 224 px
    "tiny-segment": ("tiny", opts(PRETRAINED, AT128, score=("feature", "segment"))),  # tiny-128 + a segmentation head
    "tiny-random": ("tiny", opts(RANDOM, AT128)),  # tiny-128 without pretrained weights (restore, from scratch)
    "tiny-random-reconstruct": ("tiny", opts(RANDOM, AT128, objective="reconstruct")),
    # offline without the weights file: what the default falls back to (224 px, from scratch), and candidates for it
    "fallback": ("tiny", dict(RANDOM)),
    "small-restore-128": (
        "small",
        dict(image_size=128, objective="restore", score=("l2",)),
    ),  # 8-px patches, 4 blocks, 128 px
    "small-restore-segment-128": (
        "small",
        dict(image_size=128, objective="restore", score=("gms", "segment")),
    ),  # 80 epochs
    "scratch": ("scratch", {}),  # the from-scratch preset: small-restore-segment-128 in 70 epochs
    # 224 px (the encoder's own size) within the CPU budget: a narrower decoder and fewer steps
    "tiny-224-narrow-300": (
        "tiny",
        opts(PRETRAINED, AT128, image_size=224, decoder_channels=NARROW, min_steps=300),
    ),  # 400 steps on bottle
    "tiny-inpaint-224-narrow-300": (
        "tiny",
        dict(PRETRAINED, objective="inpaint", image_size=224, decoder_channels=NARROW, min_steps=300, preset_epochs=30),
    ),
    "tiny-192-narrow": ("tiny", opts(PRETRAINED, AT128, image_size=192, decoder_channels=NARROW)),
    "tiny-segment-224": (
        "tiny",
        opts(PRETRAINED, FIVE_FILLS, score=("feature", "segment")),
    ),  # tiny-5fills + a segmentation head
    "tiny-segment-blur": (
        "tiny",
        opts(PRETRAINED, score=("feature", "segment")),
    ),  # tiny (six fills) + a segmentation head
    "tiny-segment-half": (
        "tiny",
        opts(PRETRAINED, score=("feature", "segment"), segment_scale=2),
    ),  # the default: the head at 112 px
    "tiny-segment-half-seed1": ("tiny", opts(PRETRAINED, score=("feature", "segment"), segment_scale=2, seed=1)),
    "tiny-segment-half-seed2": ("tiny", opts(PRETRAINED, score=("feature", "segment"), segment_scale=2, seed=2)),
    "tiny-5fills": ("tiny", opts(PRETRAINED, FIVE_FILLS)),  # the second default: tiny without the blur fill
    "tiny": (
        "tiny",
        dict(PRETRAINED),
    ),  # the third default: restore + feature loss at 224 px, narrow decoder, 300 steps; feature score
    "tiny-seed1": (
        "tiny",
        dict(PRETRAINED, seed=1),
    ),  # the third default, other seeds: how much one training run varies
    "tiny-seed2": ("tiny", dict(PRETRAINED, seed=2)),
    "cae-224": ("tiny", dict(model="cae")),  # the paper's baseline at the default's size and steps
    "tiny-reconstruct-224": (
        "tiny",
        opts(PRETRAINED, objective="reconstruct", feature_loss=0.0),
    ),  # the paper's objective, the default's budget
    # small sources (8 x 8 digits): coarse patch grids, 4 x 4 at 64 px, 3 x 3 at 48, 2 x 2 at 32
    "tiny-64": ("tiny", opts(PRETRAINED, FIVE_FILLS, image_size=64)),
    "tiny-inpaint-64": ("tiny", opts(PRETRAINED, image_size=64, objective="inpaint")),
    "cae-64": ("tiny", dict(model="cae", image_size=64)),
    "tiny-64-900": ("tiny", opts(PRETRAINED, FIVE_FILLS, image_size=64, min_steps=900, preset_epochs=30)),
    "tiny-reconstruct-64": ("tiny", opts(PRETRAINED, image_size=64, objective="reconstruct")),
    "tiny-32": ("tiny", opts(PRETRAINED, FIVE_FILLS, image_size=32)),  # a 2 x 2 patch grid
    "cae-32": ("tiny", dict(model="cae", image_size=32)),
    "tiny-48": ("tiny", opts(PRETRAINED, FIVE_FILLS, image_size=48)),  # a 3 x 3 patch grid
    "tiny-inpaint-32": (
        "tiny",
        opts(PRETRAINED, image_size=32, objective="inpaint"),
    ),  # each quarter filled in from the other three
    "tiny-reconstruct-32": (
        "tiny",
        opts(PRETRAINED, image_size=32, objective="reconstruct", feature_loss=0.0),
    ),  # the paper's recipe
}
# KIND[+KIND...][@IMAGE_SCORE][/TEST_FLIPS]: the map(s), how the image score is taken from the map, and the test-time
# flips (default: the setting's own)
SCORES = ("l2", "ssim", "gms", "feature", "l2+gms", "gms+feature", "l2+feature", "segment", "segment+feature")


def config_for(setting: str, epochs: int | None) -> RunConfig:
    preset, options = SETTINGS[setting]
    kw = dict(options)
    decoder, min_steps = kw.pop("decoder_channels", None), kw.pop("min_steps", None)  # not options of resolve_config
    preset_epochs, segment_scale = kw.pop("preset_epochs", None), kw.pop("segment_scale", None)
    if kw.get("encoder_weights") and "score" not in kw:
        kw["score"] = ("feature",)  # keeps the reference encoder; every score is evaluated below
    cfg = resolve_config(preset, epochs=epochs, **kw)
    if decoder is not None:
        cfg = replace(cfg, model=replace(cfg.model, decoder_channels=tuple(decoder)))
    if segment_scale is not None:
        cfg = replace(cfg, model=replace(cfg.model, segment_scale=segment_scale))
    # the preset's rule: at least min_steps, and preset_epochs on larger sets
    if min_steps is not None and epochs is None:
        cfg = replace(cfg, train=replace(cfg.train, min_steps=min_steps, epochs=preset_epochs or cfg.train.epochs))
    return cfg


def datasets(spec: str, root: Path) -> list[tuple[str, Path | None, str]]:
    """'mvtec:ROOT:cat1+cat2', 'synthetic[:cat1+cat2]', 'photo[:grass+gravel]' or 'digits:0+1' -> [(label, root,
    category)]."""
    out: list[tuple[str, Path | None, str]] = []
    for item in spec.split(","):
        if item.startswith("digits"):  # scikit-learn's digits, one class normal (no pixel masks)
            classes = item.split(":")[1].split("+") if ":" in item else [str(c) for c in range(10)]
            out += [(f"digits/{c}", None, c) for c in classes]
            continue
        # photo or photo:brick+grass: real photographs with planted defects (photo_sets.py)
        if item.startswith("photo"):
            names = item.split(":")[1].split("+") if ":" in item else list(PHOTOS)
            data = root / "photo"
            missing = tuple(n for n in names if not (data / n).is_dir())
            if missing:
                make_photo_mvtec(data, missing)
            out += [(f"photo/{n}", data, n) for n in names]
            continue
        if item.startswith("synthetic"):  # synthetic or synthetic:cat1+cat2
            cats = item.split(":")[1].split("+") if ":" in item else list(SYNTHETIC)
            data = root / "synthetic"
            if not all((data / c).is_dir() for c in SYNTHETIC):
                make_synthetic_mvtec(data, categories=SYNTHETIC, progress=True)
            out += [(f"synthetic/{c}", data, c) for c in cats]
        else:
            _, path, cats = item.split(":")
            out += [(f"mvtec/{c}", Path(path), c) for c in cats.split("+")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="mvtec:../shared/data/mvtec:bottle,synthetic")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--scores", default=",".join(SCORES))
    ap.add_argument("--epochs", type=int, help="override every setting's epochs")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/ablation"))
    ap.add_argument(
        "--figure", help="only draw OUT/figures/<data>.png (Figure 3 layout) from these trained settings, e.g. cae,tiny"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(os.cpu_count() or 2)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    rows = json.loads(results_file.read_text()) if results_file.is_file() else []
    done = {(r["data"], r["setting"], r["score"]) for r in rows}
    dev = resolve_device("auto")
    if args.figure:
        for label, root, category in datasets(args.sets, out):
            draw_figure(label, root, category, args.figure.split(","), out, dev)
        return
    for label, root, category in datasets(args.sets, out):
        for setting in args.settings.split(","):
            cfg = config_for(setting, args.epochs)
            l2_only = cfg.model.name == "cae" or setting == "small"
            scores = (
                [s for s in args.scores.split(",") if s.partition("@")[0] == "l2"] or ["l2"]
                if l2_only
                else [
                    s
                    for s in args.scores.split(",")
                    if ("feature" not in s or cfg.model.reference_layers)
                    and ("segment" not in s or cfg.model.segment_head)
                ]
            )
            run_dir = out / "runs" / label.replace("/", "_") / setting
            trained = (run_dir / "config.json").is_file()  # a trained run keeps its own scoring defaults
            own = RunConfig.load(run_dir / "config.json").score if trained else cfg.score
            scores = list(
                dict.fromkeys(_named(s, own) for s in scores)
            )  # rows always name the image score, and any test flips
            todo = [s for s in scores if (label, setting, s) not in done]
            if not todo:
                continue
            normal, test = load_set(label, root, category, cfg.data.image_size)
            if (run_dir / WEIGHTS_FILE).is_file() and (run_dir / "train_seconds.txt").is_file():
                seconds = float((run_dir / "train_seconds.txt").read_text())
            else:
                result = train_on(cfg, normal, run_dir, progress=True, calibrate=False)
                seconds = result.seconds
                (run_dir / "train_seconds.txt").write_text(f"{seconds:.1f}")
            cfg, model = load_trained_model(run_dir, dev)
            _, val_idx = split_train_val(len(normal), cfg.data.val_fraction, cfg.train.seed)
            val = normal.subset(val_idx)
            for score in todo:
                kinds, pool, flips = _parse_score(
                    score
                )  # e.g. feature@mean/hv: the feature map, averaged into the image score
                s = replace(
                    cfg.score, kinds=kinds, scales=(), image_score=pool, test_flips=flips or "none"
                )  # over the image and its flips
                if len(s.kinds) > 1:
                    s = replace(s, scales=measure_scales(model, val, s, dev, cfg.train.precision))
                start = time.perf_counter()
                ev = evaluate(model, test, s, dev, cfg.train.precision, progress=False)
                row = dict(
                    data=label,
                    setting=setting,
                    score=score,
                    image_auroc=ev.image_auroc,
                    pixel_auroc=ev.pixel_auroc,
                    size=cfg.data.image_size,
                    epochs=cfg.train.epochs,
                    train_seconds=round(seconds, 1),
                    test_seconds=round(time.perf_counter() - start, 1),
                    per_defect=ev.per_defect,
                )
                rows.append(row)
                print(
                    f"{label:20s} {setting:22s} {score:18s} image {ev.image_auroc:.3f} pixel {_num(ev.pixel_auroc)} "
                    f"train {seconds:.0f} s",
                    flush=True,
                )
                results_file.write_text(json.dumps(rows, indent=1))
            write_tables(rows, out)
    write_tables(rows, out)  # also when every row was measured before: the tables follow this file's columns


def write_tables(rows: list[dict], out: Path) -> None:
    """Every row (ablation.md) and the summaries: SUMMARY, SCRATCH_SUMMARY, HEAD_SUMMARY and the digits'."""
    write_table(rows, out / "ablation.md")
    write_summary(rows, out / "summary.md")
    write_summary(rows, out / "scratch.md", SCRATCH_SUMMARY)
    write_summary(rows, out / "segment_head.md", HEAD_SUMMARY)
    if any(r["data"].startswith("digits/") for r in rows):
        write_digits_summary(rows, out / "digits.md")


def _parse_score(score: str) -> tuple[tuple[str, ...], str, str | None]:
    """``l2+feature@top1/hv`` -> (("l2", "feature"), "top1", "hv"); a part left out is "" (image score) or None
    (flips)."""
    kinds, _, how = score.partition("@")
    pool, slash, flips = how.partition("/")
    return tuple(kinds.split("+")), pool, flips if slash else None


def _named(score: str, own: ScoreConfig) -> str:
    """A --scores entry with the run's own image score and test flips filled in: ``feature`` -> ``feature@top1/hv``."""
    kinds, pool, flips = _parse_score(score)
    flips = own.test_flips if flips is None else flips
    return f"{'+'.join(kinds)}@{pool or own.image_score}" + (f"/{flips}" if flips != "none" else "")


def load_set(label: str, root: Path | None, category: str, size: int) -> tuple:
    """(normal training images, labelled test images) of one dataset of :func:`datasets`."""
    if label.startswith("digits/"):
        data = one_class_data("digits", None, category, size)
        return data.train, data.test
    normal = ImageDataset(mvtec_samples(root, category, "train"), size, progress=False)
    return normal, ImageDataset(mvtec_samples(root, category, "test"), size, progress=False)


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def draw_figure(
    label: str, root: Path, category: str, settings: list[str], out: Path, dev: torch.device, n: int = 4
) -> None:
    """Image, ground truth and each setting's score map for ``n`` anomalous test images (one per defect kind first)."""
    from anovit.evaluation.evaluate import score_images
    from anovit.evaluation.figures import figure3
    from anovit.runs.test import figure_indices

    if root is None:  # digits: no ground-truth masks to draw
        return
    runs = out / "runs" / label.replace("/", "_")
    cfgs = {s: load_trained_model(runs / s, dev) for s in settings if (runs / s / WEIGHTS_FILE).is_file()}
    if not cfgs:
        return
    size = max(cfg.data.image_size for cfg, _ in cfgs.values())
    test = ImageDataset(mvtec_samples(root, category, "test"), size, progress=False)
    shown = figure_indices(test.samples, n)
    images = torch.stack([test[i]["image"] for i in shown])  # (n, 3, S, S) in [0, 1]
    maps = {}
    for setting, (cfg, model) in cfgs.items():
        x = torch.nn.functional.interpolate(images, size=cfg.data.image_size, mode="bilinear", antialias=True)
        m = score_images(model, x, cfg.score, dev, cfg.train.precision).maps.unsqueeze(1)
        maps[setting] = list(torch.nn.functional.interpolate(m, size=size, mode="bilinear").squeeze(1).numpy())
    path = out / "figures" / f"{label.replace('/', '_')}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure3(
        list(images.permute(0, 2, 3, 1).numpy()),
        [test[i]["mask"].numpy() for i in shown],
        maps,
        path,
        titles=[test.samples[i].defect for i in shown],
    )
    print(f"figure: {path}")


SUMMARY = (  # (column, setting, score)
    ("l2-CAE (128 px)", "cae", "l2@max"),
    ("paper recipe: ViT-Ti, reconstruct, L2 score (128 px)", "tiny-reconstruct", "l2@max"),
    ("reconstruct, feature score (128 px)", "tiny-reconstruct", "feature@max"),
    ("paper recipe at the default's budget (224 px, 300 steps)", "tiny-reconstruct-224", "l2@max"),
    ("restore + feature loss, feature score (128 px; the first default)", "tiny-128", "feature@max"),
    ("inpaint + feature loss, feature score (128 px)", "tiny-inpaint-floss", "feature@max"),
    ("the same at 224 px, 300 steps (the second default)", "tiny-5fills", "feature@max"),
    ("+ the blur fill", "tiny", "feature@max"),
    ("+ the top-1 % image score", "tiny", "feature@top1"),
    ("+ test-time flips (the third default)", "tiny", "feature@top1/hv"),
    (
        "**tiny (default)**: + the segmentation head at 112 px, feature + segment score",
        "tiny-segment-half",
        "feature+segment@top1/hv",
    ),
    ("no pretrained weights: the `scratch` preset (128 px)", "scratch", "gms+segment@top1/hv"),
)
SCRATCH_SUMMARY = (  # (column, setting, score): what trains where the default finds no pretrained weights
    ("l2-CAE (128 px)", "cae", "l2@max"),
    ("ViT-Ti from scratch, restore, L2 (128 px; the first fallback)", "tiny-random", "l2@max"),
    ("the same at 224 px, L2, top 1 %, flips (`tiny` without weights before `scratch`)", "fallback", "l2@top1/hv"),
    ("4 blocks, 8-px patches, restore, L2 (128 px)", "small-restore-128", "l2@top1/hv"),
    ("the same, L2 + GMS", "small-restore-128", "l2+gms@top1/hv"),
    ("the same, GMS", "small-restore-128", "gms@top1/hv"),
    ("+ segmentation head, segment", "small-restore-segment-128", "segment@top1/hv"),
    ("+ segmentation head, GMS + segment", "small-restore-segment-128", "gms+segment@top1/hv"),
    ("**the same in 70 epochs: `scratch`**", "scratch", "gms+segment@top1/hv"),
)

# (column, setting, score): the segmentation head on the pretrained default, at full and half resolution
HEAD_SUMMARY = (
    ("feature score (`tiny` before the head; the third default)", "tiny", "feature@top1/hv"),
    ("+ head at 224 px: segment", "tiny-segment-blur", "segment@top1/hv"),
    ("+ head at 224 px: feature + segment", "tiny-segment-blur", "segment+feature@top1/hv"),
    ("+ head at 112 px: segment", "tiny-segment-half", "segment@top1/hv"),
    ("**+ head at 112 px: feature + segment (the default)**", "tiny-segment-half", "feature+segment@top1/hv"),
    ("the same, seed 1", "tiny-segment-half-seed1", "feature+segment@top1/hv"),
    ("the same, seed 2", "tiny-segment-half-seed2", "feature+segment@top1/hv"),
)


def _unordered(score: str) -> str:
    """``segment+feature@top1`` and ``feature+segment@top1`` are one score (a mean of scaled maps): one name for
    both."""
    kinds, at, how = score.partition("@")
    return "+".join(sorted(kinds.split("+"))) + at + how


def write_summary(rows: list[dict], path: Path, columns: tuple[tuple[str, str, str], ...] = SUMMARY) -> None:
    """One line per dataset with a result in ``columns`` (column, setting, score): image / pixel AUROC."""
    found = {(r["data"], r["setting"], _unordered(r["score"])): r for r in rows}
    body = []
    for d in dict.fromkeys(r["data"] for r in rows):
        got = [found.get((d, setting, _unordered(score))) for _, setting, score in columns]
        if any(r is not None and r["setting"] != "cae" for r in got):
            body.append([d, *(f"{r['image_auroc']:.3f} / {_num(r['pixel_auroc'])}" if r else "–" for r in got)])
    _write_markdown(path, ["data", *(c for c, _, _ in columns)], body)


DIGITS_SUMMARY = (  # (column, setting, score): image AUROC per normal class of scikit-learn's digits
    ("l2-CAE, 128 px, max (the paper's score)", "cae", "l2@max"),
    ("l2-CAE, 128 px, mean", "cae", "l2@mean"),
    ("l2-CAE, 32 px, mean", "cae-32", "l2@mean"),
    ("paper recipe: ViT-Ti, reconstruct, L2, 32 px, max", "tiny-reconstruct-32", "l2@max"),
    ("restore (tiny's objective), l2+feature, 32 px, mean", "tiny-32", "l2+feature@mean"),
    ("inpaint, l2+feature, 32 px, max", "tiny-inpaint-32", "l2+feature@max"),
    ("**inpaint, l2+feature, 32 px, mean** (benchmark default)", "tiny-inpaint-32", "l2+feature@mean"),
)
DIGITS_BASELINE = ("cae", "l2@mean")  # the strongest l2-CAE measured


def write_digits_summary(rows: list[dict], path: Path) -> None:
    """Image AUROC per digit class for the DIGITS_SUMMARY columns, their mean, and how often each beats
    DIGITS_BASELINE."""
    found = {(r["data"], r["setting"], r["score"]): r["image_auroc"] for r in rows}
    classes = sorted({r["data"] for r in rows if r["data"].startswith("digits/")}, key=lambda d: int(d.split("/")[1]))
    body = [[d.split("/")[1], *(_num(found.get((d, st, sc))) for _, st, sc in DIGITS_SUMMARY)] for d in classes]
    means, wins = [], []
    for _, st, sc in DIGITS_SUMMARY:
        got = [(found[(d, st, sc)], found.get((d, *DIGITS_BASELINE))) for d in classes if (d, st, sc) in found]
        means.append(f"{sum(v for v, _ in got) / len(got):.3f} ({len(got)} classes)" if got else "–")
        wins.append(f"{sum(b is not None and round(v, 3) > round(b, 3) for v, b in got)} / {len(got)}" if got else "–")
    body += [["mean", *means], [f"above {DIGITS_BASELINE[0]} {DIGITS_BASELINE[1]} (3 decimals)", *wins]]
    _write_markdown(path, ["class", *(c for c, _, _ in DIGITS_SUMMARY)], body)


def write_table(rows: list[dict], path: Path) -> None:
    head = ["data", "setting", "score", "size", "epochs", "train s", "image AUROC", "pixel AUROC"]
    rows = sorted(rows, key=lambda r: (r["data"], r["setting"]))  # stable: scores keep their order
    body = [
        [
            r["data"],
            r["setting"],
            r["score"],
            r["size"],
            r["epochs"],
            f"{r['train_seconds']:.0f}",
            f"{r['image_auroc']:.3f}",
            _num(r["pixel_auroc"]),
        ]
        for r in rows
    ]
    _write_markdown(path, head, body)


def _write_markdown(path: Path, head: list[str], body: list[list[object]]) -> None:
    """A markdown table: the header ``head``, then one line per row of ``body``."""
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
