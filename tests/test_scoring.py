from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from anovit.scoring.maps import reconstruction_error
from anovit.scoring.smoothing import gaussian_blur, gaussian_kernel1d

from .reference import score_maps


@pytest.mark.parametrize("sigma", [0.7, 2.0, 4.0, 6.5])
@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 17, 40), (1, 9, 11)])
def test_gaussian_blur_matches_scipy(sigma: float, shape: tuple[int, int, int]) -> None:
    """Same kernel, truncation and 'reflect' border as scipy, including kernels wider than the map."""
    rng = np.random.default_rng(0)
    maps = rng.random(shape).astype(np.float32)
    ours = gaussian_blur(torch.from_numpy(maps), sigma).numpy()
    ref = np.stack([gaussian_filter(m.astype(np.float64), sigma, mode="reflect", truncate=4.0) for m in maps])
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_kernel_is_scipys() -> None:
    k = gaussian_kernel1d(2.0, 4.0).numpy()
    assert k.shape == (17,) and abs(k.sum() - 1) < 1e-12
    impulse = np.zeros(41)
    impulse[20] = 1
    np.testing.assert_allclose(gaussian_filter(impulse, 2.0)[12:29], k, atol=1e-12)


def test_sigma_zero_is_identity() -> None:
    maps = torch.rand(2, 8, 8)
    assert torch.equal(gaussian_blur(maps, 0.0), maps)


def test_reconstruction_error_is_channel_mean_of_squares() -> None:
    x = torch.zeros(1, 3, 2, 2)
    r = torch.zeros(1, 3, 2, 2)
    r[0, :, 0, 1] = torch.tensor([0.3, 0.0, 0.6])
    err = reconstruction_error(x, r)
    assert err.shape == (1, 2, 2)
    assert err[0, 0, 1].item() == pytest.approx((0.09 + 0.36) / 3)
    assert err.sum().item() == pytest.approx((0.09 + 0.36) / 3)


def test_planted_defect_ranks_highest() -> None:
    """Against a clean reconstruction, the defect pixels get the highest scores and its image the top score."""
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(4, 3, 48, 48, generator=g)
    recon = clean + 0.02 * torch.randn(clean.shape, generator=g)  # a good, imperfect reconstruction
    images = clean.clone()
    images[2, :, 20:26, 30:36] = 1.0 - images[2, :, 20:26, 30:36]  # the planted defect
    scores = score_maps(images, recon, sigma=2.0)
    assert scores.maps.shape == (4, 48, 48)
    assert int(scores.image.argmax()) == 2
    peak = int(scores.maps[2].argmax())
    assert 20 <= peak // 48 < 26 and 30 <= peak % 48 < 36
    torch.testing.assert_close(scores.image, scores.maps.flatten(1).amax(1))


class _BlankTopLeft(torch.nn.Module):
    """A 'reconstruction' that blanks the top-left quarter of what it is given: its error sits in that corner of each
    view."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = images.clone()
        h, w = images.shape[-2] // 2, images.shape[-1] // 2
        out[..., :h, :w] = 0
        return out


class _Zeros(torch.nn.Module):
    """Reconstructs every image as black."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(images)


class _CellMax(torch.nn.Module):
    """A token-like map: each 4 x 4 cell of the view gets its brightest pixel's value, (B, H, W)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cells = F.max_pool2d(images.mean(dim=1, keepdim=True), 4)  # (B, 1, H / 4, W / 4)
        return F.interpolate(cells, scale_factor=4, mode="nearest").squeeze(1)


def test_test_shift_moves_each_views_map_back_onto_the_image() -> None:
    from anovit.config import ScoreConfig
    from anovit.scoring.maps import combined_map

    images = torch.zeros(1, 3, 16, 16)
    images[..., 9, 9] = 1.0  # one bright pixel in the 4 x 4 cell of rows and columns 8-11
    one_view = combined_map(_CellMax(), images, ScoreConfig(sigma=0.0, kinds=("tokens",)))
    want = torch.zeros(1, 16, 16)
    want[:, 8:12, 8:12] = 1.0
    torch.testing.assert_close(one_view, want)
    # every view shifted by 2 px puts the pixel in another cell; moved back, each lights rows and columns 6-9
    shifted = combined_map(_CellMax(), images, ScoreConfig(sigma=0.0, kinds=("tokens",), test_shift=2))
    want = torch.zeros(1, 16, 16)
    want[:, 6:10, 6:10] = 1.0
    torch.testing.assert_close(shifted, want)


def test_test_shift_leaves_a_pixelwise_map_as_it_was_inside_the_border() -> None:
    from anovit.config import ScoreConfig
    from anovit.scoring.maps import combined_map

    images = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    both = [
        combined_map(_Zeros(), images, ScoreConfig(sigma=0.0, kinds=("l2",), test_shift=shift)) for shift in (0, 3)
    ]  # l2 against a blank reconstruction: each pixel's own mean square
    torch.testing.assert_close(both[1][:, 3:-3, 3:-3], both[0][:, 3:-3, 3:-3])
    assert not torch.allclose(both[1], both[0])  # the strips a view did not see are filled in


@pytest.mark.parametrize(
    ("flips", "quarters"),  # the expected mean error in the (top-left, top-right, bottom-left, bottom-right) quarter
    [("none", (1, 0, 0, 0)), ("h", (0.5, 0.5, 0, 0)), ("v", (0.5, 0, 0.5, 0)), ("hv", (0.25, 0.25, 0.25, 0.25))],
)
def test_test_flips_average_each_views_map_flipped_back(flips: str, quarters: tuple[float, ...]) -> None:
    from anovit.config import ScoreConfig
    from anovit.scoring.maps import combined_map, score_batch

    images = torch.ones(2, 3, 8, 10)
    cfg = ScoreConfig(sigma=0.0, kinds=("l2",), test_flips=flips)
    maps = combined_map(_BlankTopLeft(), images, cfg)  # (2, 8, 10)
    assert maps.shape == (2, 8, 10)
    got = [maps[:, :4, :5], maps[:, :4, 5:], maps[:, 4:, :5], maps[:, 4:, 5:]]
    for quarter, want in zip(got, quarters):
        torch.testing.assert_close(quarter, torch.full_like(quarter, want))
    scores = score_batch(_BlankTopLeft(), images, cfg)
    torch.testing.assert_close(scores.image, torch.full((2,), float(max(quarters))))


class _TwoMaps(torch.nn.Module):
    """A model that gives a map to localise with and one to judge the image by (B, 2, H, W), as the token decoder
    does when it localises without the massive channels: the cell map of :class:`_CellMax`, and its square."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cells = _CellMax()(images)  # (B, H, W)
        return torch.stack([cells, cells.square()], dim=1)


class _OneOf(torch.nn.Module):
    def __init__(self, which: int) -> None:
        super().__init__()
        self.which = which

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return _TwoMaps()(images)[:, self.which]


@pytest.mark.parametrize(("shift", "flips"), [(0, "none"), (2, "none"), (2, "hv")])
def test_a_model_with_two_maps_is_judged_by_its_second_and_shows_its_first(shift: int, flips: str) -> None:
    """Each of the two maps goes through the views, moves and smoothing as a lone map would; the scores' map is the
    first, the image score is read from the second."""
    from anovit.config import ScoreConfig
    from anovit.scoring.maps import image_scores, score_batch

    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cfg = ScoreConfig(sigma=1.5, kinds=("tokens",), test_shift=shift, test_flips=flips, image_score="top1+std")
    both = score_batch(_TwoMaps(), images, cfg)
    first, second = score_batch(_OneOf(0), images, cfg), score_batch(_OneOf(1), images, cfg)
    assert both.maps.shape == (3, 16, 16)
    torch.testing.assert_close(both.maps, first.maps)
    torch.testing.assert_close(both.image, second.image)
    torch.testing.assert_close(both.image, image_scores(second.maps, 0.0, "top1+std"))
    assert not torch.allclose(both.image, first.image)
