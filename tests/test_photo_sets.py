"""``benchmarks/photo_sets.py``: real photographs cut into an MVTec-layout set with planted defects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anovit.data import mvtec_samples

from .conftest import benchmark_script

pytest.importorskip("skimage")
photo_sets = benchmark_script("photo_sets")


def test_photo_set_is_mvtec_layout_with_unseen_test_crops(tmp_path: Path) -> None:
    photo_sets.make_photo_mvtec(tmp_path, ("gravel",), crop=64, n_train=6, n_test_good=2, n_per_defect=1)
    train, test = mvtec_samples(tmp_path, "gravel", "train"), mvtec_samples(tmp_path, "gravel", "test")
    assert len(train) == 6 and len(test) == 2 + len(photo_sets.DEFECTS)
    assert {s.defect for s in test} == {"good", *photo_sets.DEFECTS}
    for s in test:
        if s.label == 1:  # every defect shows in its mask
            assert np.asarray(Image.open(s.mask)).any()
    # normal test crops come from the photograph's lower part only: where each one's corner sits in it (or its mirror)
    photo = (photo_sets.photograph("gravel")[..., 0] * 255 + 0.5).astype(np.uint8)
    split = int(photo.shape[0] * photo_sets.SPLIT)
    for s in [s for s in test if s.label == 0]:
        corner = np.asarray(Image.open(s.image).convert("L"))[:8, :8]
        hits = [
            y
            for img in (photo, photo[:, ::-1])
            for y in np.nonzero(np.all(np.lib.stride_tricks.sliding_window_view(img, (8, 8)) == corner, axis=(2, 3)))[0]
        ]
        assert hits and min(hits) >= split
