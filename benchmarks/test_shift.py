"""Re-score trained runs of ``anovit benchmark --dataset mvtec`` with other test-time shifts, without training again.

``ScoreConfig.test_shift`` = S scores four views of each image shifted diagonally by S pixels each way and averages
their maps, moved back (``anovit.scoring.maps.combined_map``). With the ViT's 16-px patches, S = 4 puts the views'
patch grids at four phases 8 px apart (a grid twice as fine); S = 8 puts all four at the same phase, half a patch
off the image's own grid, so it averages four views without sampling between the cells: the control that separates
the finer grid from the averaging. S = 0 is one view.

    python benchmarks/test_shift.py --runs BENCH_SEED0 BENCH_SEED1 --data ../shared/data/mvtec --shifts 0,4,8
    python benchmarks/test_shift.py --runs PHOTO_BENCH --data PHOTO --shifts 0,4,8 --out benchmarks/test_shift

Each BENCH folder is an ``anovit benchmark --dataset mvtec --models anovit`` output (BENCH/runs/<category>/anovit).
Writes OUT/test_shift.json (rows kept between calls) and OUT/test_shift.md: image / pixel AUROC (AUPRO) per run and
shift.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ablation import _num, _write_markdown  # noqa: E402
from anovit.data import ImageDataset, mvtec_samples  # noqa: E402
from anovit.evaluation.evaluate import evaluate  # noqa: E402
from anovit.files import WEIGHTS_FILE  # noqa: E402
from anovit.models.checkpoint import load_trained_model  # noqa: E402
from anovit.runtime.device import resolve_device  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="anovit benchmark folders (MVTec layout)")
    ap.add_argument("--data", type=Path, required=True, help="the MVTec-layout root the runs were trained on")
    ap.add_argument("--shifts", default="0,4,8", help="test shifts in pixels, comma-separated")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/test_shift"))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    dev = resolve_device("auto")
    shifts = [int(s) for s in args.shifts.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "test_shift.json"
    rows = json.loads(results.read_text()) if results.is_file() else []
    done = {(r["run"], r["shift"]) for r in rows}
    for bench in args.runs:
        for run in sorted((bench / "runs").glob("*/anovit")):
            if not (run / WEIGHTS_FILE).is_file() or all((str(run), s) in done for s in shifts):
                continue
            cfg, model = load_trained_model(run, dev)
            category = run.parent.name
            test = ImageDataset(mvtec_samples(args.data, category, "test"), cfg.data.image_size, progress=False)
            for shift in shifts:
                if (str(run), shift) in done:
                    continue
                start = time.perf_counter()
                score = replace(cfg.score, test_shift=shift)
                ev = evaluate(model, test, score, dev, cfg.train.precision, progress=False)
                row = dict(
                    run=str(run),
                    set=category,
                    seed=cfg.train.seed,
                    shift=shift,
                    image_auroc=ev.image_auroc,
                    pixel_auroc=ev.pixel_auroc,
                    aupro=ev.aupro,
                    seconds=time.perf_counter() - start,
                    images=len(test),
                )
                rows.append(row)
                print(
                    f"{category:8s} shift {shift}: image {ev.image_auroc:.3f} pixel {_num(ev.pixel_auroc)} "
                    f"aupro {_num(ev.aupro)} ({row['seconds']:.1f} s)",
                    flush=True,
                )
                results.write_text(json.dumps(rows, indent=1))
    write_table(rows, shifts, args.out / "test_shift.md")


def write_table(rows: list[dict], shifts: list[int], path: Path) -> None:
    """One row per run, one column per shift: image / pixel AUROC (AUPRO), and the mean image AUROC per shift."""
    cell = {(r["run"], r["shift"]): r for r in rows}
    of_run = {r["run"]: r for r in rows}  # each run's set and seed
    runs = sorted(of_run, key=lambda run: (of_run[run]["set"], run))

    def text(r: dict | None) -> str:
        if r is None:
            return "–"
        pixel = f" / {_num(r['pixel_auroc'])} ({_num(r['aupro'])})" if r["pixel_auroc"] is not None else ""
        return f"{r['image_auroc']:.3f}{pixel}"

    body = [
        [
            f"{of_run[run]['set']}, seed {of_run[run]['seed']}",
            run,
            *(text(cell.get((run, s))) for s in shifts),
        ]
        for run in runs
    ]
    means = []
    for s in shifts:
        got = [cell[run, s]["image_auroc"] for run in runs if (run, s) in cell]
        means.append(f"{sum(got) / len(got):.3f} ({len(got)} runs)" if got else "–")
    body.append(["**mean image AUROC**", "", *means])
    _write_markdown(path, ["set", "run", *(f"shift {s} px" if s else "one view" for s in shifts)], body)
    print(f"table: {path}")


if __name__ == "__main__":
    main()
