from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anovit.data import ImageDataset, load_image, load_mask, mvtec_samples, split_train_val
from anovit.data.synthetic import DEFECTS, TEXTURES
from anovit.data.transforms import ReflectAffine
from anovit.errors import InputError


def test_layout_pairs_images_with_masks(mvtec_root: Path) -> None:
    train = mvtec_samples(mvtec_root, "weave", "train")
    test = mvtec_samples(mvtec_root, "weave", "test")
    assert len(train) == 12 and all(s.label == 0 and s.mask is None for s in train)
    assert len(test) == 4 + 2 * 4  # the fixture plants 4 of the defect kinds
    for s in test:
        if s.defect == "good":
            assert s.label == 0 and s.mask is None
        else:
            assert s.label == 1
            assert s.mask == mvtec_root / "weave" / "ground_truth" / s.defect / f"{s.image.stem}_mask.png"
            assert s.image.parent.name == s.defect


def test_masks_are_exact_and_binary(mvtec_root: Path) -> None:
    ds = ImageDataset(mvtec_samples(mvtec_root, "weave", "test"), 32, progress=False)
    for i, s in enumerate(ds.samples):
        assert bool(ds.masks[i].any()) == (s.label == 1)  # every defect has pixels, normals none
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(ds), 3, 32, 32)
    item = ds[0]
    assert item["image"].dtype == torch.float32 and item["image"].min() >= 0 and item["image"].max() <= 1


def test_missing_mask_is_named(mvtec_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(mvtec_root, root)
    (root / "weave" / "ground_truth" / "spot" / "001_mask.png").unlink()
    with pytest.raises(InputError, match=r"spot/001\.png: anomalous test image has no mask; expected .*001_mask\.png"):
        mvtec_samples(root, "weave", "test")


def test_a_test_split_without_ground_truth_has_image_labels_only(mvtec_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(mvtec_root, root)
    shutil.rmtree(root / "weave" / "ground_truth")
    with_masks, labels_only = mvtec_samples(mvtec_root, "weave", "test"), mvtec_samples(root, "weave", "test")
    assert [(s.image.name, s.label, s.defect) for s in labels_only] == [
        (s.image.name, s.label, s.defect) for s in with_masks
    ]
    assert all(s.mask is None for s in labels_only) and sum(s.label for s in labels_only) == 8
    assert not ImageDataset(labels_only, 32, progress=False).has_masks


def test_missing_category_and_empty_folder(mvtec_root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="categories found there: weave"):
        mvtec_samples(mvtec_root, "bottle", "train")
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    with pytest.raises(InputError, match="no image files"):
        mvtec_samples(tmp_path, "empty", "train")
    with pytest.raises(InputError, match="data folder not found"):
        mvtec_samples(tmp_path / "nowhere", "weave", "train")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "RGB"])
def test_image_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    arr = (np.arange(20 * 30).reshape(20, 30) % 256).astype(np.uint8)
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 257)
    elif mode == "RGB" or mode == "RGBA":
        img = Image.fromarray(np.stack([arr] * (3 if mode == "RGB" else 4), axis=-1), mode)
    else:
        img = Image.fromarray(arr).convert(mode)
    path = tmp_path / "img.png"
    img.save(path)
    out = load_image(path, 16)
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    assert out.float().std() > 10  # the content survived the conversion


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    Image.new("RGB", (20, 20)).save(bad)
    bad.write_bytes(bad.read_bytes()[:30])  # truncated
    with pytest.raises(InputError, match="broken.png: cannot be read as an image"):
        load_image(bad, 16)


def test_mask_resize_stays_binary(tmp_path: Path) -> None:
    m = np.zeros((40, 40), np.uint8)
    m[10:20, 10:30] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", 20)
    assert mask.dtype == torch.bool and mask.sum() == 5 * 10


def test_split_is_deterministic_and_disjoint() -> None:
    train, val = split_train_val(100, 0.2, seed=3)
    assert len(train) == 80 and len(val) == 20 and not set(train) & set(val)
    assert (train, val) == split_train_val(100, 0.2, seed=3)
    assert val != split_train_val(100, 0.2, seed=4)[1]
    assert split_train_val(10, 0.0, 0) == (list(range(10)), [])


def test_every_generated_anomalous_image_has_a_mask(tmp_path: Path) -> None:
    from anovit.data import make_synthetic_mvtec

    root = make_synthetic_mvtec(
        tmp_path, categories=("capsule",), size=64, n_train=1, n_test_good=1, n_per_defect=6, defects=("smudge",)
    )
    masks = sorted((root / "capsule" / "ground_truth" / "smudge").glob("*_mask.png"))
    assert len(masks) == 6 and all(np.asarray(Image.open(m)).any() for m in masks)


@pytest.mark.parametrize("category", TEXTURES)
def test_every_builtin_category_and_defect_is_visible_where_its_mask_says(category: str) -> None:
    from scipy.ndimage import binary_dilation

    from anovit.data.synthetic import add_defect, normal_image

    rng = np.random.default_rng(0)
    a, b = normal_image(category, 96, rng), normal_image(category, 96, rng)
    assert a.shape == (96, 96, 3) and a.min() >= 0 and a.max() <= 1 and a.std() > 0.02
    assert not np.allclose(a, b)  # every image is drawn anew
    for kind in DEFECTS:
        for seed in range(3):
            img, mask = add_defect(a, kind, np.random.default_rng(seed), region=0.3)
            if not mask.any():  # a smudge over a flat part changes nothing and has no mask
                assert kind == "smudge" and np.abs(img - a).max() < 0.1
                continue
            change = np.abs(img - a).mean(axis=2)
            assert change[mask].mean() > 0.03, (category, kind)
            far = ~binary_dilation(mask, iterations=8)  # the change stays within the mask and a soft edge
            assert change[mask].mean() > 2 * change[far].mean(), (category, kind)


@pytest.mark.parametrize(
    ("degrees", "translate", "scale"),
    [(90.0, 0.0, (1.0, 1.0)), (180.0, 0.0, (0.9, 1.0)), (30.0, 0.0, (2.0, 3.0))],
)
def test_reflect_affine_keeps_real_content_in_the_corners(
    degrees: float, translate: float, scale: tuple[float, float]
) -> None:
    """Turns past 45 degrees and zoom-only scales: every output pixel comes from the (reflected) image, none from
    the constant fill (a constant image stays constant), and the margin fits reflect padding."""
    torch.manual_seed(0)
    affine = ReflectAffine(degrees, translate, scale)
    image = torch.ones(1, 48, 48)
    assert 0 <= affine.margin(48) < 48
    for _ in range(50):
        assert torch.allclose(affine(image), image)


def test_reflect_affine_margin_of_the_presets_is_unchanged() -> None:
    """The presets' augmentation (10 degrees, 5 %, 0.95-1.05): the margin sets the padded size that torchvision draws
    the translation from, so it must stay what the presets' measured runs trained with."""
    affine = ReflectAffine(10.0, 0.05, (0.95, 1.05))
    assert (affine.margin(224), affine.margin(32), affine.margin(384)) == (38, 8, 64)
