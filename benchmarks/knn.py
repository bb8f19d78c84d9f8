"""The nearest-neighbour baseline (``--model knn``) on the real sets: precision x coreset share, image and pixel
AUROC, the bank's size and the seconds to build it and to test.

    python benchmarks/knn.py [--data ../shared/data/mvtec] [--categories bottle,tire,screw] [--tiles K]
                             [--patch-stride S]

Each setting trains (builds the bank) and tests through the CLI, as a user would; finished runs are kept in
benchmarks/knn/runs and not redone. Writes benchmarks/knn.md; with ``--tiles K`` (K > 1) the default setting alone,
the ViT-Ti at its 224 px on K x K tiles of a 224 K-px image (``anovit train --tiles K``), to benchmarks/knn_tilesK.md;
with ``--patch-stride S`` (S < 16) the default setting alone, its 16-px patches read every S px (``anovit train
--patch-stride S``), to benchmarks/knn_strideS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from anovit.runtime.precision import cpu_flags, cpu_name  # noqa: E402

WEIGHTS = HERE.parents[1] / "shared/weights/vit_tiny_patch16_224.safetensors"
SETTINGS = [("fp32", 0.1), ("fp32", 0.25), ("fp32", 1.0), ("bf16", 0.1), ("bf16", 1.0)]  # (precision, coreset share)


def _anovit(*args: str) -> float:
    """Run ``anovit ARGS`` in a process of its own; the seconds it took."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "anovit", "-q", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/mvtec")
    parser.add_argument("--categories", default="bottle,tire,screw")
    parser.add_argument("--out", type=Path, default=HERE / "knn")
    parser.add_argument("--tiles", type=int, default=1, help="K x K tiles of a 224 K-px image (default 1: none)")
    parser.add_argument("--patch-stride", type=int, default=16, help="read the patches every S px (default 16)")
    args = parser.parse_args()
    tile_flag = ["--tiles", str(args.tiles)] if args.tiles > 1 else []
    tiled = ["--image-size", str(224 * args.tiles), *tile_flag] if tile_flag else []
    strided = ["--patch-stride", str(args.patch_stride)] if args.patch_stride != 16 else []
    settings = SETTINGS[:1] if tiled or strided else SETTINGS
    suffix = (f"-tiles{args.tiles}" if tiled else "") + (f"-stride{args.patch_stride}" if strided else "")
    where = f" on {args.tiles} x {args.tiles} tiles of a {224 * args.tiles}-px image" if tiled else ""
    where += f", patches every {args.patch_stride} px" if strided else ""
    command = " ".join(["python benchmarks/knn.py", *tile_flag, *strided])
    table = HERE / ("knn" + suffix.replace("-", "_") + ".md")
    if not WEIGHTS.is_file():
        sys.exit(f"{WEIGHTS}: the pretrained ViT-Ti is needed (knn searches pretrained features)")
    os.environ.setdefault("ANOVIT_ENCODER_WEIGHTS", str(WEIGHTS))
    rows = []
    for category in [c for c in args.categories.split(",") if c]:
        for precision, share in settings:
            run = args.out / "runs" / f"{category}-{precision}-{share}{suffix}"
            timing = run / "seconds.json"
            if not timing.is_file():
                data = ["--data", str(args.data), "--category", category]
                options = [
                    "--out",
                    str(run),
                    "--force",
                    "--precision",
                    precision,
                    "--coreset",
                    str(share),
                    *tiled,
                    *strided,
                ]
                build = _anovit("train", "--model", "knn", *data, *options)
                test = _anovit("test", "--run", str(run), *data, "--precision", precision)
                timing.write_text(json.dumps({"build": build, "test": test}))
            m = json.loads((run / "metrics.json").read_text())
            bank = json.loads((run / "data.json").read_text())["memory_bank"]
            s = json.loads(timing.read_text())
            rows.append(
                f"| {category} | {precision} | {share:g} | {_num(m['image_auroc'])} | {_num(m['pixel_auroc'])} | "
                f"{_num(m['aupro'])} | {bank['patches']:,} ({bank['mib']:.1f} MiB) | {s['build']:.0f} | "
                f"{s['test']:.0f} |"
            )
            print(rows[-1], flush=True)
    head = [
        "# The nearest-neighbour baseline on the real sets",
        "",
        f"`{command}`: `anovit train --model knn` (the bank) and `anovit "
        f"test` per setting, ViT-Ti/16 at 224 px{where}, blocks 2, 5, 8, 3 x 3 local averaging, sigma 4, image score =",
        "max; wall seconds of each whole",
        f"process (start-up included) on 2 CPU cores ({cpu_name()}; bf16 flags: {', '.join(cpu_flags()) or 'none'}).",
        "screw has image labels only (no masks): no pixel metrics. The default: fp32, coreset 0.1.",
        "",
        "| set | precision | coreset | image AUROC | pixel AUROC | AUPRO | bank | build s | test s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    table.write_text("\n".join(head + rows) + "\n")


if __name__ == "__main__":
    main()
