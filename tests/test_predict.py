"""``anovit predict`` and ``anovit calibrate``: verdicts, overlays and masks at each image's own size."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anovit.cli import main
from anovit.data import labelled_folder_samples
from anovit.deploy.predict import collect_inputs
from anovit.errors import InputError
from anovit.evaluation.thresholds import THRESHOLDS_FILE, load_thresholds


def _mixed_folder(root: Path, weave_image: Path) -> dict[str, tuple[int, int]]:
    """Images of several sizes and modes, one in a subfolder; returns name -> (width, height)."""
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (50, 70), dtype=np.uint8)).save(root / "grey.png")
    Image.fromarray(rng.integers(0, 255, (40, 100, 4), dtype=np.uint8), "RGBA").save(root / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)).convert("P").save(root / "sub" / "palette.png")
    Image.fromarray(rng.integers(0, 65535, (33, 45), dtype=np.uint16)).save(root / "sub" / "deep.png")
    Image.fromarray(rng.integers(0, 255, (90, 60, 3), dtype=np.uint8)).save(root / "photo.jpg")
    shutil.copy(weave_image, root / "weave.png")  # the model's own size, 32 x 32
    return {
        "grey": (70, 50),
        "rgba": (100, 40),
        "sub/palette": (48, 64),
        "sub/deep": (45, 33),
        "photo": (60, 90),
        "weave": (32, 32),
    }


def test_predict_on_a_folder_of_mixed_sizes_and_modes(trained_run: Path, mvtec_root: Path, tmp_path: Path) -> None:
    sizes = _mixed_folder(tmp_path / "in", mvtec_root / "weave" / "test" / "crack" / "000.png")
    out = tmp_path / "out"
    assert (
        main(["-q", "predict", "--run", str(trained_run), str(tmp_path / "in"), "--out", str(out), "--device", "cpu"])
        == 0
    )
    thresholds = load_thresholds(trained_run)
    document = json.loads((out / "predictions.json").read_text())
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert document["n_images"] == len(rows) == len(sizes)
    assert document["thresholds"]["image"] == thresholds.image
    by_name = {Path(r["overlay"]).relative_to("overlays").with_suffix("").as_posix(): r for r in rows}
    assert set(by_name) == set(sizes)
    for name, (w, h) in sizes.items():
        row = by_name[name]
        assert (int(row["width"]), int(row["height"])) == (w, h)
        overlay, mask = Image.open(out / row["overlay"]), Image.open(out / row["mask"])
        assert overlay.size == (w, h) and overlay.mode == "RGB"
        assert mask.size == (w, h) and mask.mode == "L" and set(np.unique(np.asarray(mask))) <= {0, 255}
        assert row["verdict"] == ("anomalous" if float(row["score"]) >= thresholds.image else "normal")
        assert float(row["anomalous_fraction"]) == pytest.approx((np.asarray(mask) > 0).mean(), abs=1e-6)
    # A second run does not overwrite the first without --force.
    assert main(["-q", "predict", "--run", str(trained_run), str(tmp_path / "in"), "--out", str(out)]) == 2


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_predict_score_equals_the_test_score(
    trained_run: Path, mvtec_root: Path, tmp_path: Path, precision: str
) -> None:
    """An image at the model's size gets the score ``anovit test`` gives it, when both run at the same precision."""
    assert (
        main(
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
                str(tmp_path / "eval"),
                "--precision",
                precision,
            ]
        )
        == 0
    )
    tested = {r["image"]: float(r["score"]) for r in csv.DictReader((tmp_path / "eval" / "scores.csv").open())}
    folder = mvtec_root / "weave" / "test" / "crack"
    assert (
        main(
            [
                "-q",
                "predict",
                "--run",
                str(trained_run),
                str(folder),
                "--out",
                str(tmp_path / "p"),
                "--precision",
                precision,
            ]
        )
        == 0
    )
    for row in json.loads((tmp_path / "p" / "predictions.json").read_text())["predictions"]:
        # Batches of 8 here and 16 there: in bf16 the kernels may block them differently, within bf16's rounding.
        assert row["score"] == pytest.approx(tested[row["image"]], rel=1e-5 if precision == "fp32" else 2e-2)


def test_predict_bad_input_is_one_line(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a_fine.png")  # sorted first: scored before the bad one is read
    (tmp_path / "in" / "notes.png").write_text("not an image")
    assert main(["-q", "predict", "--run", str(trained_run), str(tmp_path / "in"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "notes.png: cannot be read as an image" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()  # found before anything was written
    good = tmp_path / "in" / "a_fine.png"
    good.write_bytes(good.read_bytes()[:-30])  # a truncated PNG passes the header check, fails on decoding
    (tmp_path / "in" / "notes.png").unlink()
    assert main(["-q", "predict", "--run", str(trained_run), str(tmp_path / "in"), "--out", str(tmp_path / "o")]) == 2
    assert "a_fine.png: cannot be read as an image" in capsys.readouterr().err
    assert not (tmp_path / "o" / "predictions.json").exists()
    assert (
        main(["-q", "predict", "--run", str(trained_run), str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "no such file or folder" in capsys.readouterr().err
    no_thresholds = tmp_path / "run"
    shutil.copytree(trained_run, no_thresholds)
    (no_thresholds / THRESHOLDS_FILE).unlink()
    assert main(["-q", "predict", "--run", str(no_thresholds), str(tmp_path / "in"), "--out", str(tmp_path / "o")]) == 2
    assert "anovit calibrate" in capsys.readouterr().err


def test_collect_inputs_names_are_unique(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / folder / "x.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "x.jpg")
    names = [name for _, name in collect_inputs([tmp_path / "a", tmp_path / "b" / "x.png"])]
    assert names == ["x", "x_2", "x_3"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        collect_inputs([tmp_path / "empty"])


def test_train_writes_fallback_thresholds_and_calibrate_uses_anomalies(
    trained_run: Path, mvtec_root: Path, tmp_path: Path
) -> None:
    hold_out = load_thresholds(trained_run)
    assert hold_out.image_method == "normal-quantile" and hold_out.n_anomalous == 0 and hold_out.notes
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    # The MVTec test split is a labelled folder, its masks in ../ground_truth.
    assert main(["-q", "calibrate", "--run", str(run), "--val", str(mvtec_root / "weave" / "test")]) == 0
    t = load_thresholds(run)
    assert t.image_method == "f1-max" and t.pixel_method == "f1-max" and (t.n_normal, t.n_anomalous) == (4, 8)
    assert 0 < t.image_f1 <= 1 and 0 < t.pixel_f1 <= 1
    assert main(["-q", "test", "--run", str(run), "--data", str(mvtec_root), "--category", "weave"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    # Calibrated on the test split itself, the F1 at the run's thresholds is the test set's F1-max.
    assert metrics["image_f1"] == pytest.approx(metrics["image_f1_max"])
    assert metrics["pixel_f1"] == pytest.approx(metrics["pixel_f1_max"], abs=1e-6)
    assert metrics["thresholds"]["image"] == t.image


def test_labelled_folder_layouts(mvtec_root: Path, tmp_path: Path) -> None:
    samples = labelled_folder_samples(mvtec_root / "weave" / "test")
    assert sum(s.label for s in samples) == 8 and all(s.mask is not None for s in samples if s.label)
    val = tmp_path / "val"
    shutil.copytree(mvtec_root / "weave" / "test", val)
    samples = labelled_folder_samples(val)  # no masks anywhere: image-level only
    assert sum(s.label for s in samples) == 8 and all(s.mask is None for s in samples)
    shutil.copytree(mvtec_root / "weave" / "ground_truth", val / "ground_truth")
    next((val / "ground_truth" / "crack").iterdir()).unlink()
    with pytest.raises(InputError, match="has no mask while others have one"):
        labelled_folder_samples(val)
    with pytest.raises(InputError, match="no good/ subfolder"):
        labelled_folder_samples(mvtec_root / "weave")


def test_train_with_a_validation_folder_sets_f1_thresholds(mvtec_root: Path, tmp_path: Path) -> None:
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
            "--val",
            str(mvtec_root / "weave" / "test"),
            "--out",
            str(run),
        ]
    )
    assert code == 0
    t = load_thresholds(run)
    assert t.image_method == "f1-max" and t.n_anomalous == 8 and str(mvtec_root / "weave" / "test") in t.source
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
            "--val",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "r2"),
        ]
    )
    assert code == 2 and not (tmp_path / "r2").exists()  # checked before training


def test_the_thresholds_precision_is_the_scoring_precision(
    trained_run: Path, mvtec_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The precision the thresholds were set at is recorded, and test and predict score at it unless told
    otherwise; a GPU run's fp16 falls back to fp32 on a CPU with a warning."""
    from anovit.deploy.torch_scorer import TorchScorer

    assert load_thresholds(trained_run).precision == "fp32"  # the fixture trains in fp32
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    data = json.loads((run / THRESHOLDS_FILE).read_text())
    (run / THRESHOLDS_FILE).write_text(json.dumps(data | {"precision": "bf16"}))
    assert TorchScorer(run, "cpu").precision == "bf16"
    assert TorchScorer(run, "cpu", "fp32").precision == "fp32"
    assert main(["-q", "test", "--run", str(run), "--data", str(mvtec_root), "--category", "weave"]) == 0
    assert json.loads((run / "metrics.json").read_text())["precision"] == "bf16"
    (run / THRESHOLDS_FILE).write_text(json.dumps(data | {"precision": "fp16"}))
    with caplog.at_level("WARNING"):
        assert TorchScorer(run, "cpu").precision == "fp32"
    assert "fp16" in caplog.text
