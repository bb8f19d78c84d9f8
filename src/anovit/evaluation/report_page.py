"""The report's HTML page: metrics, configuration, thresholds, figures and the gallery in one
self-contained file (styles and script inline, pictures as data URIs)."""

from __future__ import annotations

import html
from typing import Any

from anovit.config import RunConfig
from anovit.evaluation.thresholds import Thresholds


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))


METRIC_ROWS = (
    ("image_auroc", "image AUROC (detection)"),
    ("pixel_auroc", "pixel AUROC (localisation)"),
    ("aupro", "AUPRO (FPR ≤ 0.3)"),
    ("image_f1_max", "image F1-max (best threshold on this set)"),
    ("pixel_f1_max", "pixel F1-max (best threshold on this set)"),
    ("image_f1", "image F1 at the run's threshold"),
    ("pixel_f1", "pixel F1 at the run's threshold"),
    ("n_images", "test images"),
    ("n_anomalous", "of which anomalous"),
)


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1200px;color:#222;
  padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #eee;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.charts svg{max-width:100%;height:auto}
.filters button{margin-right:.4em;padding:.3em .8em;border:1px solid #999;background:#f6f6f6;border-radius:4px;
  cursor:pointer}
.filters button.on{background:#333;color:#fff}
.gallery{display:flex;flex-wrap:wrap;gap:1em}.card{border:1px solid #ccc;border-radius:6px;padding:.5em}
.card.missed{border:2px solid #c0392b}.card .outcome{font-weight:600}.card.missed .outcome{color:#c0392b}
.caption{font-size:.85em;margin-bottom:.3em}.panels{display:flex;gap:.3em}
figure{margin:0;text-align:center}figure img{width:128px;height:128px;display:block}
figcaption{font-size:.75em;color:#555}.note{color:#555;font-size:.9em}
"""


SCRIPT = """
(function () {
  var cards = Array.prototype.slice.call(document.querySelectorAll('.card'));
  var buttons = Array.prototype.slice.call(document.querySelectorAll('.filters button'));
  function show(filter) {
    cards.forEach(function (c) {
      var keep = filter === 'all' || (filter === 'missed' && c.dataset.missed === '1') ||
        (filter === 'anomalous' && c.dataset.label === '1') || (filter === 'normal' && c.dataset.label === '0');
      c.style.display = keep ? '' : 'none';
    });
    buttons.forEach(function (b) { b.classList.toggle('on', b.dataset.filter === filter); });
  }
  buttons.forEach(function (b) { b.addEventListener('click', function () { show(b.dataset.filter); }); });
  show('all');
  document.body.dataset.ready = String(cards.length);
})();
"""


def per_defect_table(per_defect: dict[str, dict[str, Any]]) -> str:
    """Each defect type against the normal images: which kinds the model finds and which it misses."""
    if not per_defect:
        return ""
    rows = "".join(
        f'<tr><td>{html.escape(d)}</td><td class="num">{m["n_images"]}</td><td '
        f'class="num">{_fmt(m["image_auroc"])}</td>'
        f'<td class="num">{_fmt(m["pixel_auroc"])}</td></tr>'
        for d, m in per_defect.items()
    )
    return (
        "<h3>Per defect type (each against the normal images)</h3><table><thead><tr><th>defect type</th><th>images</th>"
        f"<th>image AUROC</th><th>pixel AUROC</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def page(
    title: str,
    cfg: RunConfig,
    metrics: dict[str, Any],
    thresholds: Thresholds | None,
    roc: str | None,
    dist: str,
    cards: list[str],
    n_images: int,
    thr_label: str,
) -> str:
    rows = "".join(
        f'<tr><td>{label}</td><td class="num">{_fmt(metrics.get(key))}</td></tr>'
        for key, label in METRIC_ROWS
        if key in metrics
    )
    if thresholds is not None:
        thr = (
            f"<p>Thresholds of the run: image {thresholds.image:.6g} ({thresholds.image_method}), pixel "
            f"{thresholds.pixel:.6g} ({thresholds.pixel_method}), computed on {html.escape(thresholds.source)}.</p>"
        )
    else:
        thr = (
            "<p class=note>The run has no thresholds.json; the gallery uses the F1-max threshold of this test set.</p>"
        )
    n_missed = sum('data-missed="1"' in c for c in cards)
    model = f"{cfg.model.name}" + (f" ({cfg.model.encoder})" if cfg.model.name == "anovit" else "")
    border = f", image score ignores {cfg.score.border:.0%} at each edge" if cfg.score.border else ""
    border += f", image score = {cfg.score.image_score} of the map" if cfg.score.image_score != "max" else ""
    border += f", maps averaged over test-time flips ({cfg.score.test_flips})" if cfg.score.test_flips != "none" else ""
    border += f", and over four views shifted by {cfg.score.test_shift} px" if cfg.score.test_shift else ""
    per_defect = per_defect_table(metrics.get("per_defect", {}))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Model: {html.escape(model)}, {cfg.data.image_size} px, objective {html.escape(cfg.train.objective)}, score
{html.escape("+".join(cfg.score.kinds))}, score-map smoothing σ = {cfg.score.sigma:g}{border}.</p>
<h2>Metrics</h2>
<table><tbody>{rows}</tbody></table>
{per_defect}{thr}
<h2>Curves</h2>
<div class="charts">{roc or '<p class="note">ROC undefined: the test set has one class only.</p>'}{dist}</div>
<h2>Gallery</h2>
<p class="note">{len(cards)} of {n_images} images, worst misses first ({n_missed} misses shown),
at {html.escape(thr_label)}.
Score-map colours: blue = 0, green = the pixel threshold, red = twice it or more.</p>
<div class="filters"><button data-filter="all">all</button><button data-filter="missed">misses</button><!--
--><button data-filter="anomalous">anomalous</button><button data-filter="normal">normal</button></div>
<div class="gallery" id="gallery">{"".join(cards)}</div>
<script>{SCRIPT}</script>
</body></html>
"""
