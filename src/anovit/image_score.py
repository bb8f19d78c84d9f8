"""The image score's names: which statistics of a smoothed score map make an image's score.

``max`` (the paper), ``mean``, ``topP`` (the mean of the highest P percent of the pixels), ``std`` (the map's
spread), or several joined by ``+``, whose geometric mean is the score (``top1+std``, the default's). Torch-free:
the CLI and the configuration check the names here; :func:`anovit.scoring.maps.image_scores` computes them.
"""

from __future__ import annotations

from anovit.errors import InputError

IMAGE_SCORE_HELP = (
    "max (the paper), mean, topP with P a percentage in (0, 100] (e.g. top1), std, or several joined by '+', "
    "whose geometric mean is the score (e.g. top1+std)"
)


def image_score_parts(name: str) -> tuple[str, ...]:
    """``top1+std`` -> ("top1", "std"): the statistics of the map whose geometric mean is the image score
    (:func:`anovit.scoring.maps.image_scores`); :class:`InputError` for a name it does not know or a repeated one."""
    parts = tuple(name.split("+"))
    try:
        for part in parts:
            if part != "std":
                image_score_share(part)
    except InputError:
        raise InputError(f"--image-score {name}: expected {IMAGE_SCORE_HELP}") from None
    if len(set(parts)) < len(parts):
        raise InputError(f"--image-score {name}: a statistic named twice; expected {IMAGE_SCORE_HELP}")
    return parts


def level_statistic(name: str) -> str:
    """The part of image score ``name`` on the map's own scale, from which a pixel threshold can be drawn when there
    are no masks to fit one to (:mod:`anovit.evaluation.thresholds`): ``top1+std`` -> ``top1``; ``std``, a spread
    with no level, -> ``max``."""
    level = [part for part in image_score_parts(name) if part != "std"]
    return "+".join(level) if level else "max"


def image_score_share(name: str) -> float:
    """The share of the map's pixels an image score averages: ``max`` -> 0 (one pixel), ``mean`` -> 1, ``top5`` ->
    0.05 (``std`` averages none: :func:`image_score_parts`)."""
    if name == "max":
        return 0.0
    if name == "mean":
        return 1.0
    try:
        share = float(name.removeprefix("top")) / 100 if name.startswith("top") else -1.0
    except ValueError:
        share = -1.0
    if not 0 < share <= 1:
        raise InputError(f"--image-score {name}: expected {IMAGE_SCORE_HELP}")
    return share
