"""Mixed precision chosen by measurement, not by CPU flags alone.

On CUDA, ``auto`` is bf16 where the GPU supports it. On a CPU the flags say little: a CPU with
AMX runs bf16 matmuls about 4x faster than fp32, an AMD Zen 4 with AVX512-BF16 about 2x faster,
an Intel Xeon with AVX512-BF16 but no AMX *slower* (153 vs 268 GFLOP/s), and a CPU without any
bf16 instructions emulates them about 15x slower. So ``auto`` runs a short matmul probe (well under
a second) once per machine, caches the figures in the user's cache folder, and picks bf16 only
where it measured at least :data:`BF16_MARGIN` times faster than fp32.

The cache (``$ANOVIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/anovit``, else ``~/.cache/anovit``) holds
one entry per machine key: CPU model, its bf16 flags, torch version and thread count, so a new
CPU, a torch upgrade or another ``torch.set_num_threads`` measures again.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from anovit.config import Precision
from anovit.errors import InputError

log = logging.getLogger(__name__)

CACHE_FILE = "precision.json"
# bf16 must beat fp32 by this factor in the probe: autocast adds casts the bare matmul does not
# pay, and a near-tie is not worth the lost mantissa bits.
BF16_MARGIN = 1.2
PROBE_SIZE = 512  # n of the n x n x n matmul: a ViT-Ti/S linear layer's order of size
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "avx_vnni", "amx_tile")


@dataclass(frozen=True)
class Probe:
    """Matmul throughput of this CPU in fp32 and bf16 (GFLOP/s), and what ``auto`` makes of it."""

    key: str
    fp32_gflops: float
    bf16_gflops: float
    measured_at: str

    @property
    def bf16_speedup(self) -> float:
        return self.bf16_gflops / self.fp32_gflops

    @property
    def choice(self) -> Precision:
        return choose(self.fp32_gflops, self.bf16_gflops)


def choose(fp32_gflops: float, bf16_gflops: float, margin: float = BF16_MARGIN) -> Precision:
    """The rule ``auto`` applies on a CPU: bf16 only where measured ``margin`` times faster than fp32."""
    return "bf16" if bf16_gflops >= margin * fp32_gflops else "fp32"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The bf16-related flags /proc/cpuinfo lists for this CPU (empty where there is no /proc)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    flags = set(line.split(":", 1)[-1].split())
    return tuple(f for f in BF16_FLAGS if f in flags)


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key() -> str:
    """What the probe's verdict depends on: CPU model and flags, torch version, threads."""
    flags = "+".join(cpu_flags()) or "no-bf16-flags"
    return f"{cpu_name()} | {flags} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def cache_dir() -> Path:
    if os.environ.get("ANOVIT_CACHE_DIR"):
        return Path(os.environ["ANOVIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "anovit"


def matmul_gflops(dtype: torch.dtype, n: int = PROBE_SIZE, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n x n CPU matmul in ``dtype`` over ``repeats`` timed calls (after a warm-up)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def measure() -> Probe:
    """Run the probe now (about 0.1 s where bf16 is native, under a second where it is emulated)."""
    fp32 = matmul_gflops(torch.float32)
    bf16 = matmul_gflops(torch.bfloat16)
    return Probe(machine_key(), round(fp32, 2), round(bf16, 2), time.strftime("%Y-%m-%dT%H:%M:%S"))


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cpu_probe(refresh: bool = False) -> Probe:
    """This machine's probe, from the cache when it holds this machine key, else measured and cached.

    A cache that cannot be written (read-only home) only costs a new probe in the next process.
    """
    key = machine_key()
    path = cache_dir() / CACHE_FILE
    entries = _read_cache(path)
    if not refresh and key in entries:
        try:
            return Probe(**entries[key])
        except TypeError:
            pass  # an entry of an older format: measure again
    probe = measure()
    entries[key] = asdict(probe)
    try:
        from anovit.files import write_text

        write_text(path, json.dumps(entries, indent=2) + "\n")
    except OSError as exc:
        log.debug("could not cache the precision probe in %s: %s", path, exc)
    log.info(
        "precision probe: fp32 %.0f, bf16 %.0f GFLOP/s -> auto = %s", probe.fp32_gflops, probe.bf16_gflops, probe.choice
    )
    return probe


@functools.cache
def _cpu_auto(key: str) -> Precision:
    return cpu_probe().choice


def resolve_precision(precision: Precision, device: torch.device) -> Precision:
    """Turn ``auto`` into a concrete precision for ``device``: by the GPU's support, or by the CPU probe."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return _cpu_auto(machine_key())
    return "fp32"


def usable_precision(precision: Precision, device: torch.device) -> Precision:
    """``precision`` resolved for ``device``; fp16 (a GPU run's) on a CPU becomes fp32, with a warning, as the
    CPU has no fp16 autocast."""
    precision = resolve_precision(precision, device)
    if precision == "fp16" and device.type != "cuda":
        log.warning("the run's scores were set in fp16, which this %s cannot run: scoring in fp32", device.type)
        return "fp32"
    return precision


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass; fp32 is a no-op. fp16 is CUDA-only (with a grad scaler)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise InputError("--precision fp16 needs a CUDA device; use bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
