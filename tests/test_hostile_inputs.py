"""Hostile and unusual images: one-line errors or correct pixels, through the loader and through ``anovit predict``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anovit.cli import main
from anovit.data.images import check_image, open_rgb
from anovit.errors import InputError

from .conftest import benchmark_script

hostile = benchmark_script("hostile_inputs")


def test_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    hostile.bomb_png(bomb)
    assert bomb.stat().st_size < 300
    for read in (check_image, open_rgb):
        with pytest.raises(
            InputError,
            match=r"bomb.png: refused as a possible decompression bomb: its header claims 900,000,000 pixels",
        ):
            read(bomb)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    upright = hostile.exif_rotated_jpeg(tmp_path / "phone.jpg")
    img = np.asarray(open_rgb(tmp_path / "phone.jpg"))
    assert img.shape == upright.shape == (60, 30, 3)
    assert np.abs(img.astype(int) - upright).mean() < 8  # JPEG rounding only: the red band is on top
    assert img[:15, :, 0].mean() > 200 and img[-15:, :, 0].mean() < 50


def test_16_bit_float_and_cmyk_are_scaled_to_8_bit_rgb(tmp_path: Path) -> None:
    deep = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.tif")
    assert np.asarray(open_rgb(tmp_path / "deep.tif"))[..., 0].tolist() == [[0, 255], [128, 1]]
    unit = np.array([[0.0, 1.0], [0.5, np.nan]], dtype=np.float32)
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    assert np.asarray(open_rgb(tmp_path / "unit.tif"))[..., 1].tolist() == [[0, 255], [128, 0]]  # NaN -> 0
    wide = np.array([[0.0, 1000.0], [65535.0, 300.0]], dtype=np.float32)  # not in [0, 1] and above 255: 16-bit range
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    assert np.asarray(open_rgb(tmp_path / "wide.tif"))[..., 2].tolist() == [[0, 4], [255, 1]]
    Image.new("RGB", (4, 4), (200, 30, 90)).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    assert np.abs(np.asarray(open_rgb(tmp_path / "cmyk.jpg")).astype(int) - (200, 30, 90)).max() <= 3


def test_every_hostile_input_through_the_cli(tmp_path: Path) -> None:
    """The table benchmarks/hostile_inputs.py writes: refused with exit 2 and a one-line reason, or scored."""
    rows = {r["input"]: r for r in hostile.run_all(tmp_path)}
    for name in ("bomb.png", "truncated.png", "notes.png", "empty.jpg"):
        assert rows[name]["exit"] == 2 and rows[name]["message"].startswith(f"anovit predict: error: in/{name}: "), (
            rows[name]
        )
    assert "decompression bomb" in rows["bomb.png"]["message"]
    for name in ("photo.png", "phone.jpg", "deep16.tif", "float32.tif", "print.jpg", "alpha.webp"):
        assert rows[name]["exit"] == 0 and rows[name]["message"].startswith("scored"), rows[name]
    assert "30 x 60" in rows["phone.jpg"]["message"]  # upright
    assert rows["all of the above"]["exit"] == 3 and "(6 scored, 4 error rows)" in rows["all of the above"]["message"]


def test_predict_skip_keeps_going_and_lists_the_failures(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "in"
    cases = hostile.make_inputs(folder)
    out = tmp_path / "out"
    assert main(["-q", "predict", "--run", str(trained_run), str(folder), "--out", str(out), "--on-error", "skip"]) == 3
    assert "4 of 10 images could not be read" in capsys.readouterr().err
    rows = {Path(r["image"]).name: r for r in csv.DictReader((out / "predictions.csv").open())}
    assert set(rows) == set(cases)
    for name in ("bomb.png", "truncated.png", "notes.png", "empty.jpg"):
        r = rows[name]
        assert r["verdict"] == "error" and name in r["error"] and r["score"] == "" and r["overlay"] == ""
    scored = [r for r in rows.values() if r["verdict"] != "error"]
    assert len(scored) == 6 and all(
        float(r["score"]) > 0 and (out / r["overlay"]).is_file() and r["error"] == "" for r in scored
    )
    document = json.loads((out / "predictions.json").read_text())
    assert document["n_errors"] == 4 and document["n_images"] == 10
    assert next(p for p in document["predictions"] if p["verdict"] == "error")["score"] is None
    # The default stops at the first bad file, before writing anything.
    assert main(["-q", "predict", "--run", str(trained_run), str(folder), "--out", str(tmp_path / "o2")]) == 2
    assert not (tmp_path / "o2").exists()


def test_float_arrays_outside_0_1_are_refused_not_clipped() -> None:
    """A float array is read as [0, 1]; one in 0-255 (a common slip) would turn white if clipped: refused."""
    from anovit.data.images import to_rgb

    assert to_rgb(np.full((4, 4, 3), 0.5, np.float32)).tolist() == np.full((4, 4, 3), 128, np.uint8).tolist()
    with pytest.raises(InputError, match=r"values in \[0, 254\]: expected \[0, 1\]"):
        to_rgb(np.linspace(0, 254, 48, dtype=np.float32).reshape(4, 4, 3))
    with pytest.raises(InputError, match="NaN or infinite"):
        to_rgb(np.array([[0.2, np.nan]], np.float64))
