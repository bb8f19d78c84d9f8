"""Where the default's time goes on this machine: the default preset (``tokens``; ``--preset tiny`` for the pixel
AnoViT) at 224 px (issue 26), part of ``make bench``.

Measured in one process, side by side, on random weights (the time does not depend on them):

1. scoring, steady state: ``score_batch`` on a batch of images at the precision ``auto`` picks here, best of a few
   runs after a warm-up, with the preset's views (``tiny``: four flips; ``tokens``: four shifts) and with one view
   (``--test-flips none --test-shift 0``);
   each network's share of one batch of views (``tokens``: the frozen ViT, the bottleneck and decoder blocks;
   ``tiny``: the fine-tuned encoder, the decoder, the frozen reference ViT on image and reconstruction, the
   segmentation head; the rest is flipping, combining, smoothing and the image score), and the FLOPs per image
   (torch's ``FlopCounterMode``) as GFLOP/s against a measured matmul peak;
2. training: optimiser steps of the preset's objective on 16-image batches: images/s, FLOPs per image (forward and
   backward) and GFLOP/s against the same peak;
3. start-up: a fresh Python process, from its start to the first image's score through the torch scorer of a run
   folder (``anovit predict``'s path), apart from the steady state.

Writes ``benchmarks/default_speed.md`` and ``.json``. ``--quick``: toy sizes, for the test suite (figures mean
nothing).

    python benchmarks/default_speed.py [--quick] [--preset tokens|tiny]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from anovit.config import RunConfig  # noqa: E402
from anovit.data import ImageDataset, make_synthetic_mvtec, mvtec_samples  # noqa: E402
from anovit.models import TokenAnoViT, build_model  # noqa: E402
from anovit.presets import DEFAULT_PRESET, PRESETS  # noqa: E402
from anovit.runtime.device import seed_everything  # noqa: E402
from anovit.runtime.precision import autocast, cpu_flags, cpu_name, resolve_precision  # noqa: E402
from anovit.scoring.maps import FLIP_DIMS, reconstruct, score_batch, shift_offsets, shifted  # noqa: E402
from backends import random_run  # noqa: E402
from bench import DTYPES, _best_time, matmul_peak, train_throughput  # noqa: E402

# The child process of the start-up figure: imports, loads the run, scores one image.
STARTUP = """
import sys, time
import numpy as np
from anovit.deploy.backends import load_scorer
scorer = load_scorer(sys.argv[1], "torch", None, "cpu", sys.argv[2])
size = int(sys.argv[3])
scorer(np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32))
"""


def default_config(quick: bool, preset: str = DEFAULT_PRESET) -> RunConfig:
    """The preset without its pretrained weights file (random weights; the same networks)."""
    cfg = PRESETS[preset]
    model = replace(cfg.model, pretrained=False, encoder_weights=None)
    if quick:
        model = replace(model, image_size=32, encoder_overrides={"embed_dim": 32, "depth": 10, "num_heads": 2})
        cfg = replace(cfg, data=replace(cfg.data, image_size=32), train=replace(cfg.train, batch_size=4))
    return replace(cfg, model=model)


def flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (matmuls, convolutions, attention; backward too where ``fn`` runs it)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


@torch.no_grad()
def scoring(cfg: RunConfig, precision: str, batch: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Steady-state scoring of ``batch`` images with the default's views and with one, and the default's parts."""
    seed_everything(0)
    model = build_model(cfg.model, load_encoder_weights=False).eval().to(device)
    size = cfg.model.image_size
    images = torch.rand(batch, 3, size, size, device=device)  # (B, 3, S, S)

    def amp() -> Any:
        return autocast(device, precision)

    out: dict[str, Any] = {"batch": batch}
    for label, flips, shift in (("default", cfg.score.test_flips, cfg.score.test_shift), ("one view", "none", 0)):
        score = replace(cfg.score, test_flips=flips, test_shift=shift)
        run = lambda score=score: score_batch(model, images, score, amp)  # noqa: E731
        seconds = _best_time(run, device, repeats)
        n_flops = flops(run) / batch
        out[label] = {
            "views": len(FLIP_DIMS[flips]) * len(shift_offsets(shift)),
            "images_per_s": batch / seconds,
            "gflops_per_image": n_flops / 1e9,
            "gflops_per_s": n_flops * batch / seconds / 1e9,
        }
    views = torch.cat([images.flip(d) if d else images for d in FLIP_DIMS[cfg.score.test_flips]])  # (F * B, 3, S, S)
    views = shifted(views, shift_offsets(cfg.score.test_shift))  # (V * B, 3, S, S)
    with amp():
        parts = _parts(model, views, cfg)
    total = batch / out["default"]["images_per_s"]
    shares = {}
    for name, fn in parts.items():
        with amp():
            shares[name] = _best_time(fn, device, repeats)
    shares["the rest: flips, shifts, combining, smoothing, image score"] = max(0.0, total - sum(shares.values()))
    out["parts_seconds_per_batch"] = shares
    return out


def _parts(model: torch.nn.Module, views: torch.Tensor, cfg: RunConfig) -> dict[str, Callable[[], Any]]:
    """Each network of the model as a call on ``views`` (V * B, 3, S, S), its inputs computed once here."""
    if isinstance(model, TokenAnoViT):
        target = model.targets(views)  # (V * B, G, N, D)
        return {
            "frozen ViT (up to the last target block)": lambda: model.targets(views),
            "bottleneck + decoder blocks": lambda: model.decode(target),
        }
    recon = reconstruct(model, views, cfg.score.test_masks)  # (V * B, 3, S, S)
    tokens = model.forward_encoder(views)  # (V * B, D, g, g)
    parts: dict[str, Callable[[], Any]] = {
        "encoder (fine-tuned ViT)": lambda: model.forward_encoder(views),
        "decoder": lambda: model.forward_decoder(tokens),
    }
    if model.reference is not None:
        parts["reference ViT, image + reconstruction"] = lambda: model.reference(
            torch.cat([views, recon.to(views.dtype)])
        )
    if model.segmenter is not None:
        parts["segmentation head"] = lambda: model.segmenter(views, recon)
    return parts


def startup(cfg: RunConfig, precision: str, work: Path) -> float:
    """Seconds from a fresh interpreter's start to its first image's score (the torch scorer of a run folder)."""
    calib = make_synthetic_mvtec(
        work / "calib", categories=("weave",), size=32, n_train=1, n_test_good=1, n_per_defect=1, progress=False
    )
    run = random_run(cfg, work / "run", calib)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", STARTUP, str(run), precision, str(cfg.model.image_size)], capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the start-up process failed:\n{done.stderr}")
    return wall


def training(cfg: RunConfig, precision: str, quick: bool, work: Path, device: torch.device) -> dict[str, Any]:
    """Images/s of the default's training steps at ``precision``, and FLOPs per image of one step."""
    size = cfg.model.image_size
    n = 2 * cfg.train.batch_size
    root = make_synthetic_mvtec(
        work / "train", categories=("weave",), size=size, n_train=n, n_test_good=1, n_per_defect=1, progress=False
    )
    data = ImageDataset(mvtec_samples(root, "weave", "train"), size, progress=False)
    timed = train_throughput(cfg, data, precision, 2 if quick else 3, device)
    one = ImageDataset(mvtec_samples(root, "weave", "train")[: cfg.train.batch_size], size, progress=False)
    n_flops = flops(lambda: train_throughput(cfg, one, precision, 1, device)) / len(one)
    return {
        "batch": cfg.train.batch_size,
        "images_per_s": timed["images_per_s"],
        "gflops_per_image": n_flops / 1e9,
        "gflops_per_s": n_flops * timed["images_per_s"] / 1e9,
    }


def markdown(r: dict[str, Any]) -> str:
    s, t = r["scoring"], r["training"]
    peak = r["matmul_peak_gflops"]
    lines = [
        f"`python benchmarks/default_speed.py{' --quick' if r['quick'] else ''}` on {r['cpu']} ({r['bf16_flags']}), "
        f"{r['threads']} threads, torch {r['torch']}: the preset {r['preset']} at {r['image_size']} px, "
        "random weights, "
        f"precision {r['precision']} (matmul peak at it: {peak:.0f} GFLOP/s).",
        "",
        "| what | images/s | GFLOP per image | GFLOP/s | share of the peak |",
        "|---|---|---|---|---|",
    ]
    for label in ("default", "one view"):
        x = s[label]
        lines.append(
            f"| scoring, {label} ({x['views']} view{'s' if x['views'] > 1 else ''}), batch {s['batch']} | "
            f"{x['images_per_s']:.2f} | {x['gflops_per_image']:.2f} | {x['gflops_per_s']:.0f} | "
            f"{x['gflops_per_s'] / peak:.0%} |"
        )
    lines.append(
        f"| training step, batch {t['batch']} | {t['images_per_s']:.2f} | {t['gflops_per_image']:.2f} | "
        f"{t['gflops_per_s']:.0f} | {t['gflops_per_s'] / peak:.0%} |"
    )
    lines += [
        "",
        f"Start-up, a fresh process to its first image's score (torch scorer of a run folder): "
        f"**{r['startup_seconds']:.1f} s**.",
        "",
        f"Where one batch of the preset's scoring goes ({s['batch']} images x {s['default']['views']} views):",
        "",
        "| part | seconds | share |",
        "|---|---|---|",
    ]
    parts = s["parts_seconds_per_batch"]
    total = sum(parts.values())
    lines += [f"| {name} | {sec:.3f} | {sec / total:.0%} |" for name, sec in parts.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="toy sizes: checks that the script runs")
    parser.add_argument("--preset", choices=("tokens", "tiny"), default=DEFAULT_PRESET)
    parser.add_argument("--out", type=Path, help="default: benchmarks/default_speed.md (tiny: default_speed_tiny.md)")
    args = parser.parse_args()
    args.out = args.out or HERE / (
        "default_speed.md" if args.preset == DEFAULT_PRESET else f"default_speed_{args.preset}.md"
    )
    device = torch.device("cpu")
    cfg = default_config(args.quick, args.preset)
    precision = resolve_precision("auto", device)
    repeats = 1 if args.quick else 3
    print(f"[1/4] matmul peak at {precision} ...", flush=True)
    peak = matmul_peak(device, DTYPES[precision], 256 if args.quick else 2048, repeats=3 if args.quick else 10)
    r: dict[str, Any] = {
        "cpu": cpu_name(),
        "bf16_flags": ", ".join(cpu_flags()) or "none",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "quick": args.quick,
        "preset": args.preset,
        "image_size": cfg.model.image_size,
        "precision": precision,
        "matmul_peak_gflops": peak / 1e9,
    }
    print("[2/4] scoring ...", flush=True)
    r["scoring"] = scoring(cfg, precision, 2 if args.quick else 8, repeats, device)
    with tempfile.TemporaryDirectory() as tmp:
        print("[3/4] training steps ...", flush=True)
        r["training"] = training(cfg, precision, args.quick, Path(tmp), device)
        print("[4/4] start-up ...", flush=True)
        r["startup_seconds"] = startup(cfg, precision, Path(tmp))
    text = markdown(r)
    args.out.with_suffix(".json").write_text(json.dumps(r, indent=2) + "\n")
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
