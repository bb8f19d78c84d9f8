from __future__ import annotations

import pytest
import timm
import torch

from anovit.errors import InputError
from anovit.models import L2CAE, AnoViT, build_model

from .conftest import TINY_VIT, tiny_model_config


@pytest.mark.parametrize("image_size,patch_size", [(32, 8), (48, 16), (64, 8), (56, 14), (32, 4)])
def test_anovit_shapes(image_size: int, patch_size: int) -> None:
    model = build_model(tiny_model_config("anovit", image_size, patch_size))
    x = torch.rand(2, 3, image_size, image_size)
    fmap = model.forward_encoder(x)
    g = image_size // patch_size
    assert fmap.shape == (2, TINY_VIT["embed_dim"], g, g)
    assert model(x).shape == x.shape


def test_feature_map_is_patch_tokens_on_their_grid() -> None:
    """The class token is dropped and token k lands at row k // g, column k % g."""
    model = build_model(tiny_model_config()).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        tokens = model.encoder.forward_tokens(x)  # (1, 1 + 16, D)
        fmap = model.forward_encoder(x)  # (1, D, 4, 4)
    assert tokens.shape[1] == 1 + 16
    for k in (0, 5, 15):
        torch.testing.assert_close(fmap[0, :, k // 4, k % 4], tokens[0, 1 + k])


@pytest.mark.parametrize(
    "encoder,prefix",
    [("deit_tiny_distilled_patch16_224", 2), ("vit_base_patch16_reg4_gap_256", 4), ("vit_tiny_patch16_224", 1)],
)
def test_prefix_tokens_are_dropped(encoder: str, prefix: int) -> None:
    model = AnoViT(32, encoder=encoder, patch_size=8, decoder_channels=(8, 8, 8, 8, 8), encoder_overrides=TINY_VIT)
    assert model.encoder.num_prefix_tokens == prefix
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("image_size", [32, 64, 128, 256])
def test_cae_shapes(image_size: int) -> None:
    model = L2CAE(image_size, latent_dim=8, base_channels=4)
    x = torch.rand(1, 3, image_size, image_size)
    assert model.forward_encoder(x).shape == (1, 8, 1, 1)  # a latent vector, as in Bergmann et al.
    assert model(x).shape == x.shape


@pytest.mark.parametrize("name", ["anovit", "cae"])
def test_every_parameter_gets_a_finite_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_model_config(name))
    x = torch.rand(2, 3, 32, 32)
    loss = (model(x) - x).pow(2).mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


def test_image_size_not_divisible_by_patch_names_both() -> None:
    with pytest.raises(InputError, match=r"image size 30 .* patch size 8"):
        build_model(tiny_model_config("anovit", 30, 8))


def test_cae_size_not_divisible_is_clear() -> None:
    with pytest.raises(InputError, match="divisible by 16"):
        L2CAE(40)


def test_unknown_encoder_name() -> None:
    with pytest.raises(InputError, match="unknown timm model"):
        AnoViT(32, encoder="not_a_vit", patch_size=8)


def test_paper_preset_is_vit_b16_at_384() -> None:
    from anovit.presets import PRESETS

    cfg = PRESETS["paper"].model
    vit = timm.create_model(cfg.encoder, pretrained=False, num_classes=0)
    assert (cfg.image_size, cfg.patch_size, vit.embed_dim, len(vit.blocks)) == (384, 16, 768, 12)
    assert cfg.pretrained and len(cfg.decoder_channels) + 1 == 6  # six transposed-conv blocks
