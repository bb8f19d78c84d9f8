"""The tokens objective's targets encoded once per view (anovit.training.token_cache): when, what and with what
loss."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.utils.data import Dataset

from anovit.config import TrainConfig
from anovit.models import TokenAnoViT
from anovit.training.loop import fit
from anovit.training.token_cache import affordable_views, cache_targets, cached_views

TINY = {"embed_dim": 32, "depth": 4, "num_heads": 2}


class _Images(Dataset):
    """n random images (3, 32, 32); ``flip``: each read flipped left-right at random (an augmentation)."""

    cached = True

    def __init__(self, n: int, flip: bool) -> None:
        self.images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(n))
        self.flip = flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.images[i]
        return {"image": x.flip(-1) if self.flip and torch.rand(()) < 0.5 else x}


def _model(layers: tuple[int, ...] = (0, 1, 2)) -> TokenAnoViT:
    torch.manual_seed(0)
    return TokenAnoViT(32, "vit_tiny_patch16_224", 8, layers=layers, depth=2, dropout=0.0, encoder_overrides=TINY)


def test_views_are_cached_only_where_training_reads_each_image_more_often() -> None:
    tokens = TrainConfig(objective="tokens", token_views=8, epochs=60)
    assert cached_views(tokens) == 8
    assert cached_views(replace(tokens, epochs=8)) == 0  # as many reads as views: nothing to save
    assert cached_views(replace(tokens, token_views=0)) == 0
    assert cached_views(replace(tokens, objective="restore")) == 0


def test_the_cache_keeps_to_its_memory_budget() -> None:
    """10 images of (2, 196, 192) targets in fp16: 1.5 MB a view."""
    per_view = 10 * 2 * 196 * 192 * 2
    assert affordable_views(8, 10, (2, 196, 192), budget=8 * per_view) == 8
    assert affordable_views(8, 10, (2, 196, 192), budget=3 * per_view + 1) == 3
    assert affordable_views(8, 10, (2, 196, 192), budget=per_view) == 0  # one view: no augmentation left
    assert affordable_views(1, 10, (2, 196, 192), budget=per_view) == 1  # one asked for (no augmentation): kept
    assert affordable_views(1, 10, (2, 196, 192), budget=per_view - 1) == 0


def test_cached_targets_give_the_loss_and_map_the_images_give() -> None:
    """Three target blocks in two groups (2 + 1): the decoder's input, rebuilt from the group means, is the mean over
    the three blocks, so the loss on cached targets is the loss on the images."""
    model = _model().eval()
    images = torch.rand(2, 3, 32, 32)
    targets = model.targets(images)  # (2, G, N, D)
    assert targets.shape == (2, 2, 16, 32)
    grids = [g.flatten(2).transpose(1, 2) for g in model.encoder(images)]
    x = model.bottleneck(torch.stack(grids).mean(0))  # the decoder's first input, from the three blocks
    for block in model.decoder:
        x = block(x)
    torch.testing.assert_close(model.decode(targets)[0], x)
    for share in (0.0, 0.9):
        torch.testing.assert_close(model.loss(targets, share, cached=True), model.loss(images, share))


def test_each_view_draws_the_augmentation_anew() -> None:
    model = _model()
    torch.manual_seed(1)
    cache = cache_targets(model, _Images(6, flip=True), 4, 4, torch.device("cpu"), "fp32", progress=False)
    assert cache.targets.shape == (6, 4, 2, 16, 32) and cache.targets.dtype == torch.float16
    views = cache.targets.float()
    assert not all(torch.equal(views[:, 0], views[:, v]) for v in range(1, 4))  # some image flipped in some view
    plain = cache_targets(model, _Images(6, flip=False), 2, 4, torch.device("cpu"), "fp32", progress=False)
    torch.testing.assert_close(plain.targets[:, 0], plain.targets[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(plain.targets[:, 0].float(), model.targets(_Images(6, False).images), atol=2e-3, rtol=0)
    item = cache[3]["tokens"]
    assert item.dtype == torch.float32 and any(torch.equal(item, views[3, v]) for v in range(4))


@pytest.mark.parametrize(
    ("token_views", "augmented", "encoder_passes"), [(2, True, 2 * 3 + 1), (0, True, 4 * (3 + 1)), (2, False, 3 + 1)]
)
def test_fit_runs_the_encoder_once_per_view(token_views: int, augmented: bool, encoder_passes: int) -> None:
    """12 training images in batches of 4, 4 epochs, 4 hold-out images: with 2 views cached, the encoder sees the
    training set twice and the hold-out once; without, both in every epoch; a training set without augmentation
    (``augment`` None, as a run's with --no-augment) is encoded once, its views being all alike."""
    model = _model()
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    cfg = TrainConfig(objective="tokens", token_views=token_views, epochs=4, batch_size=4, lr=1e-2, precision="fp32")
    train = _Images(12, flip=augmented)
    train.augment = (lambda x: x) if augmented else None
    history = fit(model, train, _Images(4, flip=False), cfg, torch.device("cpu"), progress=False)
    assert len(calls) == encoder_passes
    assert len(history) == 4 and history[-1].train_loss < 0.9 * history[0].train_loss  # it learns (1.09 -> 0.69)


def test_a_resumed_run_trains_on_the_same_views(tmp_path) -> None:
    """The cache is built from the run's seed before a resume restores the random state: 3 epochs, then a 4th
    resumed, give the weights of 4 epochs in one go."""
    from safetensors.torch import load_file

    cfg = TrainConfig(objective="tokens", token_views=2, epochs=4, batch_size=4, lr=1e-3, seed=5, precision="fp32")
    fit(_model(), _Images(12, flip=True), _Images(4, flip=False), cfg, torch.device("cpu"), tmp_path / "a", False)
    fit(
        _model(),
        _Images(12, True),
        _Images(4, False),
        replace(cfg, epochs=3),
        torch.device("cpu"),
        tmp_path / "b",
        False,
    )
    fresh = _model()
    history = fit(fresh, _Images(12, True), _Images(4, False), cfg, torch.device("cpu"), tmp_path / "b", False, True)
    assert [h.epoch for h in history] == [1, 2, 3, 4]
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def _ddp_tokens_worker(rank: int, world: int, port: int, out: str) -> None:
    from tests.test_resume_and_ddp import _join_gloo

    _join_gloo(rank, world, port)
    try:
        cfg = TrainConfig(objective="tokens", token_views=2, epochs=3, batch_size=2, lr=1e-3, precision="fp32")
        model = _model()
        history = fit(model, _Images(12, flip=True), _Images(4, flip=False), cfg, torch.device("cpu"), progress=False)
        torch.save({"weights": model.state_dict(), "losses": [h.train_loss for h in history]}, f"{out}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_train_on_their_shards_of_the_cache(tmp_path) -> None:
    """Under DistributedDataParallel each rank builds the cache and reads its shard: both end with the same weights
    and the same (all-reduced) losses."""
    import torch.multiprocessing as mp

    from tests.test_resume_and_ddp import _free_port

    mp.spawn(_ddp_tokens_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["losses"] == r1["losses"] and len(r0["losses"]) == 3
    for key, value in r0["weights"].items():
        torch.testing.assert_close(value, r1["weights"][key], rtol=0, atol=0, msg=key)
