"""Inference backends x precisions on this CPU: speed, and what int8 costs in AUROC.

1. Speed: images/s of model + scoring (the whole exported graph) for the ``paper`` model
   (ViT-B/16 at 384 px), the default (``tiny``: ViT-Ti/16 at 224 px, four views) and the ``small``
   preset, on torch fp32 / bf16, ONNX Runtime fp32 / int8 and OpenVINO fp32 / bf16 / int8, in one
   process, same batch, best of a few runs. The weights are random (speed does not depend on them);
   int8 is calibrated on synthetic images.
2. Accuracy: the ``small`` AnoViT trained on each built-in category (``anovit synth``), tested on
   every backend x precision; image and pixel AUROC beside torch fp32's.

Writes ``benchmarks/backends.md`` and ``benchmarks/backends.json``. ``--quick`` runs toy sizes
(for the test suite; its figures mean nothing).

    python benchmarks/backends.py [--quick] [--models paper,tokens,tiny,small] [--categories weave,carpet,tile]
                                  [--epochs 40]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anovit.config import RunConfig
from anovit.data import make_synthetic_mvtec
from anovit.deploy.backends import load_scorer
from anovit.deploy.export import export_model, offered
from anovit.files import WEIGHTS_FILE, load_config, save_config, write_json
from anovit.models import build_model
from anovit.models.checkpoint import save_weights
from anovit.presets import PRESETS
from anovit.runs.test import test_run
from anovit.runs.train import train_run
from anovit.runtime.device import seed_everything
from anovit.runtime.precision import cpu_flags, cpu_name, cpu_probe

HERE = Path(__file__).resolve().parent
# (label, backend, exported file or None, precision)
VARIANTS = [
    ("torch fp32", "torch", None, "fp32"),
    ("torch bf16", "torch", None, "bf16"),
    ("onnxruntime fp32", "onnxruntime", "model.onnx", "fp32"),
    ("onnxruntime int8", "onnxruntime", "model-int8.onnx", "fp32"),
    ("openvino fp32", "openvino", "model.xml", "fp32"),
    ("openvino bf16", "openvino", "model.xml", "bf16"),
    ("openvino int8", "openvino", "model-int8.xml", "fp32"),
    ("openvino int8 + bf16", "openvino", "model-int8.xml", "bf16"),
]


# the timed models: preset -> (label, batch)
SPEED_MODELS = {
    "paper": ("paper ViT-B/16 (384 px)", 4),
    "tokens": ("tokens, the default (224 px)", 8),
    "tiny": ("tiny (224 px)", 8),
    "small": ("small (64 px)", 16),
}


def export_all(run: Path, calib_images: int) -> dict[str, float]:
    """All four exports of a run (three for a token decoder's, which ONNX Runtime's int8 does not take); returns
    seconds per export."""
    seconds = {}
    model = load_config(run).model
    for fmt, int8 in (("onnx", False), ("onnx", True), ("openvino", False), ("openvino", True)):
        if not offered(model, fmt, int8):  # type: ignore[arg-type]
            continue
        start = time.perf_counter()
        export_model(run, fmt, int8, verify=False, calib_images=calib_images)  # type: ignore[arg-type]
        seconds[f"{fmt}{' int8' if int8 else ''}"] = time.perf_counter() - start
    return seconds


def random_run(cfg: RunConfig, folder: Path, calib_root: Path) -> Path:
    """A run folder with randomly initialised weights (for speed), calibrating on ``calib_root``/weave."""
    seed_everything(0)
    model = build_model(replace(cfg.model, pretrained=False), load_encoder_weights=False)
    save_config(folder, cfg)
    save_weights(model, folder / WEIGHTS_FILE)
    write_json(folder / "data.json", {"data": str(calib_root), "category": "weave"})
    return folder


def best_rate(fn: Callable[[], Any], n_images: int, repeats: int) -> float:
    fn()  # warm-up: kernels are picked and memory allocated on the first call
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n_images / best


def speed(run: Path, batch: int, repeats: int) -> dict[str, float]:
    size = load_config(run).data.image_size
    images = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    rates = {}
    for label, backend, file, precision in VARIANTS:
        if file and not (run / file).is_file():  # an export the model does not take (export_all)
            continue
        scorer = load_scorer(run, backend, run / file if file else None, "cpu", precision)  # type: ignore[arg-type]
        rates[label] = best_rate(lambda s=scorer: s(images), batch, repeats)
        print(f"  {label:24s} {rates[label]:8.2f} images/s", flush=True)
    return rates


def accuracy(
    data: Path, category: str, work: Path, epochs: int, calib_images: int
) -> dict[str, dict[str, float | None]]:
    run = work / f"run-{category}"
    cfg = resolve_small(epochs)
    train_run(cfg, data, category, run, device="cpu", progress=False)
    export_all(run, calib_images)
    out = {}
    for label, backend, file, precision in VARIANTS:
        result, _ = test_run(
            run,
            data,
            category,
            work / f"eval-{category}-{label.replace(' ', '_')}",
            "cpu",
            precision,  # type: ignore[arg-type]
            progress=False,
            backend=backend,
            model_file=run / file if file else None,
        )  # type: ignore[arg-type]
        out[label] = {"image_auroc": result.image_auroc, "pixel_auroc": result.pixel_auroc}
    return out


def resolve_small(epochs: int) -> RunConfig:
    small = PRESETS["small"]
    return replace(
        small, model=replace(small.model, name="anovit"), train=replace(small.train, epochs=epochs, precision="fp32")
    )


def tables(r: dict[str, Any]) -> str:
    lines = [
        f"CPU: {r['cpu']} (bf16 flags: {r['bf16_flags'] or 'none'}), {r['threads']} threads, torch {r['torch']}; "
        f"matmul probe fp32 {r['probe']['fp32_gflops']:.0f}, bf16 {r['probe']['bf16_gflops']:.0f} GFLOP/s "
        f"(--precision auto: {r['probe']['auto']}).",
        "",
    ]
    models = list(r["speed"])
    lines += [
        "| backend | " + " | ".join(f"{m} images/s | vs torch fp32" for m in models) + " |",
        "|---|" + "---|---|" * len(models),
    ]
    for label, *_ in VARIANTS:
        cells = []
        for m in models:
            rate, ref = r["speed"][m]["rates"].get(label), r["speed"][m]["rates"]["torch fp32"]
            cells += [f"{rate:.2f}", f"{rate / ref:.2f}x"] if rate is not None else ["not offered", ""]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Batch: " + ", ".join(f"{m} {r['speed'][m]['batch']}" for m in models) + "; model + scoring, best of "
        f"{r['repeats']} runs after a warm-up.",
        "",
    ]
    cats = list(r["accuracy"])
    if not cats:
        return "\n".join(lines) + "\n"
    lines += [
        f"Image / pixel AUROC of the `small` AnoViT trained {r['epochs']} epochs on each built-in category, and the "
        "difference "
        "from torch fp32:",
        "",
        "| backend | " + " | ".join(f"{c} image | {c} pixel" for c in cats) + " | max abs difference |",
        "|---|" + "---|---|" * len(cats) + "---|",
    ]
    for label, *_ in VARIANTS:
        cells, worst = [], 0.0
        for c in cats:
            ref, got = r["accuracy"][c]["torch fp32"], r["accuracy"][c][label]
            for key in ("image_auroc", "pixel_auroc"):
                diff = got[key] - ref[key]
                worst = max(worst, abs(diff))
                cells.append(f"{got[key]:.4f}" + ("" if label == "torch fp32" else f" ({diff:+.4f})"))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {worst:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes: checks that the script runs")
    parser.add_argument(
        "--models",
        default="paper,tokens,tiny,small",
        help=f"timed models, from {','.join(SPEED_MODELS)} (--quick: small)",
    )
    parser.add_argument(
        "--categories", default="weave,carpet,tile", help="built-in categories of the accuracy part ('': none)"
    )
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=HERE / "backends.md")
    args = parser.parse_args()
    start = time.perf_counter()
    probe = cpu_probe()
    r: dict[str, Any] = {
        "cpu": cpu_name(),
        "bf16_flags": ", ".join(cpu_flags()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "probe": {"fp32_gflops": probe.fp32_gflops, "bf16_gflops": probe.bf16_gflops, "auto": probe.choice},
        "speed": {},
        "accuracy": {},
        "repeats": 1 if args.quick else 3,
        "epochs": 2 if args.quick else args.epochs,
    }
    calib_images = 4 if args.quick else 32
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        chosen = ["small"] if args.quick else args.models.split(",")
        models = {SPEED_MODELS[m][0]: (PRESETS[m], SPEED_MODELS[m][1]) for m in chosen}
        for name, (cfg, batch) in models.items():
            size = cfg.data.image_size
            calib_root = make_synthetic_mvtec(
                work / f"calib{size}",
                categories=("weave",),
                size=size,
                n_train=calib_images,
                n_test_good=1,
                n_per_defect=1,
                progress=False,
            )
            run = random_run(replace(cfg, model=replace(cfg.model, name="anovit")), work / f"speed{size}", calib_root)
            print(f"[speed] {name}: exporting ...", flush=True)
            exports = export_all(run, calib_images)
            print(f"[speed] {name}, batch {batch}:", flush=True)
            r["speed"][name] = {"batch": batch, "rates": speed(run, batch, r["repeats"]), "export_seconds": exports}
            shutil.rmtree(run)
        cats = [c for c in args.categories.split(",") if c][: 1 if args.quick else None]
        data = work / "data"
        if cats:
            make_synthetic_mvtec(
                data,
                categories=tuple(cats),
                size=64 if not args.quick else 32,
                **({"n_train": 12, "n_test_good": 4, "n_per_defect": 2} if args.quick else {}),
                progress=False,
            )
        for c in cats:
            print(f"[accuracy] {c}: training {r['epochs']} epochs, exporting, testing on every backend ...", flush=True)
            r["accuracy"][c] = accuracy(data, c, work, r["epochs"], calib_images)
    r["total_seconds"] = time.perf_counter() - start
    text = tables(r)
    args.out.with_suffix(".json").write_text(json.dumps(r, indent=2) + "\n")
    args.out.write_text(
        f"`python benchmarks/backends.py {shlex.join(sys.argv[1:])}` ({r['total_seconds']:.0f} s)\n\n" + text
    )
    print(text)


if __name__ == "__main__":
    main()
