"""End to end through the command line: train + test on a tiny MVTec-layout tree."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

import anovit
from anovit.cli import main


@pytest.mark.parametrize("model", ["anovit", "cae"])
def test_train_then_test(mvtec_root: Path, tmp_path: Path, model: str, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / f"run_{model}"
    train = [
        "-q",
        "train",
        "--data",
        str(mvtec_root),
        "--category",
        "weave",
        "--model",
        model,
        "--preset",
        "small",
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--seed",
        "1",
        "--out",
        str(run),
    ]
    assert main(train) == 0
    assert {"config.json", "model.safetensors", "checkpoint.pt", "log.csv"} <= {p.name for p in run.iterdir()}
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["name"] == model and cfg["model"]["image_size"] == 32 and cfg["train"]["seed"] == 1
    assert len((run / "log.csv").read_text().strip().splitlines()) == 1 + 2
    assert load_file(str(run / "model.safetensors"))  # safetensors: nothing executes on load

    out = tmp_path / f"eval_{model}"
    assert (
        main(["-q", "test", "--run", str(run), "--data", str(mvtec_root), "--category", "weave", "--out", str(out)])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 12
    assert 0.0 <= metrics["pixel_auroc"] <= 1.0 and 0.0 <= metrics["aupro"] <= 1.0  # pixel AUROC: test_metrics
    printed = capsys.readouterr().out
    assert "image AUROC" in printed and all(
        f"\n  {d} " in printed for d in metrics["per_defect"]
    )  # a row per defect type

    # The saved weights are the model that was evaluated: the run reloaded from its files scores every test image
    # as `test` did (scores.csv), and the image AUROC is those scores' AUROC.
    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    again = [r.score for r in anovit.load_run(run, device="cpu").predict([row["image"] for row in rows])]
    np.testing.assert_allclose(again, [float(row["score"]) for row in rows], rtol=1e-5)
    labels = [int(row["label"]) for row in rows]
    assert metrics["image_auroc"] == pytest.approx(roc_auc_score(labels, [float(row["score"]) for row in rows]))

    # A finished run is not overwritten without --force.
    assert main(train) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*train, "--force"]) == 0


def test_bad_input_exits_2_with_one_line(mvtec_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["-q", "test", "--run", str(tmp_path / "missing"), "--data", str(mvtec_root), "--category", "weave"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "run folder not found" in err and len(err.splitlines()) == 1
    code = main(
        ["-q", "train", "--data", str(mvtec_root), "--category", "nope", "--model", "cae", "--out", str(tmp_path / "r")]
    )
    assert code == 2 and "category folder not found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing half-written
    code = main(
        [
            "-q",
            "train",
            "--data",
            str(mvtec_root),
            "--category",
            "weave",
            "--model",
            "anovit",
            "--preset",
            "small",
            "--image-size",
            "36",
            "--out",
            str(tmp_path / "r2"),
        ]
    )
    assert code == 2 and "not divisible by the patch size 8" in capsys.readouterr().err


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "anovit", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "test" in out.stdout


def test_demo_prints_both_models_and_writes_figure3(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["-q", "demo", "--out", str(tmp_path / "demo"), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "l2-CAE" in out and "AnoViT" in out and "pixel AUROC" in out
    assert (tmp_path / "demo" / "figures" / "weave.png").stat().st_size > 10_000
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert results["models"] == ["cae", "anovit"] and results["rows"][0]["anovit"]["pixel_auroc"] is not None
    for m in ("cae", "anovit"):
        run = tmp_path / "demo" / "runs" / "weave" / m
        assert (run / "thresholds.json").is_file() and 'class="card' in (run / "report.html").read_text()
    assert "report.html" in out
