"""The run folder's files, written atomically, without torch.

Every file is written to a temporary name beside it and renamed into place, so a killed process
never leaves a half-written file. The deployment path (``predict`` with ONNX Runtime or
OpenVINO) reads and writes run folders through this module without importing torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anovit.config import RunConfig
from anovit.errors import InputError

# The files of a run folder (thresholds.json: anovit.evaluation.thresholds; report.html: anovit.runs.test)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.safetensors"  # the best weights while training runs; renamed model.safetensors at the end
LOG_FILE = "log.csv"
METRICS_FILE = "metrics.json"

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
