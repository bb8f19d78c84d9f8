"""How a trained run's map rises at its edges on normal images: the mean map over the run's hold-out (the map the
image score reads), its outer band against its interior.

For each run of the ``anovit benchmark`` folders given (MVTec-layout data under ``--data``), the hold-out its
training kept out is scored as ``anovit test`` scores (the run's own settings), and the mean of the smoothed maps is
compared: the four corners (``--band`` of the side square), the whole outer band and the interior; and how many of
the category's defect masks reach into that band, or lie wholly inside it. Writes OUT/map_border.md and
OUT/map_border.json:

    python benchmarks/map_border.py --benchmarks BENCH0 BENCH1 --data ../shared/data/mvtec --out OUT
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from anovit.data import mvtec_samples  # noqa: E402
from anovit.files import WEIGHTS_FILE  # noqa: E402
from anovit.models.checkpoint import load_trained_model  # noqa: E402
from anovit.runtime.device import resolve_device  # noqa: E402
from anovit.runtime.precision import autocast  # noqa: E402
from anovit.scoring.maps import combined_map  # noqa: E402
from anovit.scoring.smoothing import gaussian_blur  # noqa: E402
from rescore import band_mask, hold_out  # noqa: E402


@torch.no_grad()
def mean_judged_map(run: Path, data: Path, category: str, dev: torch.device) -> torch.Tensor:
    """The mean over the run's hold-out of the smoothed map its image score reads: (H, W)."""
    cfg, model = load_trained_model(run, dev)
    images = hold_out(data, category, cfg)
    total, n = None, 0
    for start in range(0, len(images), 16):
        batch = torch.stack([images[i]["image"] for i in range(start, min(len(images), start + 16))]).to(dev)
        raw = combined_map(model, batch, cfg.score, lambda: autocast(dev, cfg.train.precision)).float()
        smoothed = gaussian_blur(raw, cfg.score.sigma, cfg.score.truncate)  # (B, H, W) or (B, 2, H, W)
        judged = smoothed[:, -1] if smoothed.dim() == 4 else smoothed  # the map the image score reads
        total = judged.sum(0) if total is None else total + judged.sum(0)
        n += len(batch)
    return total / n


def ratios(mean_map: torch.Tensor, share: float) -> dict[str, float]:
    """The corners' and the outer band's mean level over the interior's."""
    h, w = mean_map.shape
    bh, bw = round(share * h), round(share * w)
    band = band_mask(h, w, share)
    corners = torch.stack(
        [mean_map[:bh, :bw].mean(), mean_map[:bh, -bw:].mean(), mean_map[-bh:, :bw].mean(), mean_map[-bh:, -bw:].mean()]
    )
    inside = mean_map[~band].mean()
    return {"corners": float(corners.mean() / inside), "band": float(mean_map[band].mean() / inside)}


def masks_in_band(data: Path, category: str, share: float, size: int) -> dict[str, int]:
    """How many of the category's test masks, resized to ``size`` px, reach into the outer band, or lie in it."""
    out = {"masks": 0, "reach": 0, "inside": 0}
    band = band_mask(size, size, share).numpy()
    for sample in mvtec_samples(data, category, "test"):
        if sample.mask is None:
            continue
        mask = np.asarray(Image.open(sample.mask).convert("L").resize((size, size), Image.NEAREST)) > 127
        out["masks"] += 1
        out["reach"] += bool((mask & band).any())
        out["inside"] += bool(mask.any() and not (mask & ~band).any())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", type=Path, nargs="+", required=True, help="'anovit benchmark' folders")
    ap.add_argument("--data", type=Path, required=True, help="the MVTec-layout root their categories were read from")
    ap.add_argument("--band", type=float, default=0.05, help="the outer share of the side at each edge")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    dev = resolve_device("auto")
    rows = []
    for bench in args.benchmarks:
        for run in sorted(bench.glob("runs/*/anovit")):
            if (run / WEIGHTS_FILE).is_file():
                mean_map = mean_judged_map(run, args.data, run.parent.name, dev).cpu()  # (H, W)
                level = ratios(mean_map, args.band)
                masks = masks_in_band(args.data, run.parent.name, args.band, int(mean_map.shape[-1]))
                rows.append({"run": str(run), "category": run.parent.name} | level | masks)
                print(run.parent.name, f"corners {level['corners']:.2f}x, band {level['band']:.2f}x", masks, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "map_border.json").write_text(json.dumps(rows, indent=1))
    lines = [
        f"| set | run | corners / interior | outer {args.band:.0%} band / interior | masks reaching into it / in it |",
        "|---|---|---|---|---|",
        *(
            f"| {r['category']} | {r['run']} | {r['corners']:.2f} | {r['band']:.2f} | "
            f"{r['reach']} / {r['inside']} of {r['masks']} |"
            for r in rows
        ),
    ]
    (args.out / "map_border.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
