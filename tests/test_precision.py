"""``--precision auto`` on a CPU: bf16 only where a matmul probe measured it faster, cached per machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anovit.runtime import precision as prec
from anovit.runtime.precision import BF16_MARGIN, Probe, choose, cpu_probe, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("fp32", "bf16", "expected"),
    [
        (268.0, 153.0, "fp32"),  # Intel AVX512-BF16 without AMX: bf16 slower
        (100.0, 7.0, "fp32"),  # no bf16 instructions: emulated
        (160.0, 400.0, "bf16"),  # AMD Zen 4: native, faster
        (268.0, 1000.0, "bf16"),  # AMX
        (100.0, 110.0, "fp32"),  # a near-tie is not worth the precision
    ],
)
def test_rule_picks_bf16_only_where_measured_faster(fp32: float, bf16: float, expected: str) -> None:
    assert choose(fp32, bf16) == expected


def test_rule_never_picks_a_precision_measured_slower() -> None:
    g = torch.Generator().manual_seed(0)
    for fp32, bf16 in (torch.rand(1000, 2, generator=g) * 500 + 1).tolist():
        if choose(fp32, bf16) == "bf16":
            assert bf16 >= BF16_MARGIN * fp32 > fp32


def test_probe_is_measured_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANOVIT_CACHE_DIR", str(tmp_path))
    calls: list[int] = []

    def fake_measure() -> Probe:
        calls.append(1)
        return Probe(prec.machine_key(), 268.0, 153.0, "now")

    monkeypatch.setattr(prec, "measure", fake_measure)
    first = cpu_probe()
    assert first.choice == "fp32" and calls == [1]
    cached = json.loads((tmp_path / "precision.json").read_text())
    assert cached[prec.machine_key()]["bf16_gflops"] == 153.0
    assert cpu_probe() == first and calls == [1]  # read back, not measured again
    assert cpu_probe(refresh=True) == first and calls == [1, 1]
    # Another machine key (another CPU, torch or thread count) measures again.
    monkeypatch.setattr(prec, "machine_key", lambda: "another CPU | avx512_bf16 | torch x | 2 threads")
    cpu_probe()
    assert calls == [1, 1, 1] and len(json.loads((tmp_path / "precision.json").read_text())) == 2


def test_corrupt_or_unwritable_cache_measures_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prec, "measure", lambda: Probe(prec.machine_key(), 100.0, 300.0, "now"))
    monkeypatch.setenv("ANOVIT_CACHE_DIR", str(tmp_path))
    (tmp_path / "precision.json").write_text("{ not json")
    assert cpu_probe().choice == "bf16"
    assert prec.machine_key() in json.loads((tmp_path / "precision.json").read_text())
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ANOVIT_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    assert cpu_probe().choice == "bf16"


def test_auto_follows_this_machines_probe() -> None:
    """On the CPU this runs on, whichever it is: auto is the probe's verdict, and never the slower one."""
    probe = cpu_probe()
    assert probe.fp32_gflops > 0 and probe.bf16_gflops > 0
    auto = resolve_precision("auto", CPU)
    assert auto == probe.choice
    if auto == "bf16":
        assert probe.bf16_gflops > probe.fp32_gflops
    for explicit in ("fp32", "bf16"):
        assert resolve_precision(explicit, CPU) == explicit


def test_real_probe_measures_both_dtypes() -> None:
    fp32 = prec.matmul_gflops(torch.float32, n=128, repeats=2)
    bf16 = prec.matmul_gflops(torch.bfloat16, n=128, repeats=2)
    assert fp32 > 0.1 and bf16 > 0.01


def test_info_prints_the_probe_and_the_choice(capsys: pytest.CaptureFixture) -> None:
    from anovit.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    probe = cpu_probe()
    assert f"--precision auto on this CPU: {probe.choice}" in out and "matmul probe" in out and "backends:" in out
