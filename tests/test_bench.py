"""``benchmarks/bench.py --quick``: the benchmark runs end to end and both evaluation paths agree.

No timing is asserted: speed is what ``make bench`` reports, not what a test checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
KEYS = ("eval_speedup", "train_speedup_bf16", "metrics_seconds_254M", "metrics_peak_mib_254M", "encoder_flops_fraction_of_peak")


def test_quick_benchmark_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, str(BENCH), "--quick", "--device", "cpu", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
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
