"""A bounded load test of ``anovit serve`` on 127.0.0.1: latency and throughput with and without dynamic batching.

For the ``small`` preset (trained 1 epoch on the built-in data) and ViT-B/16 at 384 px (``paper``,
random weights: speed does not depend on them), the real server is started in its own process,
then ``--clients`` concurrent clients send a fixed number of one-image requests. Every request
must be answered (200); the table gives p50 / p99 latency and images/s, with batching
(``--max-batch 16 --max-wait-ms 10``) and without (``--max-batch 1 --max-wait-ms 0``).
Writes ``benchmarks/serve_load.md``.

    python benchmarks/serve_load.py [--clients 8] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
MODES = {
    "batching": ["--max-batch", "16", "--max-wait-ms", "10"],
    "no batching": ["--max-batch", "1", "--max-wait-ms", "0"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_runs(work: Path, quick: bool) -> dict[str, Path]:
    """The small run (trained 1 epoch) and, unless quick, a randomly initialised paper run with the same thresholds."""
    from dataclasses import replace

    from anovit.files import WEIGHTS_FILE, save_config
    from anovit.models import build_model
    from anovit.models.checkpoint import save_weights
    from anovit.presets import PRESETS

    anovit = [sys.executable, "-m", "anovit", "-q"]
    subprocess.run([*anovit, "synth", "--out", str(work / "data"), "--size", "64"], check=True, capture_output=True)
    small = work / "small"
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
            str(small),
        ],
        check=True,
        capture_output=True,
    )
    runs = {"small (64 px)": small}
    if not quick:
        paper = work / "paper"
        cfg = replace(PRESETS["paper"], model=replace(PRESETS["paper"].model, name="anovit", pretrained=False))
        save_config(paper, cfg)
        save_weights(build_model(cfg.model, load_encoder_weights=False), paper / WEIGHTS_FILE)
        shutil.copy(small / "thresholds.json", paper / "thresholds.json")
        runs["paper ViT-B/16 (384 px)"] = paper
    return runs


def png(size: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
        buf, format="PNG"
    )
    return buf.getvalue()


async def load(url: str, images: list[bytes], clients: int) -> dict[str, Any]:
    """Send every image as one request, ``clients`` at a time; latency of each, and the statuses."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for image in images:
        queue.put_nowait(image)
    latencies: list[float] = []
    statuses: list[int] = []

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            image = queue.get_nowait()
            start = time.perf_counter()
            response = await http.post(url, content=image, headers={"content-type": "image/png"})
            latencies.append(time.perf_counter() - start)
            statuses.append(response.status_code)

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    seconds = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    return {
        "requests": len(images),
        "answered_200": statuses.count(200),
        "other_status": len(statuses) - statuses.count(200),
        "lost": len(images) - len(statuses),
        "seconds": seconds,
        "images_per_s": len(images) / seconds,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def serve_and_load(run: Path, mode: list[str], n: int, size: int, clients: int) -> dict[str, Any]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "anovit", "-q", "serve", "--run", str(run), "--port", str(port), *mode],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"server did not start: {proc.stderr.read()[-2000:]}") from None
                time.sleep(0.2)
        url = f"{base}/v1/runs/{run.name}/predict"
        asyncio.run(load(url, [png(size, i) for i in range(min(clients, n))], clients))  # warm-up, untimed
        return asyncio.run(load(url, [png(size, i) for i in range(n)], clients))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "serve_load.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = make_runs(Path(tmp), args.quick)
        for name, run in runs.items():
            n, size = ((64 if args.quick else 400), 64) if name.startswith("small") else (24, 384)
            for mode, flags in MODES.items():
                print(f"{name}, {mode}: {n} requests from {args.clients} clients ...", flush=True)
                r = serve_and_load(run, flags, n, size, args.clients)
                rows.append((name, mode, r))
                print(
                    f"  {r['images_per_s']:.1f} images/s, p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, "
                    f"{r['answered_200']}/{r['requests']} answered 200",
                    flush=True,
                )
    lines = [
        f"`python benchmarks/serve_load.py --clients {args.clients}{' --quick' if args.quick else ''}`: one-image PNG "
        "requests "
        "on 127.0.0.1, the server on this machine's CPU (precision auto), after a warm-up.",
        "",
        "| model | mode | requests | answered 200 | lost | images/s | p50 latency | p99 latency |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {mode} | {r['requests']} | {r['answered_200']} | {r['lost']} | {r['images_per_s']:.1f} | "
        f"{r['p50_ms']:.0f} ms | "
        f"{r['p99_ms']:.0f} ms |"
        for name, mode, r in rows
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
