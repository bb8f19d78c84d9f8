"""``anovit benchmark``: train and test each model on each class or category, write the paper's tables.

The sweep is resumable: a (category, model) whose ``metrics.json`` exists in ``OUT/runs`` is not
run again. ``results.json``, ``results.md`` and ``results.csv`` are rewritten after every category.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from anovit.config import RunConfig
from anovit.data import DATASETS, ImageDataset, mvtec_samples
from anovit.data.mvtec import CATEGORIES
from anovit.data.oneclass import blank_share, class_names, native_size, one_class_data
from anovit.errors import InputError
from anovit.evaluation.figures import figure3
from anovit.experiments.tables import MODEL_LABELS, build_results, in_column_order, write_results
from anovit.files import METRICS_FILE, write_json
from anovit.models.weights import resolve_run_config, weights_found
from anovit.one_class_rule import (
    SEMANTIC_PIXEL_PRESET,
    OneClassImages,
    base_preset,
    dataset_options,
    follows_one_class_rule,
)
from anovit.presets import DEFAULT_PRESET
from anovit.resolve import resolve_config
from anovit.runs.test import figure_indices, test_on
from anovit.runs.train import train_on

log = logging.getLogger(__name__)

FIGURE_ROWS = 4


def default_categories(dataset: str, root: Path) -> list[str]:
    if dataset == "mvtec":
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: data folder not found")
        found = {p.name for p in root.iterdir() if (p / "train").is_dir()}
        if not found:
            raise InputError(f"{root}: no category folders with a train/ folder (expected the MVTec AD layout)")
        return [c for c in CATEGORIES if c in found] + sorted(found - set(CATEGORIES))
    return list(class_names(dataset, root))


def benchmark_config(
    dataset: str,
    model: str,
    preset: str,
    epochs: int | None,
    image_size: int | None,
    find_weights: bool = False,
    images: OneClassImages | None = None,
    **options: Any,
) -> RunConfig:
    """The run configuration for one model: the preset, its image size per dataset, the user's options.

    ``find_weights``: also find the encoder's pretrained weights, or fall back to a from-scratch
    preset without them (:func:`anovit.models.weights.resolve_run_config`), as training does; on one-class data
    the fallback is the rule's pixel variant (at the native size), the tokens having no features to read.
    ``images``: what the one-class rule reads from the data (:func:`one_class_images`).
    """
    asked = dict(epochs=epochs, image_size=image_size, **options)
    kw = dict(model=model, **dataset_options(dataset, preset, model, asked, images))
    base = base_preset(dataset, preset, images, asked.get("objective"))
    tokens_rule = base != SEMANTIC_PIXEL_PRESET and follows_one_class_rule(dataset, preset)
    if find_weights and tokens_rule and not weights_found(resolve_config(base, **kw).model):
        # no pretrained tokens to read: the rule's pixel variant, which falls back to training from scratch
        kw = dict(model=model, **dataset_options(dataset, SEMANTIC_PIXEL_PRESET, model, asked, images))
        base = SEMANTIC_PIXEL_PRESET
    cfg = resolve_run_config(base, **kw)[0] if find_weights else resolve_config(base, **kw)
    if dataset == "cifar10":
        cfg = replace(cfg, data=replace(cfg.data, val_fraction=0.1))  # 4,500 / 500
    return cfg


def one_class_images(dataset: str, data_root: Path | None) -> OneClassImages:
    """Measure what the one-class rule reads from ``dataset``'s training images, and log it."""
    images = OneClassImages(side=native_size(dataset, data_root), blank=blank_share(dataset, data_root))
    kind = "drawings on a blank background" if images.drawing else "photographs"
    log.info("%s: %d-px images, %.0f %% of a typical one blank: %s", dataset, images.side, 100 * images.blank, kind)
    return images


def run_benchmark(
    dataset: str,
    data_root: Path | None,
    models: Sequence[str],
    out: Path,
    categories: Sequence[str] | None = None,
    preset: str = DEFAULT_PRESET,
    epochs: int | None = None,
    image_size: int | None = None,
    device: str = "auto",
    progress: bool = True,
    report: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Run the sweep and write the three result files into ``out``. Returns the results.json content.

    ``report`` writes a ``report.html`` into each run folder it tests.
    """
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    unknown = [m for m in models if m not in MODEL_LABELS]
    if unknown or not models:
        raise InputError(
            f"--models: expected a comma-separated subset of {','.join(MODEL_LABELS)}, "
            f"got {','.join(models) or 'nothing'}"
        )
    if dataset != "digits" and data_root is None:
        raise InputError(f"--data is required for {dataset}")
    cats = list(categories) if categories else default_categories(dataset, data_root)
    if dataset != "mvtec":
        names = class_names(dataset, data_root)
        cats = [names[int(c)] if c.isdigit() and c not in names else c for c in cats]
    images = one_class_images(dataset, data_root) if dataset != "mvtec" else None
    configs = {
        m: benchmark_config(dataset, m, preset, epochs, image_size, find_weights=True, images=images, **options)
        for m in models
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    devices = _devices(device)
    rows: dict[str, dict[str, Any]] = {}
    results = build_results(dataset, list(models), [])
    jobs = tqdm(total=len(cats) * len(models), desc="benchmark", unit="run", disable=not progress)

    def finished(row: dict[str, Any]) -> None:
        nonlocal results
        rows[row["category"]] = row
        results = build_results(dataset, list(models), [rows[c] for c in cats if c in rows])
        write_results(out, results)

    common = dict(dataset=dataset, data_root=data_root, models=list(models), configs=configs, out=out, report=report)
    if len(devices) == 1:
        for category in cats:
            finished(run_category(category=category, device=devices[0], progress=progress, bar=jobs, **common))
    else:
        # One worker process per device; each takes the next category when it is free.
        ctx = mp.get_context("spawn")
        free = ctx.Manager().Queue()
        for d in devices:
            free.put(d)
        with ProcessPoolExecutor(len(devices), mp_context=ctx, initializer=_take_device, initargs=(free,)) as pool:
            futures = [pool.submit(run_category, category=c, device=None, progress=False, **common) for c in cats]
            for future in as_completed(futures):
                row = future.result()
                finished(row)
                jobs.set_description(f"{row['category']} done")
                jobs.update(len(models))
    jobs.close()
    return results


_WORKER_DEVICE: str | None = None


def _take_device(free: Any) -> None:
    global _WORKER_DEVICE
    _WORKER_DEVICE = free.get()


def _devices(device: str) -> list[str]:
    """``auto``: every visible GPU (one category per GPU at a time), else the CPU; or a comma-separated list."""
    if device == "auto":
        n = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(n)] if n > 1 else ["auto"]
    return [d for d in device.split(",") if d] or ["auto"]


REQUEST_FILE = "benchmark.json"  # the settings the benchmark asked for when it trained the run
# ModelConfig fields of AnoViT's encoder and decoder, which the l2-CAE has not (asked differently: the same l2-CAE).
_ENCODER_FIELDS = ("encoder", "patch_size", "encoder_overrides", "pretrained", "encoder_weights", "decoder_channels")


def config_changes(run_dir: Path, wanted: RunConfig) -> list[str]:
    """How the settings a finished run was asked for differ from ``wanted`` ("score.sigma: 4.0 -> 2.0", ...);
    [] when they agree or there is no finished run. A run the benchmark did not train (no request on record) is
    compared with nothing and counts as changed. A setting added since the run was trained takes the value that
    the run was trained with (its default for older configs, :meth:`RunConfig.from_dict`). The encoder's fields do
    not count for the l2-CAE, which has none."""
    if not (run_dir / METRICS_FILE).is_file():
        return []
    path = run_dir / REQUEST_FILE
    if not path.is_file():
        return [f"no {REQUEST_FILE}: not trained by this benchmark"]
    try:
        have = json.loads(json.dumps(RunConfig.from_dict(json.loads(path.read_text())).to_dict()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return [f"{REQUEST_FILE} unreadable ({exc})"]
    want = json.loads(json.dumps(wanted.to_dict()))
    if wanted.model.name == "cae":
        for config in (have, want):
            config["model"] = {k: v for k, v in config["model"].items() if k not in _ENCODER_FIELDS}
    changes = []
    for section in sorted(set(have) | set(want)):
        a, b = have.get(section), want.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += [
                f"{section}.{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
            ]
        elif a != b:
            changes.append(f"{section}: {a} -> {b}")
    return changes


def run_category(
    dataset: str,
    data_root: Path | None,
    category: str,
    models: list[str],
    configs: dict[str, RunConfig],
    out: Path,
    device: str | None,
    progress: bool,
    bar: tqdm | None = None,
    report: bool = False,
) -> dict[str, Any]:
    """Train (unless finished) and test each model on one category; draw its Figure 3. Returns its row."""
    device = device or _WORKER_DEVICE or "auto"
    row: dict[str, Any] = {"category": category}
    done = (METRICS_FILE, "report.html") if report else (METRICS_FILE,)
    stale = {m: d for m in models if (d := config_changes(out / "runs" / category / m, configs[m]))}
    for m, changes in stale.items():
        log.info("%s / %s: trained with other settings (%s): training it again", category, m, "; ".join(changes))
    todo = [m for m in models if m in stale or not all((out / "runs" / category / m / f).is_file() for f in done)]
    figure_path = out / "figures" / f"{category}.png"
    need_figure = dataset == "mvtec" and not figure_path.is_file()
    data: dict[str, Any] | None = None
    maps: dict[str, list[np.ndarray]] = {}
    for m in models:
        run_dir = out / "runs" / category / m
        if bar is not None:
            bar.set_description(f"{category} / {m}")
        if m in todo or need_figure:
            cfg = configs[m]
            if data is None or data["size"] != cfg.data.image_size:
                data = _load(dataset, data_root, category, cfg.data.image_size, progress)
            # a missing report alone needs no training
            if m in stale or (m in todo and not (run_dir / METRICS_FILE).is_file()):
                train_cfg = replace(
                    cfg, data=replace(cfg.data, val_fraction=data["val_fraction"] or cfg.data.val_fraction)
                )
                source = {"dataset": dataset, "data": str(data_root), "category": category}
                train_on(train_cfg, data["train"], run_dir, device, progress, source)
                write_json(run_dir / REQUEST_FILE, cfg.to_dict())
            result = test_on(
                run_dir,
                data["test"],
                device=device,
                keep_maps=FIGURE_ROWS if dataset == "mvtec" else 0,
                progress=progress,
                extra={"dataset": dataset, "category": category},
                report=report,
            )
            maps[m] = [result.maps[i] for i in sorted(result.maps)]
        metrics = _read_metrics(run_dir / METRICS_FILE)
        row[m] = {"image_auroc": metrics.get("image_auroc"), "pixel_auroc": metrics.get("pixel_auroc")}
        if bar is not None:
            bar.update(1)
    if need_figure and data is not None and maps:
        test = data["test"]
        shown = figure_indices(test.samples, FIGURE_ROWS)
        figure3(
            [test.image(i).permute(1, 2, 0).numpy() / 255.0 for i in shown],
            [test.mask(i).numpy() for i in shown],
            {MODEL_LABELS[m]: maps[m] for m in in_column_order(list(maps))},
            figure_path,
            titles=[test.samples[i].defect for i in shown],
        )
    return row


def _load(dataset: str, root: Path | None, category: str, size: int, progress: bool) -> dict[str, Any]:
    if dataset == "mvtec":
        train = ImageDataset(
            mvtec_samples(root, category, "train"), size, desc=f"reading {category}/train", progress=progress
        )
        test = ImageDataset(
            mvtec_samples(root, category, "test"), size, desc=f"reading {category}/test", progress=progress
        )
        return {"train": train, "test": test, "val_fraction": None, "size": size}
    data = one_class_data(dataset, root, category, size)
    return {"train": data.train, "test": data.test, "val_fraction": data.val_fraction, "size": size}


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read metrics ({exc}); delete it to rerun this model") from None
