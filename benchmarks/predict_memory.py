"""Peak memory of ``anovit predict`` on large folders: it must not grow with the number of images.

Writes N generated 320 x 240 JPEGs (textures with a few dark blobs), trains a tiny run of the
``small`` preset (1 epoch), then runs ``anovit predict --on-error skip`` on folders of increasing
size in a fresh process each and reads that process's peak resident memory (``ru_maxrss``).
Writes ``benchmarks/predict_memory.md``.

    python benchmarks/predict_memory.py [--sizes 500,5000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def write_images(folder: Path, n: int, seed: int = 0) -> None:
    """n JPEGs of 320 x 240: a smooth random texture, noise, and 0-2 dark blobs; every 500th in its own subfolder."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:240, 0:320]
    for i in range(n):
        fx, fy, phase = rng.uniform(0.02, 0.2, 2).tolist() + [rng.uniform(0, 6.3)]
        base = 128 + 60 * np.sin(fx * xx + phase) * np.cos(fy * yy)
        img = np.repeat(base[..., None], 3, axis=2) + rng.normal(0, 8, (240, 320, 3))
        for _ in range(int(rng.integers(0, 3))):
            cy, cx, r = rng.integers(20, 220), rng.integers(20, 300), rng.integers(4, 20)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] *= 0.3
        sub = folder / f"part{i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(sub / f"{i:06d}.jpg", quality=85)


_MEASURED = (
    "import resource, sys\n"
    "from anovit.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


_IMPORTS_ONLY = (
    "import resource, sys\n"
    "import anovit.cli, anovit.deploy.predict, anovit.models, timm, matplotlib.pyplot\n"
    "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def imports_rss_mib() -> float:
    """Peak RSS of a process that only imports what predict imports (torch, timm, matplotlib): the floor."""
    proc = subprocess.run([sys.executable, "-c", _IMPORTS_ONLY], capture_output=True, text=True, check=True)
    return next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_KIB")) / 1024


def peak_rss_mib(argv: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MiB, seconds, exit code) of ``anovit ARGV`` in a fresh process, read by that process itself."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURED, *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 3):
        raise RuntimeError(proc.stderr[-2000:])
    kib = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_KIB"))
    return kib / 1024, seconds, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,5000", help="folder sizes, ascending")
    parser.add_argument("--out", type=Path, default=HERE / "predict_memory.md")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    anovit = [sys.executable, "-m", "anovit", "-q"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([*anovit, "synth", "--out", str(work / "data"), "--size", "64"], check=True, capture_output=True)
        subprocess.run(
            [
                *anovit,
                "train",
                "--data",
                str(work / "data"),
                "--category",
                "weave",
                "--model",
                "anovit",
                "--epochs",
                "1",
                "--out",
                str(work / "run"),
            ],
            check=True,
            capture_output=True,
        )
        for n in sizes:
            folder = work / f"in{n}"
            print(f"writing {n} images ...", flush=True)
            write_images(folder, n)
            # A few unreadable files among them, as production folders have.
            (folder / "part000" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
            print(f"predicting {n + 1} images ...", flush=True)
            peak, seconds, code = peak_rss_mib(
                [
                    "-q",
                    "predict",
                    "--run",
                    str(work / "run"),
                    str(folder),
                    "--out",
                    str(work / f"out{n}"),
                    "--on-error",
                    "skip",
                ]
            )
            rows.append((n + 1, peak, seconds, code))
            print(f"  peak RSS {peak:.0f} MiB, {seconds:.0f} s, exit {code}", flush=True)
    floor = imports_rss_mib()
    lines = [
        "| images (320 x 240 JPEG, 1 unreadable) | peak RSS of `anovit predict` | above the imports alone | wall time "
        "| images/s | exit |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {n:,} | {p:.0f} MiB | {p - floor:.0f} MiB | {s:.0f} s | {n / s:.0f} | {c} |" for n, p, s, c in rows]
    lines += ["", f"The imports alone (torch, timm, matplotlib; no image read): {floor:.0f} MiB."]
    text = (
        "`python benchmarks/predict_memory.py --sizes "
        + args.sizes
        + "` (small preset AnoViT, 64 px, CPU, each size in a fresh process)\n\n"
        + "\n".join(lines)
        + "\n"
    )
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
