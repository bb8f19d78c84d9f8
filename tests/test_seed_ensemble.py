"""``benchmarks/seed_ensemble.py``: two seeds' image scores summed per image, from ``anovit benchmark`` folders."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from .conftest import benchmark_script

seed_ensemble = benchmark_script("seed_ensemble")


def _write_scores(folder: Path, cls: str, model: str, names: list[str], labels: np.ndarray, scores: np.ndarray) -> None:
    path = folder / "runs" / cls / model / "scores.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "kind", "label", "score"])
        w.writerows([n, "x", int(y), float(s)] for n, y, s in zip(names, labels, scores))


def test_pair_sums_scores_per_image_and_table_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 20 + [1] * 20)
    names = [f"img{i:02d}" for i in range(40)]
    truth = labels + rng.normal(0, 0.8, 40)  # what both seeds see, each with its own noise on top
    a, b = truth + rng.normal(0, 1.0, 40), truth + rng.normal(0, 1.0, 40)
    folders = [tmp_path / "s0", tmp_path / "s1"]
    for folder, scores in zip(folders, (a, b)):
        _write_scores(folder, "3", "anovit", names, labels, scores)
        _write_scores(folder, "3", "cae", names, labels, scores - 0.5 * labels)  # a weaker second model
    assert seed_ensemble.pair_auroc(folders, "3", "anovit", 0, 1) == pytest.approx(roc_auc_score(labels, a + b))
    assert seed_ensemble.pair_auroc(folders, "3", "anovit", 0, 1) != pytest.approx(roc_auc_score(labels, a))
    assert seed_ensemble.compare([0.9, 0.5, 0.700001], [0.8, 0.6, 0.7]) == "1 / 1 / 1"

    out = tmp_path / "out"
    argv = ["seed_ensemble.py", "--benchmarks", *map(str, folders), "--pairs", "0:1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    seed_ensemble.main()
    table = (out / "seed_ensemble.md").read_text()
    assert f"{roc_auc_score(labels, a + b):.5f}" in table
    assert "- anovit seed folder 0: cae seed folder 0: 1 / 0 / 0" in table  # above the weaker cae on the one class


def test_pair_of_runs_on_other_images_is_refused(tmp_path: Path) -> None:
    labels = np.array([0, 1])
    _write_scores(tmp_path / "s0", "1", "anovit", ["a", "b"], labels, np.array([0.1, 0.9]))
    _write_scores(tmp_path / "s1", "1", "anovit", ["a", "c"], labels, np.array([0.1, 0.9]))
    with pytest.raises(SystemExit, match="other images"):
        seed_ensemble.pair_auroc([tmp_path / "s0", tmp_path / "s1"], "1", "anovit", 0, 1)


def test_a_model_missing_from_a_folder_is_left_out_of_its_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = np.array([0, 0, 1, 1])
    names = ["a", "b", "c", "d"]
    for k, scores in enumerate(([0.1, 0.4, 0.3, 0.9], [0.2, 0.1, 0.8, 0.7])):
        _write_scores(tmp_path / f"s{k}", "8", "anovit", names, labels, np.array(scores))
    _write_scores(tmp_path / "s0", "8", "cae", names, labels, np.array([0.1, 0.2, 0.3, 0.4]))  # only seed 0
    out = tmp_path / "out"
    argv = ["seed_ensemble.py", "--benchmarks", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    seed_ensemble.main()
    table = (out / "seed_ensemble.md").read_text()
    assert "cae, seed folder 0" in table and "cae, seed folder 1" not in table and "cae, folders 0 + 1" not in table
    assert "- anovit seed folder 1: no cae runs" in table
    assert "anovit, mean of seed folders 0, 1" in table and "cae, mean of seed folders" not in table
    assert "| 0.75000 | 1.00000 | 1.00000 | 0.87500 |" in table  # anovit's seeds, cae's seed 0, anovit's mean
    assert "- anovit folders 0 + 1: cae seed folder 0: 0 / 1 / 0" in table  # 1.0 both
