"""The run folder's files, written atomically, without torch.

Every file is written to a temporary name beside it and renamed into place, so a killed process
never leaves a half-written file. The deployment path (``predict`` with ONNX Runtime or
OpenVINO) reads and writes run folders through this module without importing torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anovit.config import RunConfig
from anovit.errors import InputError

# The files of a run folder (thresholds.json is read and written by anovit.evaluation.thresholds, the test's files
# by anovit.runs.test)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.safetensors"  # the best weights while training runs; renamed model.safetensors at the end
LOG_FILE = "log.csv"
METRICS_FILE = "metrics.json"
SCORES_FILE = "scores.csv"
REPORT_FILE = "report.html"
THRESHOLDS_FILE = "thresholds.json"

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_config(run_dir: Path, cfg: RunConfig) -> None:
    write_text(Path(run_dir) / CONFIG_FILE, cfg.to_json() + "\n")


def load_config(run_dir: Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: run folder not found")
    return RunConfig.load(run_dir / CONFIG_FILE)


# What a run derives from its weights: a new model.safetensors makes each of them stale (see clear_derived)
EXPORT_FILES = ("model.onnx", "model-int8.onnx", "model.xml", "model.bin", "model-int8.xml", "model-int8.bin")
DERIVED_FILES = (METRICS_FILE, SCORES_FILE, REPORT_FILE, THRESHOLDS_FILE, *EXPORT_FILES)


def export_record_path(model_file: Path) -> Path:
    """The record written beside an exported file: ``model.onnx`` -> ``model.onnx.json``."""
    return Path(model_file).with_name(Path(model_file).name + ".json")


def clear_derived(run_dir: Path) -> list[str]:
    """Delete what the run derived from its previous weights (metrics, report, thresholds, exports and their
    records), so that nothing stale outlives a retrained model; the names deleted."""
    run_dir = Path(run_dir)
    gone = []
    for name in DERIVED_FILES:
        for path in (run_dir / name, export_record_path(run_dir / name)):
            if path.is_file():
                path.unlink()
                gone.append(path.name)
    return gone


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_record(run_dir: Path) -> dict[str, Any]:
    """What an exported file must agree with: the hash of the run's weights and its whole score config."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise InputError(f"{weights}: not found; train the run first")
    record = {
        "weights_sha256": file_sha256(weights),
        "model": cfg.model.name,
        "image_size": cfg.data.image_size,
        "score": cfg.to_dict()["score"],
    }
    return json.loads(json.dumps(record))  # as it reads back from the file (tuples become lists)


def check_export(run_dir: Path, model_file: Path) -> None:
    """Refuse an exported file that was not made from the run's current weights and score config."""
    record_path = export_record_path(model_file)
    if not record_path.is_file():
        raise InputError(
            f"{model_file}: no export record ({record_path.name}) beside it, so nothing ties it to "
            f"{Path(run_dir) / WEIGHTS_FILE}; export it again: anovit export --run {run_dir}"
        )
    try:
        recorded = json.loads(record_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{record_path}: not an export record written by anovit ({exc})") from None
    current = export_record(run_dir)
    differs = [k for k in current if recorded.get(k) != current[k]]
    if differs:
        what = "weights" if "weights_sha256" in differs else "score config"
        raise InputError(
            f"{model_file}: exported from other {what} than the run {run_dir} has now ({', '.join(differs)} "
            f"differ); export it again: anovit export --run {run_dir}"
        )
