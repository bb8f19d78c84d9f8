"""``benchmarks/bench.py --quick``: the benchmark runs end to end and both evaluation paths agree.

No timing is asserted: speed is what ``make bench`` reports, not what a test checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
KEYS = (
    "eval_speedup",
    "train_speedup_bf16",
    "metrics_seconds_254M",
    "metrics_peak_mib_254M",
    "encoder_flops_fraction_of_peak",
)


def _run_quick(script: str, out: Path, *args: str) -> dict:
    """``benchmarks/SCRIPT --quick --out OUT ARGS``, which must succeed; its JSON beside OUT."""
    path = BENCH.parent / script
    run = subprocess.run(
        [sys.executable, str(path), "--quick", "--out", str(out), *args], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.with_suffix(".json").read_text())


def test_quick_benchmark_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(out.read_text())
    for key in KEYS:
        assert isinstance(r[key], float) and r[key] > 0, key
    e = r["eval"]
    # Same model, same images, both in fp32: anovit's path and the straightforward one give the same numbers.
    assert e["max_image_score_difference"] < 1e-5
    # At the precision auto picked on this CPU, within that precision's rounding (bf16: 8 mantissa bits).
    tolerance = 1e-5 if e["anovit"]["precision"] == "fp32" else 5e-2
    assert e["auto_precision_max_rel_score_difference"] < tolerance
    probe = r["machine"]["probe"]
    assert probe["auto"] == ("bf16" if probe["bf16_gflops"] >= 1.2 * probe["fp32_gflops"] else "fp32")
    assert e["anovit"]["precision"] == probe["auto"]
    if e["anovit"]["precision"] == "fp32":
        assert e["image_auroc_difference"] < 1e-9 and e["pixel_auroc_difference"] < 1e-3
    assert r["metrics"]["check"]["abs_error"] < 1e-3
    assert len(r["train"]["fp32"]["losses"]) == len(r["train"]["bf16"]["losses"]) == r["train"]["epochs"]
    assert "eval_speedup" in run.stdout


def test_quick_backends_benchmark_writes_its_tables(tmp_path: Path) -> None:
    """``benchmarks/backends.py --quick``: every backend x precision timed and tested; fp32 backends agree with
    torch."""
    import pytest

    pytest.importorskip("openvino", reason="the backends benchmark needs: pip install 'anovit[openvino]'")
    out = tmp_path / "backends.md"
    r = _run_quick("backends.py", out)
    labels = [
        "torch fp32",
        "torch bf16",
        "onnxruntime fp32",
        "onnxruntime int8",
        "openvino fp32",
        "openvino bf16",
        "openvino int8",
    ]
    for model in r["speed"].values():
        assert all(model["rates"][label] > 0 for label in labels)
    for cat in r["accuracy"].values():
        ref = cat["torch fp32"]
        for label in ("onnxruntime fp32", "openvino fp32"):
            assert cat[label]["image_auroc"] == pytest.approx(ref["image_auroc"], abs=1e-3)
            assert cat[label]["pixel_auroc"] == pytest.approx(ref["pixel_auroc"], abs=1e-3)
    assert "| openvino int8 |" in out.read_text()


def test_quick_default_speed_accounts_for_the_views_and_parts(tmp_path: Path) -> None:
    """``benchmarks/default_speed.py --quick``: tiny's scoring counts four views' FLOPs where one view counts
    one, every network has its share, training and start-up are measured; the default (tokens) has four shifted
    views and its two networks."""
    tokens = _run_quick("default_speed.py", tmp_path / "tokens.md")
    t = tokens["scoring"]
    assert tokens["preset"] == "tokens" and (t["default"]["views"], t["one view"]["views"]) == (4, 1)
    # each shifted view is a whole pass through both networks; the smoothing runs once, on their mean
    assert 3.5 < t["default"]["gflops_per_image"] / t["one view"]["gflops_per_image"] < 4.0
    assert {"frozen ViT (up to the last target block)", "bottleneck + decoder blocks"} < set(
        tokens["scoring"]["parts_seconds_per_batch"]
    )
    assert tokens["training"]["gflops_per_image"] > tokens["scoring"]["one view"]["gflops_per_image"]
    out = tmp_path / "default_speed.md"
    r = _run_quick("default_speed.py", out, "--preset", "tiny")
    s = r["scoring"]
    assert (s["default"]["views"], s["one view"]["views"]) == (4, 1)
    ratio = s["default"]["gflops_per_image"] / s["one view"]["gflops_per_image"]
    assert 3.9 < ratio < 4.1  # the flipped views are whole passes through every network
    assert {"encoder (fine-tuned ViT)", "decoder", "segmentation head"} < set(s["parts_seconds_per_batch"])
    assert r["training"]["gflops_per_image"] > s["one view"]["gflops_per_image"]  # forward and backward
    assert r["startup_seconds"] > 0 and r["matmul_peak_gflops"] > 0
    assert "Start-up" in out.read_text()
