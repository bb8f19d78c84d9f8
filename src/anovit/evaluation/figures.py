"""Figures: the paper's Figure 3 panel (image, ground truth, l2-CAE map, AnoViT map)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from anovit.files import atomic_write  # noqa: E402


def figure3(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    maps: Mapping[str, Sequence[np.ndarray]],
    path: Path,
    titles: Sequence[str] | None = None,
) -> Path:
    """One row per image: image (H, W, 3) in [0, 1], ground truth (H, W), then one score map per model.

    Maps use the 'jet' colour map (blue low, red high), scaled per model over the rows shown, so
    a model's hot spots compare across rows as in the paper's Figure 3.
    """
    n, cols = len(images), 2 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.2 * n), squeeze=False)
    ranges = {name: (float(np.min(ms)), float(np.max(ms))) for name, ms in maps.items()}
    headers = ["image", "ground truth", *[f"{name} score map" for name in maps]]
    for r in range(n):
        panels = [(images[r], {}), (masks[r], {"cmap": "gray", "vmin": 0, "vmax": 1})]
        panels += [
            (ms[r], {"cmap": "jet", "vmin": ranges[name][0], "vmax": ranges[name][1]}) for name, ms in maps.items()
        ]
        for c, (data, kwargs) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(data, **kwargs)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(headers[c], fontsize=9)
        if titles is not None:
            axes[r, 0].set_ylabel(titles[r], fontsize=8)
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=100, format=Path(path).suffix.lstrip(".") or "png"))
    plt.close(fig)
    return Path(path)
