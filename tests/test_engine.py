from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from anovit.config import ScoreConfig, TrainConfig
from anovit.data import ImageDataset, mvtec_samples
from anovit.evaluation.evaluate import evaluate
from anovit.evaluation.figures import figure3
from anovit.models import build_model
from anovit.training.loop import fit

from .conftest import tiny_model_config


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fit_lowers_the_loss_and_evaluate_is_consistent(mvtec_root: Path, tmp_path: Path, precision: str) -> None:
    """In both CPU precisions (bf16 is native on some CPUs, emulated on others: tiny sizes keep it to seconds)."""
    train = ImageDataset(mvtec_samples(mvtec_root, "weave", "train"), 32, progress=False)
    test = ImageDataset(mvtec_samples(mvtec_root, "weave", "test"), 32, progress=False)
    torch.manual_seed(0)  # the test must not depend on what ran before it
    model = build_model(tiny_model_config("anovit"))
    cfg = TrainConfig(epochs=10, batch_size=4, lr=2e-3, seed=0, precision=precision)
    history = fit(model, train, train.subset(range(4)), cfg, torch.device("cpu"), run_dir=tmp_path, progress=False)
    assert history[-1].train_loss < 0.5 * history[0].train_loss
    keep = [i for i, s in enumerate(test.samples) if s.label == 1][:2]
    result = evaluate(
        model, test, ScoreConfig(sigma=1.0), torch.device("cpu"), precision, keep_maps=keep, progress=False
    )
    assert result.n_images == len(test) and sorted(result.maps) == keep
    for i in keep:  # the kept map's maximum is that image's score
        assert np.isclose(result.maps[i].max(), result.image_scores[i], rtol=1e-6)
    kinds = np.array([s.defect for s in test.samples])
    per_defect = result.metrics()["per_defect"]
    assert sorted(per_defect) == sorted(set(kinds) - {"good"}) and len(per_defect) > 1
    for d, m in per_defect.items():  # each defect type against the normal images
        rows = (kinds == "good") | (kinds == d)
        assert m["image_auroc"] == pytest.approx(roc_auc_score(kinds[rows] == d, result.image_scores[rows]))
        assert 0 <= m["pixel_auroc"] <= 1 and m["n_images"] == int(np.sum(kinds == d))
    if precision == "bf16":  # the same weights scored in fp32: bf16 moves scores by its rounding, not more
        exact = evaluate(model, test, ScoreConfig(sigma=1.0), torch.device("cpu"), "fp32", progress=False)
        np.testing.assert_allclose(
            result.image_scores, exact.image_scores, rtol=0.1, atol=1e-3 * exact.image_scores.max()
        )
        assert not np.array_equal(result.image_scores, exact.image_scores)  # bf16 really ran
    path = figure3(
        [test.images[i].permute(1, 2, 0).numpy() / 255 for i in keep],
        [test.masks[i].numpy() for i in keep],
        {"AnoViT": [result.maps[i] for i in keep]},
        tmp_path / "fig.png",
    )
    assert path.stat().st_size > 1000
