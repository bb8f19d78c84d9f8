"""A benchmark's results as files: ``results.json``, ``results.csv`` and ``results.md`` (the paper's
Tables 1-3 layout: one row per category, the l2-CAE and AnoViT side by side, the paper's numbers beside)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anovit.data.mvtec import OBJECTS, TEXTURES
from anovit.experiments.paper_results import MODEL_COLUMN, TABLE1, paper_value
from anovit.files import write_json, write_text


# ---------------------------------------------------------------------------------------------
# Results: JSON, CSV and Markdown laid out like the paper's Tables 2-5
# ---------------------------------------------------------------------------------------------
def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals))  # population std over classes


# the columns' order: the paper's baseline, AnoViT, the nearest-neighbour peer
MODEL_LABELS = {"cae": "l2-CAE", "anovit": "AnoViT", "knn": "kNN (PatchCore)"}


def in_column_order(models: Sequence[str]) -> list[str]:
    return sorted(models, key=list(MODEL_LABELS).index)


def build_results(dataset: str, models: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for m in models:
        img_mean, img_std = _mean_std([r[m]["image_auroc"] for r in rows])
        pix_mean, pix_std = _mean_std([r[m]["pixel_auroc"] for r in rows])
        summary[m] = {
            "image_auroc_mean": img_mean,
            "image_auroc_std": img_std,
            "pixel_auroc_mean": pix_mean,
            "pixel_auroc_std": pix_std,
        }
    return {"dataset": dataset, "models": models, "rows": rows, "summary": summary}


def write_results(out: Path, results: dict[str, Any]) -> None:
    write_json(out / "results.json", results)
    write_text(out / "results.csv", results_csv(results))
    write_text(out / "results.md", results_markdown(results))


def results_csv(results: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "category", "model", "image_auroc", "pixel_auroc", "paper_image_auroc", "paper_pixel_auroc"])
    ds = results["dataset"]
    for row in results["rows"]:
        for m in results["models"]:
            r, cat = row[m], row["category"]
            paper = [_num(paper_value(ds, metric, cat, m)) for metric in ("image_auroc", "pixel_auroc")]
            w.writerow([ds, cat, m, _num(r["image_auroc"]), _num(r["pixel_auroc"]), *paper])
    return buf.getvalue()


def _num(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _improvement(base: float | None, ours: float | None) -> str:
    if base is None or ours is None or base == 0:
        return "-"
    return f"{(ours - base) / base * 100:+.2f}%"


def _table(results: dict[str, Any], metric: str, title: str) -> list[str]:
    ds, models, rows = results["dataset"], results["models"], results["rows"]
    ordered = in_column_order(models)
    compare = "cae" in models and "anovit" in models
    in_paper = [m for m in ordered if m in MODEL_COLUMN]
    has_paper = any(paper_value(ds, metric, r["category"], m) is not None for r in rows for m in in_paper)
    head = ["Type", "Category", *[MODEL_LABELS[m] for m in ordered]]
    head += ["Relative Improvement"] if compare else []
    head += [f"paper {MODEL_LABELS[m]}" for m in in_paper] if has_paper else []
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cat = r["category"]
        # MVTec AD's own categories by their type; another category in the MVTec layout is a "Category", a one-class
        # class a "Class".
        kind = (
            "Object" if cat in OBJECTS else "Texture" if cat in TEXTURES else "Category" if ds == "mvtec" else "Class"
        )
        cells = [kind, cat, *[_fmt(r[m][metric]) for m in ordered]]
        cells += [_improvement(r["cae"][metric], r["anovit"][metric])] if compare else []
        cells += [_fmt(paper_value(ds, metric, cat, m)) for m in in_paper] if has_paper else []
        lines.append("| " + " | ".join(cells) + " |")
    means = {m: _mean_std([r[m][metric] for r in rows]) for m in ordered}
    paper_means = {m: _mean_std([paper_value(ds, metric, r["category"], m) for r in rows]) for m in in_paper}
    for label, k in (("mean", 0), ("std", 1)):
        cells = [label, "-", *[_fmt(means[m][k]) for m in ordered]]
        cells += [_improvement(means["cae"][0], means["anovit"][0]) if k == 0 else "-"] if compare else []
        cells += [_fmt(paper_means[m][k]) for m in in_paper] if has_paper else []
        lines.append("| " + " | ".join(cells) + " |")
    overall = TABLE1.get(f"{ds}/{'detection' if metric == 'image_auroc' else 'localisation'}")
    if overall is not None:
        lines += ["", f"Paper, all classes (Table 1): l2-CAE {overall[0]:.3f}, AnoViT {overall[1]:.3f}."]
    return lines + [""]


def results_markdown(results: dict[str, Any]) -> str:
    ds = results["dataset"]
    name = {"mvtec": "MVTec AD", "mnist": "MNIST", "cifar10": "CIFAR-10", "digits": "scikit-learn digits (8x8)"}.get(
        ds, ds
    )
    lines = [
        f"# {name}: image and pixel AUROC",
        "",
        "Relative improvement = (AnoViT - l2-CAE) / l2-CAE. The paper's numbers (Lee & Kang, 2022, "
        "Tables 2-5) stand beside ours where the paper has them; std is over classes.",
        "",
    ]
    lines += _table(results, "image_auroc", "Anomaly detection (image AUROC)")
    if any(r[m]["pixel_auroc"] is not None for r in results["rows"] for m in results["models"]):
        lines += _table(results, "pixel_auroc", "Anomaly localisation (pixel AUROC)")
    return "\n".join(lines)
