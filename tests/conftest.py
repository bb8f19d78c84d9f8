"""Shared fixtures: a tiny MVTec-layout tree (built once per session) and tiny model configs."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

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
