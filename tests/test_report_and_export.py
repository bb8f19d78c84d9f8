"""``report.html`` (self-contained, checked in headless Chromium) and the ONNX export (checked with onnxruntime)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from anovit.cli import main
from anovit.deploy.export import ScoringModel, export_model
from anovit.evaluation.report import gallery_order
from anovit.evaluation.thresholds import load_thresholds
from anovit.models.checkpoint import load_trained_model
from anovit.runs.train import train_run
from tests.conftest import tiny_run_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
ONNX_TOLERANCE = 1e-4  # max |ONNX - PyTorch| on score maps and image scores (measured ~1e-7)


def test_gallery_order_puts_the_worst_misses_first() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.45, 0.2, 0.7])
    labels = np.array([0, 1, 1, 1, 0, 0])
    # threshold 0.5: misses are the anomalous 0.1 (0.4 below) and 0.45, the normal 0.9 (0.4 above) and 0.7.
    order = gallery_order(scores, labels, 0.5)
    assert set(order[:4]) == {0, 1, 3, 5} and order.index(3) > max(order.index(0), order.index(1)) and order[-1] == 4


@pytest.fixture(scope="module")
def report(trained_run: Path, mvtec_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    code = main(
        [
            "-q",
            "test",
            "--run",
            str(trained_run),
            "--data",
            str(mvtec_root),
            "--category",
            "weave",
            "--out",
            str(out),
            "--report",
        ]
    )
    assert code == 0
    return out / "report.html"


def test_image_labels_only_give_image_metrics_and_a_report(
    trained_run: Path, mvtec_root: Path, report: Path, tmp_path: Path
) -> None:
    """A test split without ground_truth/ (parts marked good or bad, no masks): the same image AUROC and F1 as
    with the masks, pixel metrics null with the reason in notes, and the report."""
    root = tmp_path / "labels-only"
    shutil.copytree(mvtec_root, root)
    shutil.rmtree(root / "weave" / "ground_truth")
    out = tmp_path / "out"
    args = ["-q", "test", "--run", str(trained_run), "--data", str(root), "--category", "weave", "--out", str(out)]
    assert main([*args, "--report"]) == 0
    got = json.loads((out / "metrics.json").read_text())
    masked = json.loads((report.parent / "metrics.json").read_text())
    for key in ("image_auroc", "image_f1_max", "image_f1", "n_images", "n_anomalous"):
        assert got[key] == masked[key], key
    assert masked["pixel_auroc"] is not None and masked["aupro"] is not None
    assert got["pixel_auroc"] is None and got["aupro"] is None and got["pixel_f1"] is None
    assert any("no ground-truth masks" in note for note in got["notes"])
    page = (out / "report.html").read_text()
    assert "ground truth" in report.read_text() and "ground truth" not in page and got["model"] in page


def test_report_is_self_contained(report: Path) -> None:
    page = report.read_text()
    assert page.count('class="card') == 12  # every test image (fewer than the gallery's 48)
    assert page.count("<svg") >= 2  # ROC and score distribution
    assert "image AUROC" in page and "AUPRO" in page and "run threshold" in page
    per_defect = json.loads((report.parent / "metrics.json").read_text())["per_defect"]
    assert len(per_defect) > 1 and "Per defect type" in page
    assert all(f'<td>{d}</td><td class="num">{m["n_images"]}</td>' in page for d, m in per_defect.items())
    # Nothing to fetch: every src is inline data, no link to another file or host.
    assert all(src.startswith("data:") for src in re.findall(r'\bsrc="([^"]*)"', page))
    assert not re.search(r'(href|src)="(https?:)?//', page) and "<link" not in page and "@import" not in page


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (.ci/run installs it)"
)
def test_report_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    """It opens from disk, its script runs without a console message or error, and shows the gallery."""
    assert CHROMIUM is not None, "CI must install chromium (see .ci/run)"
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, *profile, "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "CONSOLE" not in dom.stderr and "Uncaught" not in dom.stderr, dom.stderr[-2000:]
    assert 'data-ready="12"' in dom.stdout  # the script ran to its end and found the 12 cards
    assert dom.stdout.count('class="card') == 12 and 'id="gallery"' in dom.stdout
    shot = tmp_path / "report.png"
    run = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, *profile, "--window-size=1280,2000", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and shot.stat().st_size > 10_000
    pixels = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(shot).convert("RGB"))
    assert pixels.std() > 10  # a rendered page, not a blank one


@pytest.fixture(scope="module")
def cae_run(mvtec_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cae") / "run"
    train_run(tiny_run_config("cae", epochs=1), mvtec_root, "weave", run, device="cpu", progress=False)
    return run


@pytest.mark.parametrize("model", ["anovit", "cae"])
def test_onnx_export_matches_pytorch(model: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    run = request.getfixturevalue("trained_run" if model == "anovit" else "cae_run")
    result = export_model(run, "onnx", False, tmp_path / "model.onnx")
    assert result.map_error is not None and result.map_error < ONNX_TOLERANCE and result.score_error < ONNX_TOLERANCE
    # Independently of export_model's own check: another batch size, another input.
    cfg, torch_model = load_trained_model(run)
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    onnx_maps, onnx_scores = session.run(["score_map", "image_score"], {"images": images.numpy()})
    with torch.no_grad():
        maps, scores = ScoringModel(torch_model, cfg.score)(images)
    assert onnx_maps.shape == (5, 32, 32) and onnx_scores.shape == (5,)
    np.testing.assert_allclose(onnx_maps, maps.numpy(), atol=ONNX_TOLERANCE, rtol=0)
    np.testing.assert_allclose(onnx_scores, scores.numpy(), atol=ONNX_TOLERANCE, rtol=0)
    np.testing.assert_allclose(onnx_scores, onnx_maps.reshape(5, -1).max(1), rtol=1e-6)
    meta = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert meta["anovit_model"] == model and meta["image_size"] == "32"
    assert float(meta["image_threshold"]) == load_thresholds(run).image


def _exported_with_score(
    trained_run: Path, tmp_path: Path, images: torch.Tensor, **score: str | int
) -> tuple[Path, np.ndarray, np.ndarray]:
    """A copy of the run with ``score`` set in its config.json, exported to ONNX (checked by export_model itself)
    -> (the copy, the ONNX maps and image scores of ``images``)."""
    import onnxruntime as ort

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    raw = json.loads((run / "config.json").read_text())
    raw["score"].update(score)
    (run / "config.json").write_text(json.dumps(raw))
    result = export_model(run, "onnx", False, tmp_path / "model.onnx")
    assert result.map_error is not None and result.map_error < ONNX_TOLERANCE and result.score_error < ONNX_TOLERANCE
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    maps, scores = session.run(["score_map", "image_score"], {"images": images.numpy()})
    return run, maps, scores


def test_onnx_export_keeps_a_top_share_image_score(trained_run: Path, tmp_path: Path) -> None:
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    _, maps, scores = _exported_with_score(trained_run, tmp_path, images, image_score="top5")
    top = np.sort(maps.reshape(3, -1), axis=1)[:, -round(0.05 * 32 * 32) :]  # the 51 highest of 1,024 pixels
    np.testing.assert_allclose(scores, top.mean(1), rtol=1e-5)
    assert not np.allclose(scores, maps.reshape(3, -1).max(1))


def test_onnx_export_keeps_the_peak_and_spread_image_score(trained_run: Path, tmp_path: Path) -> None:
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    _, maps, scores = _exported_with_score(trained_run, tmp_path, images, image_score="top1+std")
    flat = maps.reshape(3, -1)
    top = np.sort(flat, axis=1)[:, -round(0.01 * 32 * 32) :].mean(1)  # the 10 highest of 1,024 pixels
    np.testing.assert_allclose(scores, np.sqrt(top * flat.std(1)), rtol=1e-4)
    assert not np.allclose(scores, top, rtol=1e-2)


def test_onnx_export_keeps_the_test_flips(trained_run: Path, tmp_path: Path) -> None:
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    run, maps, _ = _exported_with_score(trained_run, tmp_path, images, test_flips="hv")
    cfg, torch_model = load_trained_model(run)
    with torch.no_grad():
        flipped, _ = ScoringModel(torch_model, cfg.score)(images)
        unflipped, _ = ScoringModel(torch_model, replace(cfg.score, test_flips="none"))(images)
    np.testing.assert_allclose(maps, flipped.numpy(), atol=ONNX_TOLERANCE, rtol=0)
    assert np.abs(maps - unflipped.numpy()).max() > 10 * ONNX_TOLERANCE  # the graph really scores the flips


def test_onnx_export_keeps_the_test_shift(trained_run: Path, tmp_path: Path) -> None:
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    run, maps, _ = _exported_with_score(trained_run, tmp_path, images, test_shift=2)
    cfg, torch_model = load_trained_model(run)
    with torch.no_grad():
        shifted, _ = ScoringModel(torch_model, cfg.score)(images)
        one_view, _ = ScoringModel(torch_model, replace(cfg.score, test_shift=0))(images)
    np.testing.assert_allclose(maps, shifted.numpy(), atol=ONNX_TOLERANCE, rtol=0)
    assert np.abs(maps - one_view.numpy()).max() > 10 * ONNX_TOLERANCE  # the graph really scores the shifted views


def test_export_cli_writes_into_the_run(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert main(["-q", "export", "--run", str(run), "--format", "onnx"]) == 0
    assert (run / "model.onnx").is_file() and "max |difference|" in capsys.readouterr().out
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
