"""Issue 10's methods: synthetic anomalies, objectives, test-time masks, the extra scores, border, weights source."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from anovit.config import ANOMALY_FILLS, RunConfig
from anovit.errors import InputError
from anovit.files import load_config
from anovit.image_score import level_statistic
from anovit.models import build_model
from anovit.models import weights as weights_mod
from anovit.models.checkpoint import load_trained_model
from anovit.presets import PRESETS
from anovit.resolve import resolve_config
from anovit.scoring.maps import combine, component_maps, image_scores, mask_groups, reconstruct, score_batch
from anovit.scoring.similarity import gms_map, ssim_map
from anovit.scoring.smoothing import gaussian_blur
from anovit.training.anomalies import perlin_noise, synthesize, visible_change
from anovit.training.objectives import build_objective
from tests.conftest import tiny_run_config

from .reference import score_maps

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared/weights/vit_tiny_patch16_224.safetensors"


def test_perlin_noise_is_smooth_and_seeded() -> None:
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    a = perlin_noise(2, 64, 4, g(), torch.device("cpu"))
    b = perlin_noise(2, 64, 4, g(), torch.device("cpu"))
    assert a.shape == (2, 64, 64) and torch.equal(a, b)
    assert a.abs().max() <= 1.01 and a.std() > 0.1
    # smooth: neighbouring pixels differ far less than the noise's range
    assert (a[:, 1:] - a[:, :-1]).abs().max() < 0.25 * (a.max() - a.min())


def test_synthesize_changes_only_the_masked_pixels() -> None:
    images = torch.rand(32, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    corrupted, masks = synthesize(images, torch.Generator().manual_seed(1), fraction=0.5)
    assert corrupted.shape == images.shape and masks.shape == (32, 48, 48)
    assert corrupted.min() >= 0 and corrupted.max() <= 1
    change = (corrupted - images).abs().mean(dim=1)  # (32, 48, 48)
    assert change[masks == 0].mean() < 0.005 and change[masks > 0].mean() > 0.1  # the mask is where the image changed
    touched = masks.flatten(1).amax(1) > 0
    assert 6 <= int(touched.sum()) <= 26  # about half of the images
    changed = (corrupted - images).abs().flatten(1).amax(1) > 1e-3
    assert torch.equal(changed, touched)


def test_blur_anomalies_remove_structure_and_keep_colour() -> None:
    stripes = (
        (torch.arange(64) // 2 % 2).float().view(1, 1, 1, 64).expand(8, 3, 64, 64).clone()
    )  # 2-px vertical stripes
    stripes[:, 0] = stripes[:, 0] * 0.5 + 0.25  # a red channel of another mean, which a blur must keep
    corrupted, masks = synthesize(stripes, torch.Generator().manual_seed(3), fraction=1.0, fills=("blur",))
    inside = masks.bool().unsqueeze(1).expand_as(stripes)  # (8, 3, 64, 64)
    assert inside.any()
    # full opacity blurs stripes to their mean, half opacity still halves their contrast
    contrast_before = (stripes[:, :, :, 1:] - stripes[:, :, :, :-1]).abs()[inside[..., 1:]].mean()
    contrast_after = (corrupted[:, :, :, 1:] - corrupted[:, :, :, :-1]).abs()[inside[..., 1:]].mean()
    assert contrast_after < 0.6 * contrast_before
    for c in range(3):  # the region keeps its colour: the mean of each channel moves little
        before, after = stripes[:, c][masks.bool()].mean(), corrupted[:, c][masks.bool()].mean()
        assert abs(float(after - before)) < 0.05
    with pytest.raises(ValueError, match="unknown anomaly fill"):
        synthesize(stripes, torch.Generator(), fraction=1.0, fills=("smear",))
    assert torch.equal(visible_change(masks, stripes, corrupted), masks)  # every blurred stripe shows
    flat = torch.full((4, 3, 64, 64), 0.5)  # nothing to blur: the image is unchanged and nothing visibly changed
    corrupted, masks = synthesize(flat, torch.Generator().manual_seed(3), fraction=1.0, fills=("blur",))
    assert (
        torch.allclose(corrupted, flat, atol=1e-5) and masks.any() and not visible_change(masks, flat, corrupted).any()
    )


def test_anomaly_fills_are_chosen_and_checked() -> None:
    assert resolve_config("tiny").train.anomaly_fills == ("patch", "shift", "colour", "noise", "flat", "blur")
    assert resolve_config("tiny", anomaly_fills=("blur", "patch")).train.anomaly_fills == ("blur", "patch")
    for bad in (("blur", "smear"), (), ("blur", "blur")):
        with pytest.raises(InputError, match="--anomalies"):
            resolve_config("tiny", anomaly_fills=bad)
    raw = resolve_config("tiny").to_dict()
    assert RunConfig.from_dict(raw).train.anomaly_fills == ANOMALY_FILLS
    del raw["train"]["anomaly_fills"]  # a config.json written before the blur fill: trained without it
    assert RunConfig.from_dict(raw).train.anomaly_fills == ("patch", "shift", "colour", "noise", "flat")


def test_mask_groups_hide_every_patch_once_and_never_with_a_neighbour() -> None:
    for k in (2, 3, 4, 6):
        groups = mask_groups((6, 6), k)  # (K, N)
        assert groups.shape == (k, 36) and torch.equal(groups.sum(0), torch.ones(36, dtype=torch.long))
        grid = groups.float().argmax(0).view(6, 6)
        assert (grid[1:] != grid[:-1]).all() and (grid[:, 1:] != grid[:, :-1]).all()


class HiddenMarker(nn.Module):
    """Outputs 1 on the pixels of hidden patches and 0 elsewhere: shows which pass each pixel came from."""

    grid = (4, 4)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        if hidden is None:
            return torch.zeros_like(x)
        marks = hidden.float().view(-1, 1, 4, 4)
        return torch.nn.functional.interpolate(marks, size=x.shape[-2:], mode="nearest").expand_as(x)


def test_test_masks_take_each_pixel_from_the_pass_that_hid_it() -> None:
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(reconstruct(HiddenMarker(), x, 1), torch.zeros_like(x))
    for k in (2, 4):
        assert torch.equal(reconstruct(HiddenMarker(), x, k), torch.ones_like(x))


def test_ssim_and_gms_are_zero_for_identical_images_and_high_where_they_differ() -> None:
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for fn in (ssim_map, gms_map):
        assert fn(x, x).abs().max() < 1e-4
        y = x.clone()
        y[:, :, 20:40, 20:40] = 0.5  # texture replaced by a flat patch
        m = fn(x, y)
        assert m.shape == (2, 64, 64)
        assert m[:, 24:36, 24:36].mean() > 5 * m[:, :10, :10].mean() + 0.05


def test_ssim_matches_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    x = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    _, full = metrics.structural_similarity(
        x[0].numpy(),
        y[0].numpy(),
        channel_axis=0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        full=True,
    )
    ours = 1 - ssim_map(x, y)[0].numpy()
    inner = (slice(6, -6), slice(6, -6))  # skimage crops differently at the border
    np.testing.assert_allclose(ours[inner], full.mean(axis=0)[inner], atol=2e-3)


def test_image_score_ignores_the_border() -> None:
    maps = torch.zeros(2, 40, 40)
    maps[0, 0, 0] = 9.0  # a bright corner
    maps[1, 20, 20] = 3.0  # a defect inside
    assert image_scores(maps, 0.0).tolist() == [9.0, 3.0]
    assert image_scores(maps, 0.05).tolist() == [0.0, 3.0]
    # the CPU defaults judge the map without its outer 5 % (their ViT's corner patches are given back worst on normal
    # images); the paper's max and PatchCore's read all of it; a user's --border wins; one-class data: test_benchmark
    hot = torch.zeros(1, 224, 224)
    hot[0, :11, :11] = 1.0  # the outer 11 px at 224 px: left out
    hot[0, 11:, 11:] = 0.5  # the interior, as far as its corner
    for preset in ("tokens", "tiny"):
        score = resolve_config(preset).score
        assert image_scores(hot, score.border, "max").item() == 0.5, preset
    assert resolve_config("paper").score.border == 0.0 and resolve_config(model="knn").score.border == 0.0
    assert resolve_config(border=0.0).score.border == 0.0
    assert resolve_config(model="knn", border=0.1).score.border == 0.1


def test_image_score_max_mean_and_top_share() -> None:
    maps = torch.arange(200, dtype=torch.float32).view(2, 10, 10)  # image 0: 0..99, image 1: 100..199
    assert image_scores(maps, 0.0, "max").tolist() == [99.0, 199.0]
    assert image_scores(maps, 0.0, "mean").tolist() == [49.5, 149.5]
    assert image_scores(maps, 0.0, "top10").tolist() == [94.5, 194.5]  # the mean of the 10 highest pixels
    assert image_scores(maps, 0.0, "top100").tolist() == [49.5, 149.5]
    assert image_scores(maps, 0.1, "mean").tolist() == [49.5, 149.5]  # the 8 x 8 interior of a linear ramp
    assert image_scores(maps, 0.0, "top0.5").tolist() == [99.0, 199.0]  # at least one pixel
    assert resolve_config("tiny", image_score="top5").score.image_score == "top5"
    assert resolve_config("paper").score.image_score == "max"  # the paper's
    assert resolve_config("tiny").score.image_score == "top1"  # the CPU default's (benchmarks/ablation)
    for bad in ("median", "top0", "top150", "topx", "5", "stdev"):
        with pytest.raises(InputError, match="--image-score"):
            resolve_config("tiny", image_score=bad)


def test_image_score_std_is_the_spread_and_blind_to_an_offset() -> None:
    maps = torch.zeros(3, 20, 20)
    maps[1] += 0.5  # the whole map lifted (a darker image): no defect
    maps[2, 8:12, 8:12] = 1.0  # a defect standing out of the map around it
    spread = image_scores(maps, 0.0, "std")
    assert spread[0] == spread[1] == 0.0 and spread[2] > 0
    assert spread[2].item() == pytest.approx(maps[2].numpy().std())  # numpy's population std
    top = image_scores(maps, 0.0, "top1")
    assert top[1] > top[0]  # the top 1 % reads the offset as an anomaly
    both = image_scores(maps, 0.0, "top1+std")  # their geometric mean
    torch.testing.assert_close(both, (top * spread).sqrt())
    assert both[2] > both[1] == both[0] == 0.0
    inside = torch.zeros(1, 20, 20)
    inside[0, 0, :] = 5.0  # a bright edge row that the border leaves out
    assert image_scores(inside, 0.1, "std").item() == 0.0 and image_scores(inside, 0.0, "std").item() > 0
    assert resolve_config("tiny", image_score="std").score.image_score == "std"
    assert resolve_config().score.image_score == "top1+std"  # the default's
    levels = {name: level_statistic(name) for name in ("top1+std", "std", "max", "mean+std")}
    assert levels == {"top1+std": "top1", "std": "max", "max": "max", "mean+std": "mean"}  # on the map's scale
    for bad in ("top1+top1", "top1+", "top1,std", "top1+stdev"):
        with pytest.raises(InputError, match="--image-score"):
            resolve_config(image_score=bad)
    with pytest.raises(InputError, match="--position-norm"):  # the standardised map is signed
        resolve_config(position_norm=True)
    # the default localises on one map and judges by another; the norm is measured on the first
    assert resolve_config(position_norm=True, image_score="top1", token_map_channels="all").model.position_norm


def test_one_l2_score_is_the_papers() -> None:
    model = build_model(tiny_run_config().model)
    x = torch.rand(2, 3, 32, 32)
    cfg = PRESETS["small"].score
    with torch.no_grad():
        new, old = score_batch(model, x, cfg), score_maps(x, model(x), cfg.sigma, cfg.truncate)
    assert torch.equal(new.maps, old.maps) and torch.equal(new.image, old.image)


def test_combined_maps_are_scaled_means() -> None:
    cfg = replace(PRESETS["small"].score, kinds=("l2", "gms"), scales=(2.0, 4.0))
    maps = {"l2": torch.full((1, 4, 4), 2.0), "gms": torch.full((1, 4, 4), 8.0)}
    assert torch.allclose(combine(maps, cfg), torch.full((1, 4, 4), 1.5))


def test_config_rules() -> None:
    with pytest.raises(InputError, match="l2-CAE"):
        resolve_config("small", model="cae", objective="inpaint")
    with pytest.raises(InputError, match="inpaint"):
        resolve_config("small", objective="restore", test_masks=4)
    with pytest.raises(InputError, match="pretrained"):
        resolve_config("small", score=("l2", "feature"))
    with pytest.raises(InputError, match="expected distinct names"):
        resolve_config("small", score=("l2", "edges"))
    cfg = resolve_config("small", objective="inpaint")
    assert cfg.model.mask_token and cfg.score.test_masks == 4
    cfg = resolve_config("small", objective="restore")
    assert not cfg.model.mask_token and cfg.score.test_masks == 1
    paper = resolve_config("paper")
    assert paper.train.objective == "reconstruct" and paper.score.kinds == ("l2",) and paper.score.border == 0


def test_hidden_patches_change_the_reconstruction_only_through_the_mask_token() -> None:
    cfg = replace(tiny_run_config().model, mask_token=True)
    model = build_model(cfg).eval()
    x = torch.rand(2, 3, 32, 32)
    hidden = torch.zeros(2, 16, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(model(x, hidden), model(x), atol=1e-6)  # nothing hidden: the plain forward
        hidden[:, 5] = True
        y = x.clone()
        y[:, :, 8:16, 8:16] = 0  # patch 5 of a 4 x 4 grid changes ...
        assert torch.allclose(model(x, hidden), model(y, hidden), atol=1e-6)  # ... but the model never sees it
        assert not torch.allclose(model(x), model(y), atol=1e-4)


@pytest.mark.parametrize("objective", ["reconstruct", "inpaint", "restore"])
def test_every_objective_trains(objective: str, mvtec_root: Path, tmp_path: Path) -> None:
    from anovit.runs.test import test_run
    from anovit.runs.train import train_run

    base = tiny_run_config(epochs=3)
    cfg = replace(
        base,
        model=replace(base.model, mask_token=objective == "inpaint"),
        train=replace(base.train, objective=objective, lr=3e-3),
        score=replace(base.score, test_masks=4 if objective == "inpaint" else 1),
    )
    result = train_run(cfg, mvtec_root, "weave", tmp_path / "run", device="cpu", progress=False)
    losses = [h.train_loss for h in result.history]
    assert losses[-1] < losses[0]
    evaluation, _ = test_run(tmp_path / "run", mvtec_root, "weave", device="cpu", progress=False)
    assert evaluation.image_auroc is not None and np.isfinite(evaluation.image_scores).all()


def test_objectives_are_seeded() -> None:
    model = build_model(replace(tiny_run_config().model, mask_token=True)).eval()
    x = torch.rand(4, 3, 32, 32)
    for name in ("inpaint", "restore"):
        objective = build_objective(replace(tiny_run_config().train, objective=name))
        with torch.no_grad():
            a = objective(model, x, torch.Generator().manual_seed(3)).output
            b = objective(model, x, torch.Generator().manual_seed(3)).output
            c = objective(model, x, torch.Generator().manual_seed(4)).output
        assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.fixture(scope="module")
def method_run(mvtec_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """inpaint + test masks + every score (the reference encoder is random here: only the plumbing is tested)."""
    from anovit.runs.train import train_run

    base = tiny_run_config(epochs=2)
    cfg = replace(
        base,
        model=replace(base.model, mask_token=True, reference_layers=(0,)),
        train=replace(base.train, objective="inpaint"),
        score=replace(base.score, kinds=("l2", "ssim", "gms", "feature"), test_masks=4, border=0.1),
    )
    run = tmp_path_factory.mktemp("method") / "run"
    train_run(cfg, mvtec_root, "weave", run, device="cpu", progress=False)
    return run


def test_scales_are_measured_after_training(method_run: Path) -> None:
    cfg, model = load_trained_model(method_run)
    assert len(cfg.score.scales) == 4 and all(s > 0 for s in cfg.score.scales)
    # the reference encoder never trained: it still equals the encoder it was copied from at the start
    ref = dict(model.reference.vit.named_parameters())
    assert all(not p.requires_grad for p in ref.values())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        maps = component_maps(model, x, cfg.score)
        combined = gaussian_blur(combine(maps, cfg.score), cfg.score.sigma)
        scores = score_batch(model, x, cfg.score)
    assert torch.allclose(scores.maps, combined, atol=1e-6)
    assert torch.allclose(maps["feature"], maps["feature"].clamp(0, 2))


def test_every_score_exports_to_onnx(method_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from anovit.deploy.export import export_model

    result = export_model(method_run, "onnx", out=tmp_path / "model.onnx")
    assert result.map_error is not None and result.map_error < 1e-4 and result.score_error < 1e-4


def test_weights_come_from_the_variable_else_the_run_falls_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = resolve_config("tiny")
    assert cfg.model.pretrained and "feature" in cfg.score.kinds
    file = tmp_path / "vit_tiny_patch16_224.safetensors"
    file.write_bytes(b"x")
    monkeypatch.setenv(weights_mod.WEIGHTS_ENV, str(file))
    resolved, where = weights_mod.resolve_encoder_source(cfg)
    assert (
        resolved.model.encoder_weights == str(file)
        and not resolved.model.pretrained
        and "$ANOVIT_ENCODER_WEIGHTS" in where
    )
    other = tmp_path / "vit_base_patch16_384.safetensors"
    other.write_bytes(b"x")
    monkeypatch.setenv(weights_mod.WEIGHTS_ENV, str(other))  # a file for another encoder is not used
    monkeypatch.setattr(weights_mod, "hub_weights", lambda encoder: None)  # offline
    resolved, where = weights_mod.resolve_encoder_source(cfg)
    assert resolved.model.encoder_weights is None and not resolved.model.pretrained
    assert (
        "feature" not in resolved.score.kinds
        and not resolved.model.reference_layers
        and "random initialisation" in where
    )
    build_model(resolved.model)  # the fallback builds


def test_default_without_weights_trains_the_scratch_preset_with_the_users_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from anovit.models.weights import resolve_run_config

    monkeypatch.delenv(weights_mod.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(weights_mod, "hub_weights", lambda encoder: None)  # offline, nothing cached
    cfg, where = resolve_run_config(
        "tiny", epochs=3, image_score="max", score=("l2", "feature"), feature_loss=0.5, seed=4
    )
    scratch = resolve_config("scratch")
    assert cfg.preset == "scratch" and "from-scratch preset 'scratch'" in where and "objective restore" in where
    assert (
        (cfg.model, cfg.data) == (scratch.model, scratch.data)
        and not cfg.model.pretrained
        and not cfg.model.reference_layers
    )
    assert (cfg.train.epochs, cfg.train.seed, cfg.train.feature_loss, cfg.score.image_score) == (
        3,
        4,
        0.0,
        "max",
    )  # the user's options
    assert cfg.score.kinds == scratch.score.kinds  # the feature score the user asked for needs pretrained features
    build_model(cfg.model)
    cfg, _ = resolve_run_config(
        "tiny", objective="reconstruct"
    )  # the segmentation head learns from restore's anomalies
    assert cfg.preset == "scratch" and cfg.train.objective == "reconstruct" and "segment" not in cfg.score.kinds
    assert not cfg.model.segment_head and cfg.score.kinds
    # an encoder the user chose keeps its architecture: the same model from a random initialisation
    cfg, where = resolve_run_config("tiny", encoder="vit_small_patch16_224")
    assert cfg.preset == "tiny" and cfg.model.encoder == "vit_small_patch16_224" and "random initialisation" in where
    # presets without a from-scratch counterpart, and runs whose weights are found, are unchanged
    assert resolve_run_config("paper")[0].preset == "paper"
    file = tmp_path / "vit_tiny_patch16_224.safetensors"
    file.write_bytes(b"x")
    monkeypatch.setenv(weights_mod.WEIGHTS_ENV, str(file))
    cfg, where = resolve_run_config("tiny", epochs=3)
    assert cfg == resolve_config("tiny", epochs=3, encoder_weights=str(file)) and str(file) in where


@pytest.mark.skipif(
    not SHARED_WEIGHTS.is_file(), reason=f"{SHARED_WEIGHTS} is absent (only the project's machines have it)"
)
def test_tiny_preset_keeps_the_pretrained_encoder_as_its_reference() -> None:
    from safetensors.torch import load_file

    cfg = resolve_config("tiny", encoder_weights=str(SHARED_WEIGHTS))
    model = build_model(cfg.model)
    file = load_file(str(SHARED_WEIGHTS))
    ref = model.reference.vit.state_dict()
    assert torch.equal(ref["blocks.2.attn.qkv.weight"], file["blocks.2.attn.qkv.weight"])
    assert torch.equal(ref["patch_embed.proj.weight"], model.encoder.vit.patch_embed.proj.weight.detach())
    # pretrained features tell a photograph-like structure from its blurred copy; same image -> 0
    size = cfg.model.image_size
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        from anovit.scoring.maps import feature_map

        assert feature_map(model.reference, x, x).abs().max() < 1e-5
        assert feature_map(model.reference, x, torch.full_like(x, 0.5)).mean() > 0.1


def test_config_json_round_trips_the_new_fields(method_run: Path) -> None:
    cfg = load_config(method_run)
    assert cfg.train.objective == "inpaint" and cfg.score.kinds == ("l2", "ssim", "gms", "feature")
    assert cfg.model.reference_layers == (0,) and cfg.score.test_masks == 4 and cfg.score.border == 0.1


def test_affine_augmentation_keeps_real_content_in_the_corners() -> None:
    from anovit.config import DataConfig
    from anovit.data.transforms import build_augment

    torch.manual_seed(0)
    for size in (32, 64):
        aug = build_augment(DataConfig(image_size=size, affine_degrees=10, affine_translate=0.05))
        x = torch.randint(100, 200, (3, size, size), dtype=torch.uint8)
        outs = [aug(x) for _ in range(100)]
        assert all(o.shape == x.shape for o in outs)
        assert min(int(o.min()) for o in outs) >= 99  # torchvision's fill (0) never shows
        assert any(not torch.equal(o, x) for o in outs)


def test_brightness_augmentation_scales_within_its_range() -> None:
    from anovit.config import DataConfig
    from anovit.data.transforms import build_augment

    torch.manual_seed(0)
    plain = DataConfig(affine_degrees=0, affine_translate=0, affine_scale=(1.0, 1.0), hflip=False, vflip=False)
    assert build_augment(plain) is None  # off by default
    aug = build_augment(replace(plain, brightness=0.2))
    x = torch.full((3, 16, 16), 100, dtype=torch.uint8)
    levels = [float(aug(x).float().mean()) for _ in range(200)]
    assert 80 <= min(levels) < 90 and 110 < max(levels) <= 120  # factors spread over [0.8, 1.2]
    assert resolve_config("tiny", brightness=0.2).data.brightness == 0.2
    with pytest.raises(InputError, match="--brightness"):
        resolve_config("tiny", brightness=1.5)


def test_cli_method_options_reach_the_run(mvtec_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from anovit.cli import main

    common = [
        "-q",
        "train",
        "--data",
        str(mvtec_root),
        "--category",
        "weave",
        "--model",
        "anovit",
        "--preset",
        "small",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "4",
    ]
    assert (
        main(
            [
                *common,
                "--objective",
                "restore",
                "--score",
                "l2+gms",
                "--border",
                "0.05",
                "--anomalies",
                "blur+flat",
                "--test-flips",
                "h",
                "--test-shift",
                "2",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (
        cfg["train"]["objective"] == "restore"
        and cfg["score"]["kinds"] == ["l2", "gms"]
        and cfg["score"]["border"] == 0.05
    )
    assert cfg["score"]["test_flips"] == "h" and cfg["score"]["test_shift"] == 2
    assert cfg["train"]["anomaly_fills"] == ["blur", "flat"]
    assert len(cfg["score"]["scales"]) == 2
    assert main([*common, "--score", "l2+edges", "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--score l2+edges" in err[0] and not (tmp_path / "r2").exists()


def test_min_steps_adds_epochs_on_small_training_sets() -> None:
    from anovit.training.loop import epochs_for, with_min_steps

    cfg = replace(PRESETS["tiny"].train, epochs=40, batch_size=16, min_steps=400)
    assert epochs_for(cfg, 167) == 40  # 10 steps an epoch: 400 steps in 40 epochs
    assert epochs_for(cfg, 64) == 100  # 4 steps an epoch
    assert epochs_for(cfg, 10) == 400  # one (partial) batch an epoch
    assert epochs_for(cfg, 64, world_size=2) == 200  # 32 images per rank: 2 steps an epoch
    assert epochs_for(replace(cfg, min_steps=0), 64) == 40
    assert resolve_config("tiny", epochs=3).train.min_steps == 0  # --epochs is exact
    assert resolve_config("tiny", epochs=1, min_steps=50).train.min_steps == 50  # unless steps are asked for too
    # the added epochs spread the checkpoints: as many as the preset's 40 epochs would write
    assert with_min_steps(cfg, 64) == replace(cfg, epochs=100, checkpoint_every=2, min_steps=0)
    assert with_min_steps(replace(cfg, checkpoint_every=5), 10).checkpoint_every == 50
    assert with_min_steps(replace(cfg, checkpoint_every=0), 10).checkpoint_every == 0  # never stays never
    assert with_min_steps(cfg, 167) == replace(cfg, min_steps=0)
