"""Inference backends: ONNX Runtime and OpenVINO give torch's maps and scores (fp32 within 1e-4), int8 close to them,
and the deployment path runs with torch, timm, matplotlib, scipy and scikit-learn unimportable."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anovit.cli import main
from anovit.data import ImageDataset, mvtec_samples
from anovit.deploy.api import resize_map
from anovit.deploy.backends import load_scorer
from anovit.deploy.export import export_model
from anovit.errors import InputError
from anovit.evaluation.colours import jet

pytest.importorskip("onnxruntime")
openvino = pytest.importorskip("openvino", reason="the openvino backend needs: pip install 'anovit[openvino]'")

BLOCKER = """
import sys
BLOCKED = {"torch", "timm", "matplotlib", "scipy", "sklearn", "torchvision", "safetensors"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the deployment path must not import it")
sys.meta_path.insert(0, Block())
from anovit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny trained run with all four exports: model[-int8].onnx and model[-int8].xml."""
    import shutil

    run = tmp_path_factory.mktemp("exported") / "run"
    shutil.copytree(trained_run, run)
    for fmt in ("onnx", "openvino"):
        for int8 in (False, True):
            export_model(run, fmt, int8)
    return run


def _test_images(mvtec_root: Path) -> np.ndarray:
    ds = ImageDataset(mvtec_samples(mvtec_root, "weave", "test"), 32, progress=False)
    return np.stack([ds.image(i).numpy() for i in range(len(ds))])  # (N, 3, 32, 32) uint8


def test_fp32_backends_give_torchs_maps(exported: Path, mvtec_root: Path) -> None:
    images = _test_images(mvtec_root)
    ref_maps, ref_scores = load_scorer(exported, "torch", precision="fp32")(images)
    for backend in ("onnxruntime", "openvino"):
        maps, scores = load_scorer(exported, backend, precision="fp32")(images)  # type: ignore[arg-type]
        assert maps.shape == ref_maps.shape and scores.shape == ref_scores.shape
        assert np.abs(maps - ref_maps).max() < 1e-4, backend
        assert np.abs(scores - ref_scores).max() < 1e-4, backend


def test_int8_stays_close_to_fp32(exported: Path, mvtec_root: Path) -> None:
    images = _test_images(mvtec_root)
    ref_maps, ref_scores = load_scorer(exported, "torch", precision="fp32")(images)
    for backend, name in (("onnxruntime", "model-int8.onnx"), ("openvino", "model-int8.xml")):
        maps, scores = load_scorer(exported, backend, exported / name, precision="fp32")(images)  # type: ignore[arg-type]
        assert np.isfinite(maps).all() and not np.array_equal(maps, ref_maps)  # it is quantised
        # int8 rounding, not another model: errors are a few percent of the score range at most.
        assert np.abs(scores - ref_scores).max() < 0.1 * ref_scores.max(), backend
        assert np.corrcoef(maps.ravel(), ref_maps.ravel())[0, 1] > 0.95, backend


def test_test_and_predict_on_each_backend_agree_with_torch(exported: Path, mvtec_root: Path, tmp_path: Path) -> None:
    results = {}
    for backend in ("torch", "onnxruntime", "openvino"):
        out = tmp_path / backend
        report = ["--report"] if backend == "openvino" else []  # its gallery is redrawn by the same backend
        assert (
            main(
                [
                    "-q",
                    "test",
                    "--run",
                    str(exported),
                    "--data",
                    str(mvtec_root),
                    "--category",
                    "weave",
                    "--out",
                    str(out),
                    "--backend",
                    backend,
                    "--precision",
                    "fp32",
                    *report,
                ]
            )
            == 0
        )
        results[backend] = json.loads((out / "metrics.json").read_text())
        assert results[backend]["backend"] == backend
    assert 'class="card' in (tmp_path / "openvino" / "report.html").read_text()
    for backend in ("onnxruntime", "openvino"):
        for key in ("image_auroc", "pixel_auroc", "aupro"):
            assert results[backend][key] == pytest.approx(results["torch"][key], abs=1e-3), (backend, key)
    folder = mvtec_root / "weave" / "test" / "crack"
    rows = {}
    for backend in ("torch", "openvino"):
        assert (
            main(
                [
                    "-q",
                    "predict",
                    "--run",
                    str(exported),
                    str(folder),
                    "--out",
                    str(tmp_path / f"p-{backend}"),
                    "--backend",
                    backend,
                    "--precision",
                    "fp32",
                ]
            )
            == 0
        )
        rows[backend] = {r["image"]: r for r in csv.DictReader((tmp_path / f"p-{backend}" / "predictions.csv").open())}
    for image, r in rows["torch"].items():
        assert float(rows["openvino"][image]["score"]) == pytest.approx(float(r["score"]), abs=1e-4)


def test_predict_without_torch(exported: Path, mvtec_root: Path, tmp_path: Path) -> None:
    """ONNX Runtime and OpenVINO scoring with torch, timm, matplotlib, scipy and scikit-learn unimportable."""
    folder = mvtec_root / "weave" / "test" / "spot"
    assert (
        main(
            [
                "-q",
                "predict",
                "--run",
                str(exported),
                str(folder),
                "--out",
                str(tmp_path / "torch"),
                "--precision",
                "fp32",
            ]
        )
        == 0
    )
    reference = {r["image"]: float(r["score"]) for r in csv.DictReader((tmp_path / "torch" / "predictions.csv").open())}
    for backend, model in (("onnxruntime", "model.onnx"), ("openvino", "model-int8.xml")):
        out = tmp_path / backend
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                BLOCKER,
                "-q",
                "predict",
                "--run",
                str(exported),
                str(folder),
                "--out",
                str(out),
                "--backend",
                backend,
                "--model",
                str(exported / model),
            ],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        rows = list(csv.DictReader((out / "predictions.csv").open()))
        assert len(rows) == len(reference) and all((out / r["overlay"]).is_file() for r in rows)
        tolerance = 1e-4 if backend == "onnxruntime" else 0.1 * max(reference.values())
        for r in rows:
            assert float(r["score"]) == pytest.approx(reference[r["image"]], abs=tolerance), backend
    blocked = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER,
            "-q",
            "predict",
            "--run",
            str(exported),
            str(folder),
            "--out",
            str(tmp_path / "t"),
        ],
        capture_output=True,
        text=True,
    )
    assert blocked.returncode != 0 and "torch" in blocked.stderr  # the blocker works: the torch backend does need torch


def test_backend_errors_are_one_line(
    exported: Path, trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    folder = str(tmp_path / "a.png")
    with pytest.raises(InputError, match="no exported model here; write it with: anovit export"):
        load_scorer(trained_run, "onnxruntime")
    with pytest.raises(InputError, match="--model is for an exported file"):
        load_scorer(exported, "torch", exported / "model.onnx")
    with pytest.raises(InputError, match="no bf16 kernels"):
        load_scorer(exported, "onnxruntime", precision="bf16")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(InputError, match="broken.onnx: no export record"):
        load_scorer(exported, "onnxruntime", broken)
    record = (exported / "model.onnx.json").read_text()  # a file that claims to be this run's export
    (tmp_path / "broken.onnx.json").write_text(record)
    with pytest.raises(InputError, match="broken.onnx: not a readable ONNX model"):
        load_scorer(exported, "onnxruntime", broken)
    with pytest.raises(InputError, match="broken.xml: not a readable OpenVINO model"):
        (tmp_path / "broken.xml").write_text("<net>")
        (tmp_path / "broken.xml.json").write_text(record)
        load_scorer(exported, "openvino", tmp_path / "broken.xml")
    assert (
        main(
            ["-q", "predict", "--run", str(trained_run), folder, "--out", str(tmp_path / "o"), "--backend", "openvino"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "model.xml: no exported model here" in err and len(err.splitlines()) == 1


def test_stale_exports_are_refused_and_retraining_clears_them(exported: Path, mvtec_root: Path, tmp_path: Path) -> None:
    """An export is tied to the weights and score config it was made from: a changed score config or retrained
    weights make the backends refuse it, and training again (--force) removes every file the old model made."""
    import shutil

    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(exported, run)
    load_scorer(run, "onnxruntime")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"score": config["score"] | {"sigma": 9.0}}))
    with pytest.raises(InputError, match="model.onnx: exported from other score config"):
        load_scorer(run, "onnxruntime")
    with pytest.raises(InputError, match="model-int8.xml: exported from other score config"):
        load_scorer(run, "openvino", run / "model-int8.xml")
    (run / "config.json").write_text(json.dumps(config))
    weights = load_file(run / "model.safetensors")
    name = next(iter(weights))
    save_file(weights | {name: weights[name] + 1}, run / "model.safetensors")
    with pytest.raises(InputError, match="model.xml: exported from other weights"):
        load_scorer(run, "openvino")
    (run / "metrics.json").write_text("{}")  # as a test of the old model leaves them
    (run / "report.html").write_text("<html></html>")
    data = ["--data", str(mvtec_root), "--category", "weave"]
    args = ["-q", "train", "--model", "anovit", "--preset", "small", *data, "--out", str(run), "--force"]
    assert main([*args, "--epochs", "1", "--image-size", "32", "--device", "cpu"]) == 0
    left = sorted(p.name for p in run.iterdir())
    assert not [n for n in left if n.startswith("model") and n != "model.safetensors"], left
    assert "metrics.json" not in left and "report.html" not in left
    assert (run / "thresholds.json").is_file()  # the new model's


def test_jet_is_matplotlibs_and_resize_is_torchs() -> None:
    import matplotlib

    x = np.concatenate([np.linspace(-0.1, 1.1, 20001), [0.0, 1.0, 1 / 256, 255 / 256]])
    np.testing.assert_allclose(jet(x), matplotlib.colormaps["jet"](np.clip(x, 0, 1))[..., :3], atol=1e-12)
    rng = np.random.default_rng(0)
    for s, h, w in ((32, 70, 50), (64, 20, 100), (16, 333, 7), (32, 32, 32)):
        m = rng.random((s, s)).astype(np.float32)
        expected = F.interpolate(torch.from_numpy(m)[None, None], size=(h, w), mode="bilinear", align_corners=False)[
            0, 0
        ].numpy()
        np.testing.assert_allclose(resize_map(m, h, w), expected, atol=1e-5)


def test_int8_leaves_the_score_path_in_fp32_and_checks_its_ranking(mvtec_root: Path, tmp_path: Path) -> None:
    """int8 quantises the trained encoder and decoder only: the frozen reference ViT of the feature score and the
    segmentation head stay fp32; the export is checked on the run's real normal images and records the result."""
    from dataclasses import replace

    import onnx

    from anovit.runs.train import train_run
    from tests.conftest import tiny_run_config

    base = tiny_run_config(epochs=1)
    cfg = replace(
        base,
        model=replace(base.model, reference_layers=(0,), segment_head=True),
        train=replace(base.train, objective="restore", feature_loss=0.5),
        score=replace(base.score, kinds=("feature", "segment")),
    )
    run = tmp_path / "run"
    train_run(cfg, mvtec_root, "weave", run, device="cpu", progress=False)
    result = export_model(run, "onnx", int8=True)
    quantised = [
        n.name for n in onnx.load(str(result.path)).graph.node if n.op_type in ("MatMulInteger", "ConvInteger")
    ]
    assert any(n.startswith("/model/encoder/") for n in quantised)
    assert not [n for n in quantised if not n.startswith(("/model/encoder/", "/model/decoder/"))]
    record = json.loads((run / "model-int8.onnx.json").read_text())
    assert record["int8_check"]["images"] == 12 and result.rank_correlation == record["int8_check"]["spearman"]
    assert result.rank_correlation > 0.5


def test_serve_an_int8_export(exported: Path, mvtec_root: Path) -> None:
    """``serve --model FILE`` serves an exported int8 file; --model with several runs is refused."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from anovit.deploy.api import load_run
    from anovit.deploy.serve import create_app, serve

    run = load_run(exported, "onnxruntime", exported / "model-int8.onnx")
    image = next((mvtec_root / "weave" / "test" / "crack").iterdir()).read_bytes()
    with TestClient(create_app([run])) as client:
        assert "model-int8.onnx" in client.get("/v1/runs").json()["runs"][0]["backend"]
        answer = client.post(f"/v1/runs/{exported.name}/predict", content=image, headers={"content-type": "image/png"})
        assert answer.status_code == 200 and answer.json()["images"][0]["score"] > 0
    with pytest.raises(InputError, match="--model names the exported file of one run"):
        serve([str(exported), str(exported)], backend="onnxruntime", model_file=str(exported / "model-int8.onnx"))
