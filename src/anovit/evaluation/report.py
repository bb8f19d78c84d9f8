"""``report.html``: one self-contained page per test run (no server, no network, no external file).

It holds the metrics table, the image- and pixel-level ROC curves, the score distributions of
normal and anomalous images with the decision threshold, and a gallery (image, ground truth,
score map, overlay) ordered worst misses first: anomalous images scored furthest below the
threshold and normal images scored furthest above it, then the correct calls, closest calls first.
Charts are inline SVG, pictures inline base64 PNG/JPEG; a few lines of script filter the gallery.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402
from torch import nn  # noqa: E402

from anovit.config import Precision, RunConfig  # noqa: E402
from anovit.data.images import data_uri
from anovit.evaluation import report_page
from anovit.evaluation.colours import heat_colours, heat_overlay  # noqa: E402
from anovit.evaluation.evaluate import score_images  # noqa: E402
from anovit.evaluation.thresholds import Thresholds  # noqa: E402
from anovit.files import write_text  # noqa: E402
from anovit.scoring.maps import Scores  # noqa: E402

if TYPE_CHECKING:
    from anovit.evaluation.evaluate import Evaluation

THUMB = 160  # gallery picture size, pixels
GALLERY_MAX = 48


def gallery_order(scores: np.ndarray, labels: np.ndarray, threshold: float) -> list[int]:
    """Indices worst misses first: the most wrong side of ``threshold`` first, relative to the threshold."""
    scale = abs(threshold) if threshold else 1.0
    margin = np.where(labels == 1, threshold - scores, scores - threshold) / scale  # > 0: missed
    return [int(i) for i in np.argsort(-margin, kind="stable")]


def _thumb(array: np.ndarray, nearest: bool = False) -> np.ndarray:
    img = Image.fromarray(array)
    if max(img.size) > THUMB:
        img = img.resize((THUMB, THUMB), Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)
    return np.asarray(img)


def _svg(fig: plt.Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prologue: inline SVG in HTML


def roc_figure(evaluation: Evaluation) -> str | None:
    """Image and pixel ROC curves in one SVG; ``None`` when neither is defined."""
    curves = []
    if evaluation.image_auroc is not None:
        fpr, tpr, _ = roc_curve(evaluation.labels, evaluation.image_scores)
        curves.append((fpr, tpr, f"image (AUROC {evaluation.image_auroc:.3f})"))
    if evaluation.pixel_hist is not None and evaluation.pixel_auroc is not None:
        fpr, tpr = evaluation.pixel_hist.roc_curve()
        curves.append((fpr, tpr, f"pixel (AUROC {evaluation.pixel_auroc:.3f})"))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for fpr, tpr, label in curves:
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1.01), title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def score_figure(
    scores: np.ndarray, labels: np.ndarray, threshold: float, threshold_label: str, how: str = "max"
) -> str:
    """Histograms of the image scores (``how`` of each smoothed map) of normal and anomalous images, with the
    threshold."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    bins = np.linspace(float(scores.min()), float(scores.max()), 31) if scores.max() > scores.min() else 10
    for value, name, colour in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
        if np.any(labels == value):
            ax.hist(
                scores[labels == value],
                bins=bins,
                alpha=0.6,
                color=colour,
                label=f"{name} ({int(np.sum(labels == value))})",
            )
    ax.axvline(threshold, color="black", ls="--", lw=1.2, label=threshold_label)
    ax.set(xlabel=f"image score ({how} of the smoothed score map)", ylabel="images", title="Score distribution")
    ax.legend(fontsize=8)
    return _svg(fig)


def write_report(
    path: Path,
    model: nn.Module | None,
    cfg: RunConfig,
    test_set: Any,
    evaluation: Evaluation,
    metrics: dict[str, Any],
    thresholds: Thresholds | None,
    device: torch.device,
    precision: Precision | None = None,
    title: str | None = None,
    gallery_max: int = GALLERY_MAX,
    scorer: Callable[[torch.Tensor], Scores] | None = None,
) -> Path:
    """Write the report of one evaluated test set to ``path`` (atomically) and return the path.

    ``scorer``: the backend that scored the test set, to redraw the gallery's maps (``model`` in torch when None).
    """
    scores, labels = evaluation.image_scores, evaluation.labels
    if thresholds is not None:
        image_thr, pixel_thr = thresholds.image, thresholds.pixel
        thr_label = f"run threshold {image_thr:.4g} ({thresholds.image_method})"
    else:
        image_thr = metrics.get("image_f1_max_threshold") or float(np.quantile(scores, 0.99))
        pixel_thr = metrics.get("pixel_f1_max_threshold") or image_thr
        thr_label = f"threshold {image_thr:.4g} (F1-max on this set; the run has no thresholds.json)"
    order = gallery_order(scores, labels, image_thr)[:gallery_max]
    score_fn = scorer or (
        lambda images: score_images(model, images, cfg.score, device, precision or cfg.train.precision)
    )
    cards = _cards(score_fn, test_set, evaluation, order, image_thr, pixel_thr)
    roc = roc_figure(evaluation)
    dist = score_figure(scores, labels, image_thr, thr_label, cfg.score.image_score)
    page = report_page.page(
        title or f"anovit report: {cfg.model.name}", cfg, metrics, thresholds, roc, dist, cards, len(scores), thr_label
    )
    write_text(Path(path), page)
    return Path(path)


def _cards(
    score_fn: Callable[[torch.Tensor], Scores],
    test_set: Any,
    evaluation: Evaluation,
    order: list[int],
    image_thr: float,
    pixel_thr: float,
) -> list[str]:
    """One HTML card per gallery image; its score map is recomputed (only these images are kept)."""
    has_masks = bool(getattr(test_set, "has_masks", False))
    out: list[str] = []
    for start in range(0, len(order), 16):
        idx = order[start : start + 16]
        items = [test_set[i] for i in idx]
        images = torch.stack([item["image"] for item in items])  # (b, 3, S, S) float in [0, 1]
        maps = score_fn(images).maps.float().cpu().numpy()  # (b, S, S)
        for j, i in enumerate(idx):
            label, score = int(evaluation.labels[i]), float(evaluation.image_scores[i])
            called = score >= image_thr
            outcome = (
                ("true positive" if called else "missed anomaly")
                if label
                else ("false alarm" if called else "true negative")
            )
            missed = called != bool(label)
            rgb = (images[j].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # (S, S, 3)
            heat = heat_colours(maps[j], pixel_thr)  # (S, S, 3)
            panels = [("image", data_uri(_thumb(rgb), "JPEG", quality=88))]
            if has_masks:
                panels.append(
                    (
                        "ground truth",
                        data_uri(_thumb(items[j]["mask"].numpy().astype(np.uint8) * 255, nearest=True), optimize=True),
                    )
                )
            panels += [
                ("score map", data_uri(_thumb(heat), optimize=True)),
                ("overlay", data_uri(_thumb(heat_overlay(rgb, maps[j], pixel_thr)), "JPEG", quality=88)),
            ]
            sample = test_set.samples[i]
            figs = "".join(
                f'<figure><img src="{src}" alt="{cap}"><figcaption>{cap}</figcaption></figure>' for cap, src in panels
            )
            out.append(
                f'<div class="card{" missed" if missed else ""}" data-label="{label}" data-missed="{int(missed)}">'
                f'<div class="caption"><b>{html.escape(Path(sample.image).name)}</b> · {html.escape(sample.defect)} · '
                f'score {score:.4g} · <span class="outcome">{outcome}</span></div><div '
                f'class="panels">{figs}</div></div>'
            )
    return out
