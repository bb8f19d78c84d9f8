"""``make bench``: speed and memory of anovit against the straightforward way, on this machine.

Measured side by side in one run, on the same model, data and machine:

1. evaluation throughput (images/s: inference + smoothing + metrics) of anovit's path (precision
   ``auto``, batched torch smoothing, streaming pixel metrics) against the straightforward way
   (fp32, ``scipy.ndimage.gaussian_filter`` one map at a time, ``sklearn.metrics.roc_auc_score``
   on every pixel at once), with both paths' AUROCs;
2. training throughput (images/s) in fp32 and bf16, and how far their loss curves drift apart;
3. time and peak extra memory of pixel AUROC + AUPRO over an MVTec-sized stream of score maps
   (1,725 maps of 384 x 384 = 254 M pixels), with the streaming AUROC checked against sklearn;
4. achieved FLOP/s of the encoder forward against a measured matmul peak.

Results are printed and written to ``benchmarks/results.json``. Models are randomly initialised
(the timing does not depend on the weights). ``--quick`` runs everything at toy sizes (for tests).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from anovit.config import ModelConfig, RunConfig
from anovit.data import ImageDataset, make_synthetic_mvtec, mvtec_samples
from anovit.data.transforms import build_augment
from anovit.evaluation.evaluate import evaluate
from anovit.evaluation.streaming import StreamingPixelMetrics
from anovit.models import build_model
from anovit.presets import PRESETS
from anovit.runtime.device import resolve_device, seed_everything
from anovit.runtime.precision import autocast, cpu_probe, resolve_precision
from anovit.training.loop import train_one_epoch
from anovit.training.objectives import build_objective

HERE = Path(__file__).resolve().parent
MVTEC_TEST_IMAGES = 1725
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}  # a precision's matmul dtype


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


class PeakRSS:
    """Peak resident memory of this process above its level at entry, sampled every 5 ms (MiB)."""

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def model_config(quick: bool, paper: bool) -> ModelConfig:
    if quick:
        return replace(
            PRESETS["small"].model,
            image_size=32,
            encoder_overrides={"embed_dim": 32, "depth": 1, "num_heads": 2},
            decoder_channels=(16, 8, 8, 8, 8),
        )
    return replace((PRESETS["paper"] if paper else PRESETS["small"]).model, pretrained=False)


def test_images(size: int, n_good: int, n_per_defect: int, root: Path) -> ImageDataset:
    make_synthetic_mvtec(
        root, categories=("weave",), size=size, n_train=16, n_test_good=n_good, n_per_defect=n_per_defect
    )
    return ImageDataset(mvtec_samples(root, "weave", "test"), size, progress=False)


# ----------------------------------------------------------------------------------------------
# 1. Evaluation: anovit vs the straightforward way
# ----------------------------------------------------------------------------------------------
def plain_smooth(errors: np.ndarray, sigma: float) -> list[np.ndarray]:
    """The straightforward smoothing: scipy, one map at a time. errors (B, H, W) -> B maps (H, W)."""
    return [gaussian_filter(e, sigma=sigma) for e in errors]


def plain_aurocs(maps: list[np.ndarray], labels: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """The straightforward metrics: sklearn on the image maxima and on every pixel at once."""
    return roc_auc_score(labels, [float(m.max()) for m in maps]), roc_auc_score(masks.ravel(), np.stack(maps).ravel())


@torch.no_grad()
def eval_straightforward(
    model: torch.nn.Module, data: ImageDataset, sigma: float, batch_size: int, device: torch.device
) -> dict[str, Any]:
    """fp32; per-image scipy smoothing on the CPU; sklearn AUROC on every pixel at once."""
    model.eval().to(device)
    maps, masks = [], []
    start = time.perf_counter()
    for batch in DataLoader(data, batch_size=batch_size):
        images = batch["image"].to(device)  # (B, 3, H, W)
        maps += plain_smooth(((images - model(images)) ** 2).mean(dim=1).cpu().numpy(), sigma)  # B maps (H, W)
        masks.append(batch["mask"].numpy())
    image_auroc, pixel_auroc = plain_aurocs(maps, data.labels.numpy(), np.concatenate(masks))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "images_per_s": len(data) / seconds,
        "image_auroc": image_auroc,
        "pixel_auroc": pixel_auroc,
        "precision": "fp32",
        "image_scores": np.asarray([float(m.max()) for m in maps]),
    }


def eval_anovit(
    model: torch.nn.Module,
    data: ImageDataset,
    cfg: RunConfig,
    batch_size: int,
    device: torch.device,
    precision: str = "auto",
) -> dict[str, Any]:
    """anovit's evaluate(): batched torch smoothing, streaming pixel AUROC + AUPRO, at ``precision`` (default auto)."""
    precision = resolve_precision(precision, device)  # type: ignore[arg-type]
    start = time.perf_counter()
    result = evaluate(model, data, cfg.score, device, precision, batch_size, progress=False)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "images_per_s": len(data) / seconds,
        "image_auroc": result.image_auroc,
        "pixel_auroc": result.pixel_auroc,
        "aupro": result.aupro,
        "precision": precision,
        "image_scores": result.image_scores,
    }


@torch.no_grad()
def postprocess(
    model: torch.nn.Module, data: ImageDataset, sigma: float, batch_size: int, device: torch.device
) -> dict[str, Any]:
    """Smoothing + image and pixel AUROC alone, on the same raw error maps: per-map scipy + sklearn vs batched torch +
    streaming."""
    from anovit.evaluation.metrics import image_auroc
    from anovit.scoring.smoothing import gaussian_blur

    errors, masks = [], []
    for batch in DataLoader(data, batch_size=batch_size):
        images = batch["image"].to(device)
        errors.append(((images - model.eval()(images)) ** 2).mean(dim=1))  # (B, H, W) on the device
        masks.append(batch["mask"].to(device))
    labels = data.labels.numpy()

    def plain() -> None:
        maps = [m for err in errors for m in plain_smooth(err.cpu().numpy(), sigma)]
        plain_aurocs(maps, labels, torch.cat(masks).cpu().numpy())

    def ours() -> None:
        pixel, scores = StreamingPixelMetrics(), []
        for err, mask in zip(errors, masks, strict=True):
            maps = gaussian_blur(err, sigma)  # (B, H, W)
            scores.append(maps.flatten(1).amax(dim=1))
            pixel.update(maps, mask)
        image_auroc(torch.cat(scores).cpu().numpy(), labels)
        pixel.compute()

    t_plain, t_ours = _best_time(plain, device, 2), _best_time(ours, device, 2)
    return {
        "straightforward_seconds": t_plain,
        "anovit_seconds": t_ours,
        "speedup": t_plain / t_ours,
        "note": "anovit's side also computes AUPRO",
    }


# ----------------------------------------------------------------------------------------------
# 2. Training: fp32 vs bf16
# ----------------------------------------------------------------------------------------------
def train_throughput(
    cfg: RunConfig, data: ImageDataset, precision: str, epochs: int, device: torch.device
) -> dict[str, Any]:
    """``epochs`` passes of anovit's training step (``cfg``'s objective and feature loss) over ``data`` from the same
    initial weights; the first is warm-up."""
    seed_everything(0)
    objective = build_objective(cfg.train)
    model = build_model(cfg.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    loader = DataLoader(
        data.subset(range(len(data)), augment=build_augment(cfg.data)),
        batch_size=cfg.train.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    losses, times = [], []
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        loss, _ = train_one_epoch(
            model,
            loader,
            optimizer,
            device,
            precision,  # type: ignore[arg-type]
            objective=objective,
            feature_weight=cfg.train.feature_loss,
        )
        _sync(device)
        times.append(time.perf_counter() - start)
        losses.append(loss)
    seconds = sum(times[1:]) if epochs > 1 else times[0]
    n = len(data) * max(epochs - 1, 1)
    return {"images_per_s": n / seconds, "seconds": seconds, "losses": losses}


# ----------------------------------------------------------------------------------------------
# 3. Streaming pixel metrics over an MVTec-sized stream
# ----------------------------------------------------------------------------------------------
def synthetic_maps(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Score maps (n, S, S) with a few bright blobs, and masks (n, S, S) marking most of them."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(n, size, size, generator=g) * 0.05
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(n):
        for _ in range(int(torch.randint(0, 4, (1,), generator=g))):
            cy, cx, r = (torch.randint(0, size, (2,), generator=g)).tolist() + [
                int(torch.randint(3, size // 8 + 4, (1,), generator=g))
            ]
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            masks[i] |= blob
            maps[i][blob] += 0.03 + 0.05 * float(torch.rand(1, generator=g))
    return maps, masks


def stream_metrics(
    n_images: int, size: int, batch_size: int, device: torch.device, check_images: int
) -> dict[str, Any]:
    """Pixel AUROC + AUPRO over ``n_images`` maps in batches; the maps come from a pre-made pool (not timed)."""
    pool_maps, pool_masks = synthetic_maps(batch_size * 4, size, seed=1)
    pool_maps, pool_masks = pool_maps.to(device), pool_masks.to(device)

    def stream() -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(first index, maps (b, S, S), masks (b, S, S)) of each batch, cycling through the pool."""
        for first in range(0, n_images, batch_size):
            j, b = (first // batch_size) % 4 * batch_size, min(batch_size, n_images - first)
            yield first, pool_maps[j : j + b], pool_masks[j : j + b]

    metrics = StreamingPixelMetrics()
    with PeakRSS() as memory:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            cuda_base = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        for _, maps, masks in stream():
            metrics.update(maps, masks)
        pixel_auroc, aupro = metrics.compute()
        _sync(device)
        seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "peak_extra_rss_mib": memory.extra_mib,
        "pixel_auroc": pixel_auroc,
        "aupro": aupro,
        "n_pixels": n_images * size * size,
    }
    # The straightforward way on the same stream: keep every map, then sklearn on all pixels at once (AUROC only).
    with PeakRSS() as memory:
        start = time.perf_counter()
        maps = np.empty((n_images, size, size), dtype=np.float32)
        gt = np.empty((n_images, size, size), dtype=bool)
        for first, batch_maps, batch_masks in stream():
            maps[first : first + len(batch_maps)] = batch_maps.cpu().numpy()
            gt[first : first + len(batch_masks)] = batch_masks.cpu().numpy()
        exact = roc_auc_score(gt.ravel(), maps.ravel())
        del maps, gt
        sk_seconds = time.perf_counter() - start
    result["sklearn_all_pixels"] = {
        "seconds": sk_seconds,
        "peak_extra_rss_mib": memory.extra_mib,
        "pixel_auroc": exact,
        "abs_difference": abs(exact - pixel_auroc),
    }
    if device.type == "cuda":
        result["peak_extra_cuda_mib"] = (torch.cuda.max_memory_allocated(device) - cuda_base) / 2**20
    # Agreement with the exact value (sklearn on every pixel) on a subset small enough for sklearn.
    maps, masks = synthetic_maps(check_images, size, seed=2)
    exact = roc_auc_score(masks.numpy().ravel(), maps.numpy().ravel())
    streaming = StreamingPixelMetrics()
    for first in range(0, check_images, batch_size):
        streaming.update(maps[first : first + batch_size], masks[first : first + batch_size])
    result["check"] = {
        "images": check_images,
        "exact_pixel_auroc": exact,
        "streaming_pixel_auroc": streaming.compute()[0],
    }
    result["check"]["abs_error"] = abs(result["check"]["streaming_pixel_auroc"] - exact)
    return result


# ----------------------------------------------------------------------------------------------
# 4. Encoder FLOP/s against the matmul peak
# ----------------------------------------------------------------------------------------------
def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Best FLOP/s of an n x n matmul in ``dtype``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return 2 * n**3 / _best_time(lambda: a @ b, device, repeats)


@torch.no_grad()
def encoder_flops(
    model: torch.nn.Module, size: int, batch: int, device: torch.device, precision: str, repeats: int
) -> dict[str, Any]:
    """FLOPs of one encoder forward (torch's FlopCounterMode: matmuls, convs, attention) and the FLOP/s achieved."""
    from torch.utils.flop_counter import FlopCounterMode

    encoder = model.encoder.eval().to(device)
    x = torch.rand(batch, 3, size, size, device=device)
    counter = FlopCounterMode(display=False)
    with counter, autocast(device, precision):
        encoder(x)
    flops = counter.get_total_flops()

    def forward() -> None:
        with autocast(device, precision):
            encoder(x)

    seconds = _best_time(forward, device, repeats)
    return {
        "flops_per_image": flops / batch,
        "seconds_per_batch": seconds,
        "batch": batch,
        "flops_per_s": flops / seconds,
        "precision": precision,
    }


# ----------------------------------------------------------------------------------------------
def run(quick: bool, device_name: str) -> dict[str, Any]:
    device = resolve_device(device_name)
    torch.manual_seed(0)
    probe = cpu_probe() if device.type == "cpu" else None
    fast_bf16 = resolve_precision("auto", device) == "bf16"
    paper = not quick
    eval_cfg = replace(PRESETS["paper"], model=model_config(quick, paper))
    eval_cfg = replace(eval_cfg, data=replace(eval_cfg.data, image_size=eval_cfg.model.image_size))
    size = eval_cfg.model.image_size
    out: dict[str, Any] = {
        "machine": {
            "device": str(device),
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "fast_bf16": fast_bf16,
            "probe": {"fp32_gflops": probe.fp32_gflops, "bf16_gflops": probe.bf16_gflops, "auto": probe.choice}
            if probe
            else None,
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
        "quick": quick,
    }
    with tempfile.TemporaryDirectory() as tmp:
        # 1. evaluation
        n_good, n_defect = (2, 1) if quick else (8, 6)
        data = test_images(size, n_good, n_defect, Path(tmp) / "eval")
        seed_everything(0)
        model = build_model(eval_cfg.model).to(device)
        batch = 4 if quick else 8
        print(
            f"[1/4] evaluation: {eval_cfg.model.encoder} at {size} px, {len(data)} images, batch {batch} ...",
            flush=True,
        )
        with torch.no_grad():  # warm-up, untimed: first calls allocate and pick kernels
            model.eval()(torch.rand(batch, 3, size, size, device=device))
        ours = eval_anovit(model, data, eval_cfg, batch, device)
        plain = eval_straightforward(model, data, eval_cfg.score.sigma, batch, device)
        plain_scores = plain.pop("image_scores")
        # Agreement at the same precision (fp32 on both sides), then how far auto's precision moves the scores.
        same = (
            eval_anovit(model, data, eval_cfg, batch, device, precision="fp32") if ours["precision"] != "fp32" else ours
        )
        score_diff = float(np.abs(same["image_scores"] - plain_scores).max())
        auto_diff = float((np.abs(ours.pop("image_scores") - plain_scores) / np.abs(plain_scores).max()).max())
        post = postprocess(model, data, eval_cfg.score.sigma, batch, device)
        out["eval"] = {
            "model": eval_cfg.model.encoder,
            "image_size": size,
            "images": len(data),
            "batch": batch,
            "anovit": ours,
            "straightforward": plain,
            "max_image_score_difference": score_diff,
            "auto_precision_max_rel_score_difference": auto_diff,
            "pixel_auroc_difference": abs(ours["pixel_auroc"] - plain["pixel_auroc"]),
            "image_auroc_difference": abs(ours["image_auroc"] - plain["image_auroc"]),
            "scoring_and_metrics_only": post,
        }
        out["eval_speedup"] = ours["images_per_s"] / plain["images_per_s"]

        # 4. encoder FLOP/s (same model, right after evaluation)
        print("[2/4] encoder FLOP/s and matmul peak ...", flush=True)
        precision = resolve_precision("auto", device)
        peak_dtype = DTYPES[precision]
        n = 512 if quick else 4096 if device.type == "cuda" else 2048
        peak = matmul_peak(device, peak_dtype, n, repeats=3 if quick else 10)
        enc = encoder_flops(model, size, batch, device, precision, repeats=1 if quick else 3)
        out["encoder"] = enc | {"matmul_peak_flops_per_s": peak, "matmul_n": n, "matmul_dtype": str(peak_dtype)}
        out["encoder_flops_fraction_of_peak"] = enc["flops_per_s"] / peak
        del model

        # 2. training fp32 vs bf16: the paper model where bf16 is native, else the small preset (see the note)
        train_cfg = replace(
            PRESETS["paper" if fast_bf16 and not quick else "small"], model=model_config(quick, fast_bf16 and not quick)
        )
        tsize = train_cfg.model.image_size
        train_cfg = replace(train_cfg, data=replace(train_cfg.data, image_size=tsize))
        make_synthetic_mvtec(
            Path(tmp) / "train",
            categories=("weave",),
            size=tsize,
            n_train=8 if quick else 32,
            n_test_good=1,
            n_per_defect=1,
        )
        train_data = ImageDataset(mvtec_samples(Path(tmp) / "train", "weave", "train"), tsize, progress=False)
        epochs = 2 if quick else 4
        print(
            f"[3/4] training: {train_cfg.model.encoder} at {tsize} px, {len(train_data)} images x {epochs} epochs, "
            "fp32 then bf16 ...",
            flush=True,
        )
        fp32 = train_throughput(train_cfg, train_data, "fp32", epochs, device)
        bf16 = train_throughput(train_cfg, train_data, "bf16", epochs, device)
        drift = max(abs(a - b) / a for a, b in zip(fp32["losses"], bf16["losses"], strict=True))
        out["train"] = {
            "model": train_cfg.model.encoder,
            "image_size": tsize,
            "images": len(train_data),
            "epochs": epochs,
            "batch": train_cfg.train.batch_size,
            "fp32": fp32,
            "bf16": bf16,
            "loss_max_rel_difference": drift,
        }
        if not fast_bf16:
            out["train"]["note"] = (
                "the matmul probe measured bf16 no faster than fp32 on this CPU (emulated, or native but "
                "slower), so the small preset is measured (a ViT-B bf16 step can take minutes)"
            )
        out["train_speedup_bf16"] = bf16["images_per_s"] / fp32["images_per_s"]

    # 3. metrics over an MVTec-sized stream
    n_maps, msize = (40, 64) if quick else (MVTEC_TEST_IMAGES, 384)
    print(
        f"[4/4] streaming pixel AUROC + AUPRO over {n_maps} maps of {msize}x{msize} "
        f"({n_maps * msize * msize / 1e6:.0f} M pixels) ...",
        flush=True,
    )
    metrics = stream_metrics(n_maps, msize, 16, device, check_images=8 if quick else 100)
    out["metrics"] = metrics
    out["metrics_seconds_254M"] = metrics["seconds"]
    out["metrics_peak_mib_254M"] = metrics["peak_extra_rss_mib"]
    return out


def summary(r: dict[str, Any]) -> str:
    e, t, m, enc = r["eval"], r["train"], r["metrics"], r["encoder"]
    lines = [
        f"machine: {r['machine']['device']} ({r['machine']['cpu']}, {r['machine']['threads']} threads, torch "
        f"{r['machine']['torch']}, "
        f"auto picks bf16: {r['machine']['fast_bf16']}{_probe_text(r['machine']['probe'])})",
        f"evaluation, {e['model']} at {e['image_size']} px, {e['images']} images:",
        f"  anovit          {e['anovit']['images_per_s']:8.2f} images/s  ({e['anovit']['precision']}; image AUROC "
        f"{e['anovit']['image_auroc']:.4f}, pixel AUROC {e['anovit']['pixel_auroc']:.4f})",
        f"  straightforward {e['straightforward']['images_per_s']:8.2f} images/s  (fp32; image AUROC "
        f"{e['straightforward']['image_auroc']:.4f}, pixel AUROC {e['straightforward']['pixel_auroc']:.4f})",
        f"  eval_speedup {r['eval_speedup']:.2f}x; pixel AUROC differs by {e['pixel_auroc_difference']:.1e}; image "
        "scores by "
        f"{e['max_image_score_difference']:.1e} at fp32 and by "
        f"{100 * e['auto_precision_max_rel_score_difference']:.2g} % at "
        f"{e['anovit']['precision']}",
        f"  smoothing + metrics alone: straightforward {e['scoring_and_metrics_only']['straightforward_seconds']:.2f} "
        "s, anovit "
        f"{e['scoring_and_metrics_only']['anovit_seconds']:.2f} s ({e['scoring_and_metrics_only']['speedup']:.1f}x)",
        f"training, {t['model']} at {t['image_size']} px: fp32 {t['fp32']['images_per_s']:.2f} images/s, bf16 "
        f"{t['bf16']['images_per_s']:.2f} images/s -> train_speedup_bf16 {r['train_speedup_bf16']:.2f}x; losses "
        "differ by "
        f"<= {100 * t['loss_max_rel_difference']:.1f} %",
        f"metrics over {m['n_pixels'] / 1e6:.0f} M pixels: pixel AUROC + AUPRO streaming {m['seconds']:.1f} s, peak "
        "extra memory "
        f"{m['peak_extra_rss_mib']:.0f} MiB; sklearn (AUROC only, all pixels at once) "
        f"{m['sklearn_all_pixels']['seconds']:.1f} s, "
        f"{m['sklearn_all_pixels']['peak_extra_rss_mib']:.0f} MiB; |difference| "
        f"{m['sklearn_all_pixels']['abs_difference']:.1e}",
        f"encoder: {enc['flops_per_image'] / 1e9:.1f} GFLOP/image, {enc['flops_per_s'] / 1e9:.1f} GFLOP/s = "
        f"{100 * r['encoder_flops_fraction_of_peak']:.0f} % of the {enc['matmul_dtype']} matmul peak "
        f"({enc['matmul_peak_flops_per_s'] / 1e9:.1f} GFLOP/s)",
    ]
    if "note" in t:
        lines.append(f"note: {t['note']}")
    return "\n".join(lines)


def _probe_text(probe: dict[str, Any] | None) -> str:
    if not probe:
        return ""
    return f"; matmul probe fp32 {probe['fp32_gflops']:.0f}, bf16 {probe['bf16_gflops']:.0f} GFLOP/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="toy sizes: checks that the benchmark runs, measures nothing useful"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    start = time.perf_counter()
    results = run(args.quick, args.device)
    results["total_seconds"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(summary(results))
    print(f"written to {args.out} ({results['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
