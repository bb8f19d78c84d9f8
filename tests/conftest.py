"""Shared fixtures: a tiny MVTec-layout tree (built once per session) and tiny model configs."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from anovit.config import ModelConfig, RunConfig
from anovit.data import make_synthetic_mvtec
from anovit.presets import PRESETS

torch.set_num_threads(2)
# The precision probe's cache: one per test session, inherited by the CLI subprocesses and the test workers,
# never the user's; removed when the process that made it exits.
if "ANOVIT_CACHE_DIR" not in os.environ:
    os.environ["ANOVIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="anovit-cache-")
    atexit.register(shutil.rmtree, os.environ["ANOVIT_CACHE_DIR"], ignore_errors=True)

TINY_VIT = {"embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture(scope="session")
def mvtec_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/weave with 12 train images, 4 good and 2 x 4 defective test images at 32 px."""
    root = tmp_path_factory.mktemp("mvtec")
    return make_synthetic_mvtec(
        root,
        categories=("weave",),
        size=32,
        n_train=12,
        n_test_good=4,
        n_per_defect=2,
        defects=("scratch", "spot", "crack", "stain"),
    )


def tiny_model_config(name: str = "anovit", image_size: int = 32, patch_size: int = 8) -> ModelConfig:
    return replace(
        PRESETS["small"].model,
        name=name,
        image_size=image_size,
        patch_size=patch_size,
        encoder_overrides=dict(TINY_VIT),
        decoder_channels=(16, 8, 8, 8, 8),
        cae_base_channels=8,
        cae_latent_dim=8,
    )


def tiny_run_config(name: str = "anovit", epochs: int = 2) -> RunConfig:
    small = PRESETS["small"]
    return replace(
        small,
        model=tiny_model_config(name),
        data=replace(small.data, image_size=32),
        train=replace(small.train, epochs=epochs, batch_size=4, precision="fp32"),
    )


@pytest.fixture(scope="session")
def trained_run(mvtec_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny AnoViT trained 2 epochs on ``mvtec_root``/weave, with its hold-out thresholds. Do not modify it."""
    from anovit.runs.train import train_run

    run = tmp_path_factory.mktemp("trained") / "run"
    train_run(tiny_run_config(), mvtec_root, "weave", run, device="cpu", progress=False)
    return run


PLANTED = (slice(32, 48), slice(64, 80))  # the rows and columns of planted_square_scores' square: one 16-px patch


def planted_square_scores(cfg: RunConfig, tmp_path: Path) -> tuple[Any, Any]:
    """Train ``cfg`` (112 px) on 16 synthetic weave images, then score one good test image as it is and with a
    magenta square over one patch (:data:`PLANTED`): the two :class:`anovit.scoring.maps.Scores` (clean, defect)."""
    from anovit.data import ImageDataset, mvtec_samples
    from anovit.models.checkpoint import load_trained_model
    from anovit.runs.train import train_run
    from anovit.scoring.maps import score_batch

    root = make_synthetic_mvtec(
        tmp_path / "data", categories=("weave",), size=112, n_train=20, n_test_good=2, n_per_defect=1, defects=("spot",)
    )
    train_run(cfg, root, "weave", tmp_path / "run", device="cpu", progress=False)
    cfg, model = load_trained_model(tmp_path / "run")
    good = [s for s in mvtec_samples(root, "weave", "test") if s.label == 0]
    image = ImageDataset(good[:1], 112, progress=False)[0]["image"].unsqueeze(0)  # (1, 3, 112, 112)
    planted = image.clone()
    planted[:, :, PLANTED[0], PLANTED[1]] = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        return score_batch(model, image, cfg.score), score_batch(model, planted, cfg.score)


def onnx_against_torch(run: Path, onnx_file: Path, images: torch.Tensor) -> tuple[Any, Any, Any]:
    """The ONNX file's (maps, image scores) of ``images`` and the run's torch :class:`anovit.scoring.maps.Scores`."""
    import onnxruntime as ort

    from anovit.models.checkpoint import load_trained_model
    from anovit.scoring.maps import score_batch

    cfg, model = load_trained_model(run)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    maps, scores = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        return maps, scores, score_batch(model, images, cfg.score)


def benchmark_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
