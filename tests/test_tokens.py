"""AnoViT reconstructing the frozen encoder's tokens (``--objective tokens``, after Dinomaly): the config, the
model's groups and loss, a trained run through test and export, and a planted defect on the real ViT-Ti."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from anovit.cli import main
from anovit.cli.args import build_parser
from anovit.cli.options import method_options
from anovit.config import RunConfig
from anovit.deploy.export import export_model
from anovit.errors import InputError
from anovit.evaluation.thresholds import load_thresholds
from anovit.models import TokenAnoViT, build_model
from anovit.models.attention import LinearAttention, decoder_block
from anovit.models.tokens import MASSIVE_RATIO
from anovit.presets import TOKEN_ATTENTION, TOKEN_LAYERS, TOKEN_MERGE, TOKEN_VIEWS
from anovit.resolve import resolve_config
from anovit.runs.train import train_run

from .conftest import onnx_against_torch, planted_square_scores, tiny_run_config

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared/weights/vit_tiny_patch16_224.safetensors"
TINY = {"embed_dim": 32, "depth": 4, "num_heads": 2}


def tokens_config() -> RunConfig:
    """The token decoder (2 blocks) on a random 4-block ViT at 32 px: a 4 x 4 patch grid, target blocks 0 to 3; the
    groups merged, attended and localised as the default does, trained on two cached views of each image (3 epochs
    read it 3 times), scored as the default scores, over views shifted by a quarter patch."""
    cfg = tiny_run_config("anovit", epochs=3)
    model = replace(
        cfg.model,
        encoder_overrides=dict(TINY),
        reference_layers=(0, 1, 2, 3),
        token_decoder_depth=2,
        token_merge="max",
        token_attention="linear",
        token_map_channels="ordinary",
    )
    return replace(
        cfg,
        model=model,
        train=replace(cfg.train, objective="tokens", feature_loss=0.0, token_views=2),
        score=replace(cfg.score, kinds=("tokens",), sigma=1.0, test_flips="none", test_shift=2, image_score="top1+std"),
    )


def test_the_config_of_tokens() -> None:
    cfg = resolve_config("tiny", objective="tokens", encoder_weights="w.safetensors")
    assert cfg.train.objective == "tokens" and cfg.score.kinds == ("tokens",) and cfg.train.feature_loss == 0
    assert cfg.model.reference_layers == TOKEN_LAYERS and cfg.model.token_decoder_depth > 0
    assert cfg.model.token_merge == resolve_config("tokens").model.token_merge == TOKEN_MERGE
    assert resolve_config("tokens", token_merge="sum").model.token_merge == "sum"
    with pytest.raises(InputError, match="token-merge"):
        resolve_config("tiny", token_merge="max")  # no token decoder to merge
    assert resolve_config("tokens", model="knn", token_merge="sum").model.name == "knn"  # beside it in a benchmark
    assert cfg.model.token_attention == resolve_config("tokens").model.token_attention == TOKEN_ATTENTION == "linear"
    assert resolve_config("tokens", token_attention="softmax").model.token_attention == "softmax"
    with pytest.raises(InputError, match="token-attention"):
        resolve_config("tiny", token_attention="linear")  # no token decoder
    with pytest.raises(InputError, match="token-attention"):
        resolve_config("tokens", token_attention="performer")
    args = build_parser().parse_args(
        ["train", "--data", "d", "--category", "c", "--model", "anovit", "--out", "o", "--token-attention", "softmax"]
    )
    assert resolve_config("tokens", **method_options(args)).model.token_attention == "softmax"
    assert cfg.train.token_views == resolve_config("tokens").train.token_views == TOKEN_VIEWS
    assert resolve_config("tokens", token_views=0).train.token_views == 0
    with pytest.raises(InputError, match="token-views"):
        resolve_config("tiny", token_views=4)  # no frozen encoder's targets to cache
    assert not cfg.model.segment_head and not cfg.model.mask_token and cfg.score.test_masks == 1
    args = build_parser().parse_args(
        [
            "train",
            "--data",
            "d",
            "--category",
            "c",
            "--model",
            "anovit",
            "--out",
            "o",
            "--token-dropout",
            "0.4",
            "--token-depth",
            "8",
            "--token-groups",
            "4",
            "--token-map-channels",
            "all",
            "--no-augment",
        ]
    )
    plain = resolve_config("tokens", **method_options(args))
    # the default localises without the massive channels, as does the tokens objective reached from another preset
    assert cfg.model.token_map_channels == resolve_config("tokens").model.token_map_channels == "ordinary"
    assert plain.model.token_map_channels == "all"
    with pytest.raises(InputError, match="token-map-channels"):
        resolve_config("tiny", token_map_channels="all")  # no token decoder
    with pytest.raises(InputError, match="token-map-channels"):
        resolve_config("tokens", token_map_channels="some")
    with pytest.raises(InputError, match="position-norm with --token-map-channels ordinary"):
        resolve_config("tokens", position_norm=True, image_score="top1")  # the norm would be of the other map
    judged = resolve_config("tokens", position_norm=True, image_score="top1", token_map_channels="all")
    assert judged.model.position_norm
    assert plain.model.token_dropout == 0.4 != cfg.model.token_dropout
    assert plain.model.token_decoder_depth == 8 != cfg.model.token_decoder_depth
    assert plain.model.token_groups == 4 != cfg.model.token_groups
    assert plain.data.affine_degrees == plain.data.affine_translate == 0 and plain.data.affine_scale == (1.0, 1.0)
    assert not plain.data.hflip and not plain.data.vflip and cfg.data.affine_degrees > 0 and cfg.data.hflip
    # the default preset turns, moves and scales its training views but does not flip them (tiny and the paper do);
    # --train-flips gives the flips back
    default = resolve_config("tokens")
    assert not default.data.hflip and not default.data.vflip and default.data.affine_degrees > 0
    assert resolve_config("paper").data.hflip and resolve_config("tiny").data.vflip
    args = build_parser().parse_args(
        ["train", "--data", "d", "--category", "c", "--model", "anovit", "--out", "o", "--train-flips"]
    )
    flipped = resolve_config("tokens", **method_options(args))
    assert flipped.data.hflip and flipped.data.vflip and flipped.data.affine_degrees == default.data.affine_degrees
    with pytest.raises(InputError, match="test-flips"):  # a flipped view of a set the default trained unflipped
        resolve_config("tokens", test_flips="h")
    assert resolve_config("tokens", augment_flips=True, test_flips="hv").score.test_flips == "hv"
    with pytest.raises(InputError, match="no-augment"):  # contradictory: the flips would be dropped unsaid
        resolve_config("tokens", augment_flips=True, augment=False)
    args = build_parser().parse_args(
        ["train", "--data", "d", "--category", "c", "--model", "anovit", "--out", "o", "--no-train-flips"]
    )
    assert not resolve_config("paper", **method_options(args)).data.hflip  # tiny would refuse: it scores flips
    for bad in (1.0, -0.1):
        with pytest.raises(InputError, match="token-dropout"):
            resolve_config("tokens", token_dropout=bad)
    with pytest.raises(InputError, match="token-dropout"):
        resolve_config("tiny", token_dropout=0.2)  # no noisy bottleneck
    with pytest.raises(InputError, match="token-depth 1 with 2 groups"):
        resolve_config("tokens", token_depth=1)  # two groups of blocks need two decoder blocks at least
    assert resolve_config("tokens", token_depth=1, token_groups=1).model.token_groups == 1
    with pytest.raises(InputError, match="token-depth 4 with 5 groups"):
        resolve_config("tokens", token_groups=5)  # more groups than the default's four decoder blocks
    for bad in (0, 9):  # none, or more groups than the eight blocks
        with pytest.raises(InputError, match="token-groups"):
            resolve_config("tokens", token_groups=bad, token_depth=8)
    with pytest.raises(InputError, match="test-flips"):  # a flipped view of an unflipped training set
        resolve_config("tiny", augment=False, test_flips="hv")
    # another objective gives the pixel decoder back, scored by the paper's L2 unless --score says otherwise
    pixels = resolve_config("tokens", objective="restore", encoder_weights="w.safetensors")
    assert pixels.model.token_decoder_depth == 0 and pixels.score.kinds == ("l2",)
    assert resolve_config("tiny", objective="restore", encoder_weights="w.safetensors").model.token_decoder_depth == 0
    # the l2-CAE beside it trains as beside tiny: the token decoder's rate and steps are not a pixel decoder's
    cae = resolve_config("tokens", model="cae")
    assert replace(cae, preset="tiny") == resolve_config("tiny", model="cae") and cae.preset == "tokens"
    with pytest.raises(InputError, match="go together"):
        resolve_config("tiny", score=("tokens",))
    with pytest.raises(InputError, match="no other --score"):
        resolve_config("tiny", objective="tokens", score=("l2",), encoder_weights="w.safetensors")
    with pytest.raises(InputError, match="pretrained"):
        resolve_config("small", objective="tokens")


def test_the_decoder_gives_back_two_groups_and_the_easy_patches_count_less() -> None:
    torch.manual_seed(0)
    model = TokenAnoViT(
        32, "vit_tiny_patch16_224", 8, layers=(0, 1, 2, 3), depth=2, dropout=0.0, encoder_overrides=TINY
    )
    images = torch.rand(3, 3, 32, 32)
    pairs = model.pairs(images)
    assert len(pairs) == 2 and all(a.shape == b.shape == (3, 16, 32) for a, b in pairs)
    grids = model.encoder(images)  # the first group is the mean of the first two target blocks
    torch.testing.assert_close(pairs[0][0], torch.stack(grids[:2]).mean(0).flatten(2).transpose(1, 2))
    maps = model(images)
    assert maps.shape == (3, 32, 32) and (maps >= 0).all() and (maps <= 4).all()
    plain, mined = model.loss(images, 0.0), model.loss(images, 0.9)
    assert mined.item() > 0 and mined.item() != pytest.approx(plain.item())
    # unweighted, the loss is the mean over the groups of the per-patch distance the map sums over them
    per_patch = sum(1 - torch.cosine_similarity(a, b, dim=-1) for a, b in pairs)  # (3, 16)
    assert plain.item() == pytest.approx(per_patch.mean().item() / 2, rel=1e-5)
    mined.backward()
    assert all(p.grad is None for p in model.encoder.parameters())  # the encoder stays frozen
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_more_groups_split_the_blocks_and_the_decoder_alike() -> None:
    """groups=3 over four target blocks: groups of 2, 1 and 1 blocks, each against as many of the decoder's blocks
    (last first), each with its own peak level under merge="max"; a decoder shallower than the groups is refused."""
    torch.manual_seed(0)
    kw = dict(layers=(0, 1, 2, 3), dropout=0.0, encoder_overrides=TINY, merge="max")
    model = TokenAnoViT(32, "vit_tiny_patch16_224", 8, depth=3, groups=3, **kw).eval()
    images = torch.rand(2, 3, 32, 32)
    pairs = model.pairs(images)
    assert len(pairs) == 3 and model.target_shape == (3, 16, 32) and model.group_peaks.shape == (3,)
    grids = [g.flatten(2).transpose(1, 2) for g in model.encoder(images)]
    torch.testing.assert_close(pairs[0][0], torch.stack(grids[:2]).mean(0))
    torch.testing.assert_close(pairs[2][0], grids[3])
    decoded = model.decode(model.targets(images))  # last decoder block first
    torch.testing.assert_close(pairs[0][1], decoded[0])
    torch.testing.assert_close(pairs[2][1], decoded[2])
    with pytest.raises(InputError, match="depth"):
        TokenAnoViT(32, "vit_tiny_patch16_224", 8, depth=2, groups=3, **kw)


def test_linear_attention_is_the_normalised_kernel_form_with_the_blocks_own_weights() -> None:
    """Each token's output is the mean of the values weighted by phi(q_i) . phi(k_j), phi = elu + 1 (written out
    here as an N x N matrix, which the module never forms), through the same qkv and projection as softmax; a
    linear block starts from the weights a softmax block gets from the same seed."""
    torch.manual_seed(0)
    attn = LinearAttention(32, num_heads=2, qkv_bias=True).eval()
    x = torch.randn(3, 10, 32)
    q, k, v = attn.qkv(x).reshape(3, 10, 3, 2, 16).permute(2, 0, 3, 1, 4)  # each (3, heads, 10, 16)
    phi_q, phi_k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    weights = phi_q @ phi_k.transpose(-2, -1)  # (3, heads, 10, 10), all > 0
    mixed = (weights / weights.sum(dim=-1, keepdim=True)) @ v  # (3, heads, 10, 16)
    expected = attn.proj(mixed.transpose(1, 2).reshape(3, 10, 32))
    torch.testing.assert_close(attn(x), expected, rtol=1e-4, atol=1e-5)
    softmax_out = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(3, 10, 32)
    assert not torch.allclose(attn(x), attn.proj(softmax_out), atol=1e-3)  # not softmax attention under a new name

    torch.manual_seed(1)
    softmax = decoder_block(32, 2, "softmax")
    torch.manual_seed(1)
    linear = decoder_block(32, 2, "linear")
    assert isinstance(linear.attn, LinearAttention) and not isinstance(softmax.attn, LinearAttention)
    assert softmax.state_dict().keys() == linear.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(softmax.state_dict().values(), linear.state_dict().values()))
    after_linear = torch.rand(1)
    torch.manual_seed(1)
    decoder_block(32, 2, "softmax")
    assert torch.equal(torch.rand(1), after_linear)  # the swap draws nothing: the blocks after it start the same too
    with pytest.raises(ValueError, match="token attention"):
        decoder_block(32, 2, "performer")
    built = build_model(tokens_config().model, load_encoder_weights=False)  # the config's field reaches the decoder
    assert all(isinstance(block.attn, LinearAttention) for block in built.decoder)
    softmax_cfg = replace(tokens_config().model, token_attention="softmax")
    assert not any(isinstance(b.attn, LinearAttention) for b in build_model(softmax_cfg, False).decoder)


def test_max_merge_judges_each_group_against_its_normal_peaks() -> None:
    """merge="max": each group's distance over its peak level, the larger of the two per patch; the levels are the
    mean of each image's top 1 % of patches (here one of 16) inside the image score's border, stored as a buffer with
    the weights."""
    torch.manual_seed(0)
    kw = dict(layers=(0, 1, 2, 3), depth=2, dropout=0.0, encoder_overrides=TINY)
    model = TokenAnoViT(32, "vit_tiny_patch16_224", 8, merge="max", **kw).eval()
    images = torch.rand(3, 3, 32, 32)
    first, second = model.distances(images)  # (3, 16) each
    levels = model.peak_levels(images)  # (3, 2)
    torch.testing.assert_close(levels, torch.stack([first.amax(1), second.amax(1)], dim=1))
    # measured where the image score reads: its border (a quarter of the side here) leaves the grid's outer ring out
    inner = [d.view(3, 4, 4)[:, 1:3, 1:3].flatten(1).amax(1) for d in (first, second)]
    torch.testing.assert_close(model.peak_levels(images, border=0.25), torch.stack(inner, dim=1))
    torch.testing.assert_close(model.peak_levels(images, border=0.05), torch.stack(inner, dim=1))  # any overlap
    model.set_peak_levels(torch.tensor([0.5, 2.0]))
    expected = torch.maximum(first / 0.5, second / 2.0).view(3, 1, 4, 4)
    expected = torch.nn.functional.interpolate(expected, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(model(images), expected.squeeze(1))
    assert "group_peaks" in model.state_dict()
    summed = TokenAnoViT(32, "vit_tiny_patch16_224", 8, **kw)  # a run saved before merges: no buffer, the sum
    assert "group_peaks" not in summed.state_dict() and summed.merge == "sum"
    with pytest.raises(InputError, match="merge"):
        TokenAnoViT(32, "vit_tiny_patch16_224", 8, merge="mean", **kw)


def test_the_map_localises_without_the_massive_channels() -> None:
    """map_channels="ordinary": the channels over MASSIVE_RATIO times their group's median energy are left out of the
    localising map's cosine, not of the judging map's; forward gives both (localising first), each merged over its
    own peak levels, and the loss counts both; "all" gives the one map, as runs saved before did."""
    torch.manual_seed(0)
    kw = dict(layers=(0, 1, 2, 3), depth=2, dropout=0.0, encoder_overrides=TINY, merge="max")
    model = TokenAnoViT(32, "vit_tiny_patch16_224", 8, map_channels="ordinary", **kw).eval()
    assert torch.equal(model.ordinary, torch.ones(2, 32)) and model.group_peaks.shape == (4,)
    energy = torch.ones(2, 32)
    energy[1, 5] = 2 * MASSIVE_RATIO  # massive
    energy[0, 7] = MASSIVE_RATIO / 2  # large, not massive
    model.set_ordinary_channels(energy)
    assert (model.ordinary == 0).nonzero().tolist() == [[1, 5]]
    silent = torch.zeros(2, 32)
    silent[0, :3] = 1.0  # a median of 0: nothing to measure a channel against, so every channel is read
    model.set_ordinary_channels(silent)
    assert torch.equal(model.ordinary, torch.ones(2, 32))
    model.set_ordinary_channels(energy)
    images = torch.rand(3, 3, 32, 32)
    measured = model.channel_energy(images)  # (3, 2, 32): the mean square of each group's target channels
    torch.testing.assert_close(measured, model.targets(images).pow(2).mean(dim=2))
    (a0, b0), (a1, b1) = model.pairs(images)
    full = [1 - torch.cosine_similarity(a, b, dim=-1) for a, b in ((a0, b0), (a1, b1))]  # (3, 16) each
    keep = torch.ones(32)
    keep[5] = 0
    without = [full[0], 1 - torch.cosine_similarity(a1 * keep, b1 * keep, dim=-1)]
    dists = model.distances(images)
    for got, want in zip(dists, full + without):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(dists[3], dists[1])
    # the loss counts each group over all channels and over the ordinary ones: the decoder learns both
    plain = torch.stack([d.mean() for d in full + without]).mean()
    assert model.loss(images, 0.0).item() == pytest.approx(plain.item(), rel=1e-5)
    assert model.peak_levels(images).shape == (3, 4)
    model.set_peak_levels(torch.tensor([0.5, 2.0, 1.0, 4.0]))
    maps = model(images)
    assert maps.shape == (3, 2, 32, 32)

    def upsampled(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        grid = torch.maximum(first, second).view(3, 1, 4, 4)
        return torch.nn.functional.interpolate(grid, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]

    torch.testing.assert_close(maps[:, 0], upsampled(without[0] / 1.0, without[1] / 4.0))  # to localise with
    torch.testing.assert_close(maps[:, 1], upsampled(full[0] / 0.5, full[1] / 2.0))  # to judge the image by
    one = TokenAnoViT(32, "vit_tiny_patch16_224", 8, **kw)
    assert one(images).shape == (3, 32, 32) and "ordinary" not in one.state_dict()
    with pytest.raises(InputError, match="map channels"):
        TokenAnoViT(32, "vit_tiny_patch16_224", 8, map_channels="none", **kw)


@pytest.fixture(scope="module")
def tokens_run(mvtec_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("tokens") / "run"
    train_run(tokens_config(), mvtec_root, "weave", run, device="cpu", progress=False)
    return run


def test_a_tokens_run_trains_tests_and_exports(tokens_run: Path, mvtec_root: Path, tmp_path: Path) -> None:
    history = (tokens_run / "log.csv").read_text().splitlines()
    assert len(history) == 4  # a header and three epochs
    from safetensors.torch import load_file

    weights = load_file(str(tokens_run / "model.safetensors"))  # measured on the hold-out, saved
    peaks = weights["group_peaks"]  # each map's groups: the judging map's, then the localising map's
    assert peaks.shape == (4,) and (peaks > 0).all() and not torch.equal(peaks, torch.ones(4))
    assert weights["ordinary"].shape == (2, 32)  # the random ViT has no massive channel: all are read
    saved = json.loads((tokens_run / "config.json").read_text())
    assert saved["model"]["token_attention"] == "linear" and saved["model"]["token_map_channels"] == "ordinary"
    del saved["model"]["token_attention"]  # a run saved before the option was trained with softmax attention
    del saved["model"]["token_map_channels"]  # and localised on the map over all channels
    (tmp_path / "before.json").write_text(json.dumps(saved))
    old = RunConfig.load(tmp_path / "before.json").model
    assert old.token_attention == "softmax" and old.token_map_channels == "all"
    thresholds = load_thresholds(tokens_run)  # no masks in the hold-out: the pixel threshold is on the map's scale
    assert thresholds.pixel_method == "image-threshold"
    assert thresholds.pixel > thresholds.image  # the top 1 % above its geometric mean with the map's spread
    args = ["--run", str(tokens_run), "--data", str(mvtec_root), "--category", "weave", "--out", str(tmp_path)]
    assert main(["-q", "test", *args]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_images"] == 12 and metrics["pixel_auroc"] is not None
    with pytest.raises(InputError, match="openvino --int8"):  # dynamic int8 activations swamp the token distances
        export_model(tokens_run, "onnx", True, tmp_path / "model-int8.onnx")
    assert not (tmp_path / "model-int8.onnx").exists()
    (tmp_path / "no-weights").mkdir()  # refused from the config alone, before the weights are read
    shutil.copyfile(tokens_run / "config.json", tmp_path / "no-weights" / "config.json")
    with pytest.raises(InputError, match="openvino --int8"):
        export_model(tmp_path / "no-weights", "onnx", True)
    result = export_model(tokens_run, "onnx", False, tmp_path / "model.onnx")
    assert result.map_error is not None and result.map_error < 1e-4
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    maps, scores, expected = onnx_against_torch(tokens_run, result.path, images)
    np.testing.assert_allclose(maps, expected.maps.numpy(), atol=1e-4)
    np.testing.assert_allclose(scores, expected.image.numpy(), atol=1e-4)


@pytest.mark.skipif(
    not SHARED_WEIGHTS.is_file(), reason=f"{SHARED_WEIGHTS} is absent (only the project's machines have it)"
)
def test_a_planted_defect_is_found(tmp_path: Path) -> None:
    """The real pretrained ViT-Ti at 112 px (a 7 x 7 patch grid), 40 steps: the map peaks on a planted square."""
    cfg = resolve_config("tokens", image_size=112, encoder_weights=str(SHARED_WEIGHTS), epochs=10, batch_size=4)
    clean, defect = planted_square_scores(cfg, tmp_path)
    assert float(defect.image) > float(clean.image)
    row, col = divmod(int(defect.maps[0].argmax()), 112)
    assert 16 <= row < 64 and 48 <= col < 96  # on the square, give or take a patch
