"""What averaging two trained runs would give: the image scores of ``anovit benchmark`` folders trained with other
seeds on the same data, summed per image, against each model's single runs.

    python benchmarks/seed_ensemble.py --benchmarks S0 S1 S2 S3 --pairs 0:1,2:3 --out OUT

Every folder holds ``runs/<class>/<model>/scores.csv`` for the same test images (``anovit benchmark`` with
``--seed`` changed only). A pair ``i:j`` is the ensemble of the i-th and j-th folder's runs of a model: each test
image's two scores summed (two runs of one model score in the same units; with the map's mean as the image score the
sum is twice the score of the two maps' mean). Nothing is trained or scored again.

Writes OUT/seed_ensemble.md: image AUROC per class, both models' single seeds and pairs, and the count of classes
where the first model is higher, level and lower than the second (to five decimals): seed by seed, pair by pair (the
same cost), each class's mean over the seeds, and each of the first model's pairs against each of the second's single
seeds. A model without runs in a folder is left out of that folder's columns and of its pairs.
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from anovit.files import SCORES_FILE  # noqa: E402


def read_scores(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A run's scores.csv -> (image names, labels (N,), scores (N,))."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{path}: no scores")
    names = [r["image"] for r in rows]
    return names, np.array([int(r["label"]) for r in rows]), np.array([float(r["score"]) for r in rows])


def score_file(folder: Path, cls: str, model: str) -> Path:
    """The scores of the run of ``model`` on class ``cls`` in an ``anovit benchmark`` folder."""
    return folder / "runs" / cls / model / SCORES_FILE


@functools.cache  # each run is read once, for its own column and for every pair it is in
def run_scores(folder: Path, cls: str, model: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image names, labels, scores) of the run of ``model`` on class ``cls`` in a benchmark folder."""
    return read_scores(score_file(folder, cls, model))


def pair_auroc(folders: list[Path], cls: str, model: str, i: int, j: int) -> float:
    """Image AUROC of the scores of runs i and j summed per image (the same images, checked)."""
    names_i, labels, a = run_scores(folders[i], cls, model)
    names_j, _, b = run_scores(folders[j], cls, model)
    if names_i != names_j:
        raise SystemExit(f"{folders[i]} and {folders[j]}: class {cls} was tested on other images")
    return float(roc_auc_score(labels, a + b))


def compare(first: list[float], second: list[float]) -> str:
    """'higher / level / lower' counts of ``first`` against ``second``, to five decimals."""
    a, b = np.round(first, 5), np.round(second, 5)
    return f"{int((a > b).sum())} / {int((a == b).sum())} / {int((a < b).sum())}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--benchmarks", type=Path, nargs="+", required=True, help="anovit benchmark folders, one per seed"
    )
    parser.add_argument("--pairs", default="0:1", help="comma-separated i:j indices into --benchmarks")
    parser.add_argument("--models", default="anovit,cae", help="the model ensembled, then the one it is compared with")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    folders = list(args.benchmarks)
    model, other = args.models.split(",")
    pairs = [tuple(int(k) for k in p.split(":")) for p in args.pairs.split(",")]
    classes = sorted(p.name for p in (folders[0] / "runs").iterdir() if score_file(folders[0], p.name, model).is_file())

    def has(m: str, k: int) -> bool:
        return all(score_file(folders[k], c, m).is_file() for c in classes)

    # (model, label) -> AUROC per class; a model is left out of the folders and pairs where a run is missing
    columns: dict[tuple[str, str], list[float]] = {}
    for m in (model, other):
        for k, f in enumerate(folders):
            if has(m, k):
                columns[m, f"seed folder {k}"] = [float(roc_auc_score(*run_scores(f, c, m)[1:])) for c in classes]
    for m in (model, other):  # each class's mean over the seeds, where a model has several
        seeds = [k for k in range(len(folders)) if (m, f"seed folder {k}") in columns]
        if len(seeds) > 1:
            label = "mean of seed folders " + ", ".join(map(str, seeds))
            columns[m, label] = list(np.mean([columns[m, f"seed folder {k}"] for k in seeds], axis=0))
    for m in (model, other):
        for i, j in pairs:
            if has(m, i) and has(m, j):
                columns[m, f"folders {i} + {j}"] = [pair_auroc(folders, c, m, i, j) for c in classes]

    head = ["class", *(f"{m}, {label}" for m, label in columns)]
    body = [[c, *(f"{v[n]:.5f}" for v in columns.values())] for n, c in enumerate(classes)]
    body.append(["mean", *(f"{np.mean(v):.4f}" for v in columns.values())])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += ["", f"{model} against {other}, classes higher / level / lower (five decimals):", ""]
    others = [label for m, label in columns if m == other and label.startswith("seed")]
    for m, label in columns:
        if m != model:
            continue
        against = (
            [f"{other} {label}: {compare(columns[model, label], columns[other, label])}"]
            if (other, label) in columns
            else []
        )
        if label.startswith("folders"):  # a pair: also against each single run of the other model
            against += [f"{other} {o}: {compare(columns[model, label], columns[other, o])}" for o in others]
        lines.append(f"- {model} {label}: " + ("; ".join(against) or f"no {other} runs"))
    lines += ["", "Folders: " + ", ".join(f"{k} = {f}" for k, f in enumerate(folders)), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seed_ensemble.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
