"""What the command line prints: the aligned metrics table of ``test``, ``benchmark`` and ``demo``."""

from __future__ import annotations

from typing import Any


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A small aligned table: one row per model, columns image AUROC, pixel AUROC, images."""

    def fmt(v: float | int | None) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    width = max(10, *(len(k) + 2 for k in rows))
    lines = [f"{'model':<{width}}{'image AUROC':>13}{'pixel AUROC':>13}{'images':>8}"]
    for name, m in rows.items():
        lines.append(
            f"{name:<{width}}{fmt(m.get('image_auroc')):>13}{fmt(m.get('pixel_auroc')):>13}{fmt(m.get('n_images')):>8}"
        )
    return "\n".join(lines)
