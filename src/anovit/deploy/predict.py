"""``anovit predict``: score new images with a trained run and write a verdict and a picture for each.

For every image (any size; grey, RGB, RGBA, palette or 16-bit): the image score (from the
smoothed score map at the model's input size, as in training and testing: its max, or as the run
says), the verdict against the run's image threshold, the score map resized back to the original
size as a heat-map overlay PNG, and the binary mask PNG (empty for a normal image, else map >= the run's pixel
threshold: :func:`anovit.evaluation.thresholds.decision_mask`). One
``predictions.csv`` and one ``predictions.json`` list them all.

Overlay colours: 'jet' over score / (2 x pixel threshold), clipped to [0, 1]: dark blue is a
score of 0, the middle of the scale (green) is the pixel threshold, red is twice it and above.

The model runs on any backend of :mod:`anovit.deploy.backends`; with ONNX Runtime or OpenVINO this
module imports neither torch nor matplotlib.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from anovit.config import Precision
from anovit.data.images import IMAGE_SUFFIXES, check_image, open_rgb
from anovit.deploy.api import ImageResult, load_run
from anovit.deploy.backends import Backend
from anovit.errors import InputError
from anovit.evaluation.colours import heat_colours, heat_overlay  # noqa: F401 (heat_colours: also imported from here)
from anovit.evaluation.thresholds import Thresholds, load_thresholds
from anovit.files import atomic_write, write_text

log = logging.getLogger(__name__)

PREDICTIONS_JSON = "predictions.json"
PREDICTIONS_CSV = "predictions.csv"


@dataclass
class Prediction:
    """The result for one image; paths of the written PNGs are relative to the output folder.

    An image that could not be read (``--on-error skip``) has verdict ``"error"``, the reason in
    ``error``, and no score, size, overlay or mask.
    """

    image: str
    width: int | None
    height: int | None
    score: float | None
    verdict: str  # "normal", "anomalous" or "error"
    anomalous_fraction: float | None  # share of the image's pixels in the mask
    overlay: str
    mask: str
    error: str = ""


OnError = Literal["stop", "skip"]


def collect_inputs(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """Image files named directly or found (recursively) in folders -> (file, output name without suffix).

    Output names keep the path below a given folder (``a/b`` for ``FOLDER/a/b.png``); clashes get ``_2``, ``_3`` ...
    """
    found: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise InputError(f"{path}: no image files in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            found += [(f, f.relative_to(path).with_suffix("").as_posix()) for f in files]
        elif path.is_file():
            found.append((path, path.stem))
        else:
            raise InputError(f"{path}: no such file or folder")
    taken: dict[str, int] = {}
    named = []
    for file, name in found:
        taken[name] = taken.get(name, 0) + 1
        named.append((file, name if taken[name] == 1 else f"{name}_{taken[name]}"))
    return named


@dataclass
class _Decoded:
    """One input file, decoded (``original`` (H, W, 3) uint8) or failed (``error``)."""

    file: Path
    name: str
    original: np.ndarray | None = None
    error: str = ""


def _decode(files: list[tuple[Path, str]], on_error: OnError) -> list[_Decoded]:
    out = []
    for file, name in files:
        try:
            out.append(_Decoded(file, name, np.asarray(open_rgb(file), dtype=np.uint8)))
        except Exception as exc:  # noqa: BLE001 (skip: any failure of one file is that file's row, not the run's end)
            if on_error == "stop":
                raise
            out.append(
                _Decoded(
                    file,
                    name,
                    error=str(exc) if isinstance(exc, InputError) else f"{file}: {type(exc).__name__}: {exc}",
                )
            )
    return out


def _batches(files: list[tuple[Path, str]], batch_size: int, on_error: OnError) -> Iterator[list[_Decoded]]:
    """Decoded batches; the next batch is decoded in a thread while the current one is scored.

    At most two batches are decoded at any time, so memory does not grow with the number of files.
    """
    chunks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_decode, chunks[0], on_error) if chunks else None
        for k in range(len(chunks)):
            batch = pending.result()
            pending = pool.submit(_decode, chunks[k + 1], on_error) if k + 1 < len(chunks) else None
            yield batch


def _save_png(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def predict(
    run_dir: Path,
    paths: Sequence[Path],
    out_dir: Path,
    device: str = "auto",
    precision: Precision | None = None,
    batch_size: int = 8,
    force: bool = False,
    progress: bool = True,
    on_error: OnError = "stop",
    backend: Backend = "torch",
    model_file: Path | None = None,
) -> list[Prediction]:
    """Score every image under ``paths`` with the run in ``run_dir``; write PNGs and the prediction tables to
    ``out_dir``.

    ``on_error="stop"``: the first unreadable file ends the run with an :class:`InputError` (every
    header is checked before anything is written). ``"skip"``: it becomes a row with verdict
    ``"error"`` and its reason, and the other images are scored. ``backend`` / ``model_file``:
    see :func:`anovit.deploy.backends.load_scorer`.
    """
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    out_dir = Path(out_dir)
    if (out_dir / PREDICTIONS_JSON).exists() and not force:
        raise InputError(
            f"{out_dir}: already holds predictions; pass --force to overwrite them or choose another --out"
        )
    load_thresholds(run_dir)  # a run without thresholds fails before anything is read
    files = collect_inputs(paths)
    if on_error == "stop":
        for file, _ in files:
            check_image(file)  # headers only: a stray non-image fails before anything is written
    run = load_run(run_dir, backend, model_file, device, precision)
    log.info("scoring with %s", run.scorer.description)
    thresholds = run.thresholds
    results: list[Prediction] = []
    bar = tqdm(total=len(files), desc="predicting", disable=not progress, unit="image")
    for batch in _batches(files, batch_size, on_error):
        scored = iter(run.score_rgb([d.original for d in batch if not d.error]))
        for d in batch:
            if d.error:
                log.warning("skipped %s", d.error)
                results.append(Prediction(str(d.file), None, None, None, "error", None, "", "", d.error))
                continue
            results.append(_write_outputs(out_dir, d, next(scored), thresholds))
        bar.update(len(batch))
    bar.close()
    write_predictions(out_dir, results, thresholds, run_dir)
    return results


def _write_outputs(out_dir: Path, d: _Decoded, r: ImageResult, thresholds: Thresholds) -> Prediction:
    """Overlay and mask PNGs at the image's own size for one scored image."""
    overlay_rel, mask_rel = f"overlays/{d.name}.png", f"masks/{d.name}.png"
    _save_png(out_dir / overlay_rel, heat_overlay(d.original, r.anomaly_map, thresholds.pixel))
    _save_png(out_dir / mask_rel, r.mask.astype(np.uint8) * 255)
    return Prediction(
        image=str(d.file),
        width=r.width,
        height=r.height,
        score=r.score,
        verdict=r.verdict,
        anomalous_fraction=r.anomalous_fraction,
        overlay=overlay_rel,
        mask=mask_rel,
    )


def write_predictions(out_dir: Path, results: list[Prediction], thresholds: Thresholds, run_dir: Path) -> None:
    """``predictions.csv`` (one row per image) and ``predictions.json`` (the rows plus the thresholds used)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    fields = list(Prediction.__dataclass_fields__)
    writer.writerow(fields)
    for r in results:
        row = asdict(r)
        writer.writerow(
            [f"{row[k]:.8g}" if isinstance(row[k], float) else "" if row[k] is None else row[k] for k in fields]
        )
    write_text(out_dir / PREDICTIONS_CSV, buf.getvalue())
    document = {
        "run": str(run_dir),
        "thresholds": thresholds.summary() | {"source": thresholds.source},
        "n_images": len(results),
        "n_anomalous": sum(r.verdict == "anomalous" for r in results),
        "n_errors": sum(r.verdict == "error" for r in results),
        "predictions": [asdict(r) for r in results],
    }
    write_text(out_dir / PREDICTIONS_JSON, json.dumps(document, indent=2) + "\n")
