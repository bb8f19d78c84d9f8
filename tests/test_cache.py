"""``--cache {auto,memory,none}``: the same items and results whether images are held in memory or decoded on access."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anovit.cli import main
from anovit.config import ScoreConfig, TrainConfig
from anovit.data import ImageDataset, mvtec_samples
from anovit.data import datasets as ds
from anovit.evaluation.evaluate import evaluate
from anovit.models import build_model
from anovit.training.loop import fit

from .conftest import tiny_model_config

CPU = torch.device("cpu")


def test_none_serves_the_same_items_as_memory(mvtec_root: Path) -> None:
    samples = mvtec_samples(mvtec_root, "weave", "test")
    memory, lazy = (
        ImageDataset(samples, 32, cache="memory", progress=False),
        ImageDataset(samples, 32, cache="none", progress=False),
    )
    assert memory.cached and not lazy.cached and lazy.images is None
    assert ds.loader_workers(memory) == 0 and ds.loader_workers(lazy) >= 1
    for i in range(len(samples)):
        a, b = memory[i], lazy[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"]) and a["label"] == b["label"]
        assert torch.equal(memory.image(i), lazy.image(i)) and torch.equal(memory.mask(i), lazy.mask(i))
    sub = lazy.subset([5, 1])
    assert (
        not sub.cached
        and torch.equal(sub[0]["image"], memory[5]["image"])
        and sub.labels.tolist() == [memory.labels[5], memory.labels[1]]
    )


def test_auto_decodes_from_disk_when_the_images_do_not_fit(mvtec_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = mvtec_samples(mvtec_root, "weave", "train")
    assert ImageDataset(samples, 32, progress=False).cached  # 12 tiny images fit
    monkeypatch.setattr(ds, "memory_budget", lambda: ds.decoded_bytes(len(samples), 32, False) - 1)
    assert not ImageDataset(samples, 32, progress=False).cached
    assert ds.resolve_cache("auto", 10_000, 384, False) == "none"  # 4.4 GB of decoded images


def test_training_and_evaluation_from_disk(mvtec_root: Path, tmp_path: Path) -> None:
    """Decoded in two DataLoader worker processes: training learns, evaluation equals the in-memory one exactly."""
    train = ImageDataset(mvtec_samples(mvtec_root, "weave", "train"), 32, cache="none", progress=False)
    torch.manual_seed(0)
    model = build_model(tiny_model_config("cae"))
    history = fit(
        model,
        train,
        train.subset(range(3)),
        TrainConfig(epochs=6, batch_size=4, lr=2e-3, precision="fp32"),
        CPU,
        run_dir=tmp_path,
        progress=False,
    )
    assert history[-1].train_loss < history[0].train_loss
    samples = mvtec_samples(mvtec_root, "weave", "test")
    results = [
        evaluate(model, ImageDataset(samples, 32, cache=c, progress=False), ScoreConfig(sigma=1.0), CPU, progress=False)
        for c in ("memory", "none")
    ]
    np.testing.assert_array_equal(results[0].image_scores, results[1].image_scores)
    assert results[0].pixel_auroc == results[1].pixel_auroc and results[0].aupro == results[1].aupro


def test_cli_cache_none_and_empty_mask_warning(
    mvtec_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    code = main(
        [
            "-q",
            "train",
            "--data",
            str(mvtec_root),
            "--category",
            "weave",
            "--model",
            "cae",
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--cache",
            "none",
            "--out",
            str(run),
        ]
    )
    assert code == 0 and (run / "model.safetensors").is_file()
    # An anomalous test image whose mask is empty is named in a warning.
    import shutil

    root = tmp_path / "data"
    shutil.copytree(mvtec_root, root)
    mask = next(iter(sorted((root / "weave" / "ground_truth").rglob("*_mask.png"))))
    Image.new("L", Image.open(mask).size, 0).save(mask)
    with caplog.at_level(logging.WARNING):
        assert (
            main(
                [
                    "-q",
                    "test",
                    "--run",
                    str(run),
                    "--data",
                    str(root),
                    "--category",
                    "weave",
                    "--out",
                    str(tmp_path / "e"),
                ]
            )
            == 0
        )
    assert any(
        "anomalous image with an empty mask" in r.getMessage() and mask.stem.removesuffix("_mask") in r.getMessage()
        for r in caplog.records
    )
