"""Heat-map colours for score maps, in numpy alone (no matplotlib, no torch: the deployment path uses them).

``jet`` is matplotlib's 'jet' colour map, rebuilt from its segment data into the same 256-entry
table and indexed the same way (checked against matplotlib in the tests).
"""

from __future__ import annotations

import numpy as np

# matplotlib's _jet_data: (x, value below x, value above x) per channel; all continuous here.
_JET = {
    "red": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    "blue": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}
_N = 256
_X = np.linspace(0.0, 1.0, _N)
JET_LUT = np.stack(
    [np.interp(_X, [p[0] for p in pts], [p[1] for p in pts]) for pts in _JET.values()], axis=1
)  # (256, 3)


def jet(level: np.ndarray) -> np.ndarray:
    """'jet' RGB in [0, 1] of levels in [0, 1] (clipped): (...) -> (..., 3), as
    ``matplotlib.colormaps['jet'](level)[..., :3]``."""
    idx = np.clip((np.asarray(level, dtype=np.float64) * _N).astype(np.int64), 0, _N - 1)
    return JET_LUT[idx]


def heat_colours(score_map: np.ndarray, threshold: float) -> np.ndarray:
    """'jet' colours of score / (2 x threshold), clipped to [0, 1]: map (H, W) -> (H, W, 3) uint8."""
    level = np.clip(score_map / (2.0 * threshold), 0.0, 1.0) if threshold > 0 else np.zeros_like(score_map)
    return (jet(level) * 255.0 + 0.5).astype(np.uint8)  # (H, W, 3)


def heat_overlay(image: np.ndarray, score_map: np.ndarray, threshold: float, alpha: float = 0.5) -> np.ndarray:
    """Blend the heat colours of a map over an image: image (H, W, 3) uint8, map (H, W) -> (H, W, 3) uint8."""
    heat = heat_colours(score_map, threshold).astype(np.float64)
    return np.clip((1 - alpha) * image + alpha * heat + 0.5, 0, 255).astype(np.uint8)
