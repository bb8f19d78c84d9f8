"""Never lose work: resume after a kill, safe checkpoints, NaN losses; DDP over two CPU processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from anovit.config import ScoreConfig, TrainConfig
from anovit.data import ImageDataset, mvtec_samples
from anovit.errors import InputError, TrainingDiverged
from anovit.evaluation.evaluate import evaluate
from anovit.models import build_model
from anovit.models.checkpoint import load_weights
from anovit.training.loop import fit

from .conftest import tiny_model_config

CPU = torch.device("cpu")


def _data(root: Path) -> tuple[ImageDataset, ImageDataset]:
    train = ImageDataset(mvtec_samples(root, "weave", "train"), 32, progress=False)
    test = ImageDataset(mvtec_samples(root, "weave", "test"), 32, progress=False)
    return train, test


def _augmenting(ds: ImageDataset) -> ImageDataset:
    from anovit.config import DataConfig
    from anovit.data.transforms import build_augment

    return ds.subset(range(len(ds)), augment=build_augment(DataConfig()))  # random state matters for resume


@pytest.mark.parametrize(
    "model, objective, segment_head",
    [
        ("cae", "reconstruct", False),
        ("anovit", "restore", True),
    ],  # restore: synthetic anomalies drawn from the saved generator
)
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(
    mvtec_root: Path, tmp_path: Path, model: str, objective: str, segment_head: bool
) -> None:
    train, _ = _data(mvtec_root)
    cfg = TrainConfig(epochs=4, batch_size=4, lr=1e-3, seed=5, precision="fp32", objective=objective)
    model_cfg = replace(tiny_model_config(model), segment_head=segment_head)
    torch.manual_seed(0)
    whole = build_model(model_cfg)
    fit(whole, _augmenting(train), train.subset(range(3)), cfg, CPU, run_dir=tmp_path / "a", progress=False)

    torch.manual_seed(0)
    first = build_model(model_cfg)
    fit(
        first,
        _augmenting(train),
        train.subset(range(3)),
        replace(cfg, epochs=2),
        CPU,
        run_dir=tmp_path / "b",
        progress=False,
    )
    resumed = build_model(model_cfg)  # a fresh init: everything comes from the checkpoint
    history = fit(
        resumed,
        _augmenting(train),
        train.subset(range(3)),
        cfg,
        CPU,
        run_dir=tmp_path / "b",
        progress=False,
        resume=True,
    )
    assert [h.epoch for h in history] == [1, 2, 3, 4]
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert any(k.startswith("segmenter.") for k in a) == segment_head
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


EPOCHS = 100


def _train_cmd(root: Path, run: Path, epochs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "anovit",
        "-q",
        "train",
        "--data",
        str(root),
        "--category",
        "weave",
        "--model",
        "cae",
        "--image-size",
        "32",
        "--epochs",
        str(epochs),
        "--batch-size",
        "4",
        "--seed",
        "3",
        "--out",
        str(run),
    ]


def test_kill_mid_run_then_resume(mvtec_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(mvtec_root, run, EPOCHS), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = run / "log.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 4):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(log.read_text().splitlines()) - 1
    assert 3 <= done < EPOCHS, "the run should have been killed mid-way"
    assert not (run / "model.safetensors").exists()
    torch.load(run / "checkpoint.pt", weights_only=True)  # the checkpoint on disk is whole

    out = subprocess.run([*_train_cmd(mvtec_root, run, EPOCHS), "--resume"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    epochs = [int(line.split(",")[0]) for line in log.read_text().splitlines()[1:]]
    assert epochs == list(range(1, EPOCHS + 1))
    assert (run / "model.safetensors").is_file()
    # A finished run is not overwritten; --resume on it is refused unless asked for more epochs (to train longer).
    again = subprocess.run(_train_cmd(mvtec_root, run, EPOCHS), capture_output=True, text=True)
    assert again.returncode == 2 and "--force" in again.stderr
    again = subprocess.run([*_train_cmd(mvtec_root, run, EPOCHS), "--resume"], capture_output=True, text=True)
    assert again.returncode == 2 and f"finished its {EPOCHS} epochs" in again.stderr
    longer = subprocess.run([*_train_cmd(mvtec_root, run, EPOCHS + 2), "--resume"], capture_output=True, text=True)
    assert longer.returncode == 0, longer.stderr
    assert len(log.read_text().splitlines()) - 1 == EPOCHS + 2 and not (run / "best.safetensors").exists()


def test_corrupt_or_foreign_checkpoints_are_named(tmp_path: Path, mvtec_root: Path) -> None:
    anovit = build_model(tiny_model_config("anovit"))
    cae = build_model(tiny_model_config("cae"))
    path = tmp_path / "cae.safetensors"
    save_file({k: v.contiguous() for k, v in cae.state_dict().items()}, str(path))
    with pytest.raises(InputError, match="cae.safetensors: weights do not belong to this model configuration"):
        load_weights(anovit, path)
    bigger = build_model(tiny_model_config("cae", image_size=64))
    with pytest.raises(InputError, match="has shape"):
        load_weights(bigger, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_weights(cae, path)
    train, _ = _data(mvtec_root)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="checkpoint.pt: cannot resume from this file"):
        fit(
            cae,
            train,
            None,
            TrainConfig(epochs=1, precision="fp32"),
            CPU,
            run_dir=tmp_path / "run",
            progress=False,
            resume=True,
        )


class _NaNAfter(torch.nn.Module):
    """Wraps a model; from the ``n``-th training forward on, its output is NaN."""

    def __init__(self, model: torch.nn.Module, n: int) -> None:
        super().__init__()
        self.model, self.n, self.calls = model, n, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
        out = self.model(x)
        return out * float("nan") if self.training and self.calls >= self.n else out


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(mvtec_root: Path, tmp_path: Path) -> None:
    train, _ = _data(mvtec_root)
    model = _NaNAfter(build_model(tiny_model_config("cae")), n=7)  # 3 steps an epoch: NaN in epoch 3
    with pytest.raises(
        TrainingDiverged, match=r"at step 6 \(epoch 3\); training stopped; the last good checkpoint \(epoch 2\)"
    ):
        fit(
            model,
            train,
            None,
            TrainConfig(epochs=5, batch_size=4, precision="fp32"),
            CPU,
            run_dir=tmp_path,
            progress=False,
        )
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_one_class_test_split_reports_null_with_reason(mvtec_root: Path) -> None:
    _, test = _data(mvtec_root)
    normals = test.subset([i for i, s in enumerate(test.samples) if s.label == 0])
    result = evaluate(build_model(tiny_model_config("cae")), normals, ScoreConfig(), CPU, progress=False)
    metrics = result.metrics()
    assert metrics["image_auroc"] is None and "only normal images" in metrics["notes"][0]
    assert metrics["n_images"] == len(normals)


# ---------------------------------------------------------------------------------------------
# DistributedDataParallel: two CPU processes with gloo
# ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join_gloo(rank: int, world: int, port: int) -> None:
    """Join a two-process CPU group on 127.0.0.1 (one thread each: the two share this machine's cores)."""
    import torch.distributed as tdist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", rank=rank, world_size=world)


def _ddp_worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    import torch.distributed as tdist

    _join_gloo(rank, world, port)
    try:
        train, test = _data(Path(root))
        torch.manual_seed(0)
        model = build_model(tiny_model_config("anovit"))
        cfg = TrainConfig(epochs=2, batch_size=2, lr=1e-3, seed=0, precision="fp32")
        fit(model, train, train.subset(range(3)), cfg, CPU, run_dir=Path(out) / "run", progress=False)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.safetensors")
        result = evaluate(model, test, ScoreConfig(sigma=1.0), CPU, progress=False)
        torch.save(
            {
                "scores": torch.from_numpy(result.image_scores),
                "image_auroc": result.image_auroc,
                "pixel_auroc": result.pixel_auroc,
            },
            f"{out}/eval{rank}.pt",
        )
    finally:
        tdist.destroy_process_group()


def test_ddp_two_ranks_identical_weights_and_sharded_eval_equals_single(mvtec_root: Path, tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(mvtec_root), str(tmp_path)), nprocs=2, join=True)
    w0, w1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for key in w0:
        torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=0, msg=key)
    assert (tmp_path / "run" / "model.safetensors").is_file()  # written once, by rank 0
    e0, e1 = (torch.load(tmp_path / f"eval{r}.pt", weights_only=True) for r in (0, 1))
    assert e0["image_auroc"] == e1["image_auroc"] and e0["pixel_auroc"] == e1["pixel_auroc"]

    _, test = _data(mvtec_root)
    model = build_model(tiny_model_config("anovit"))
    model.load_state_dict(w0)
    single = evaluate(model, test, ScoreConfig(sigma=1.0), CPU, progress=False)
    torch.testing.assert_close(e0["scores"], torch.from_numpy(single.image_scores), rtol=1e-5, atol=1e-7)
    assert e0["image_auroc"] == pytest.approx(single.image_auroc, abs=1e-9)
    assert e0["pixel_auroc"] == pytest.approx(single.pixel_auroc, abs=1e-9)


def test_torchrun_runs_the_same_train_command(mvtec_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "anovit",
        "-q",
        "train",
        "--data",
        str(mvtec_root),
        "--category",
        "weave",
        "--model",
        "cae",
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--out",
        str(run),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    ours = [
        ln for ln in out.stderr.splitlines() if ln[:1] not in "WEI" or "anovit" in ln
    ]  # without torchrun's own log lines
    assert out.returncode == 0, "\n".join(ours)[-3000:] + "\n---\n" + out.stderr[-1500:]
    assert len((run / "log.csv").read_text().splitlines()) == 3 and (run / "model.safetensors").is_file()


class _StopAt(torch.nn.Module):
    """Wraps a model; its ``n``-th training forward raises KeyboardInterrupt (a kill mid-epoch)."""

    def __init__(self, model: torch.nn.Module, n: int = 10**9) -> None:
        super().__init__()
        self.model, self.n, self.calls = model, n, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        if self.calls >= self.n:
            raise KeyboardInterrupt
        return self.model(x)


def test_checkpoint_every_n_holds_no_best_weights_and_resumes_exactly(mvtec_root: Path, tmp_path: Path) -> None:
    train, _ = _data(mvtec_root)
    val = train.subset(range(3))
    cfg = TrainConfig(epochs=5, batch_size=4, lr=1e-3, seed=5, precision="fp32", checkpoint_every=2)
    torch.manual_seed(0)
    whole = _StopAt(build_model(tiny_model_config("cae")))
    fit(whole, _augmenting(train), val, cfg, CPU, run_dir=tmp_path / "a", progress=False)
    assert not (tmp_path / "a" / "best.safetensors").exists()  # renamed model.safetensors at the end

    torch.manual_seed(0)
    killed = _StopAt(build_model(tiny_model_config("cae")), n=3 * 3 + 2)  # 3 steps an epoch: killed in epoch 4
    with pytest.raises(KeyboardInterrupt):
        fit(killed, _augmenting(train), val, cfg, CPU, run_dir=tmp_path / "b", progress=False)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and "best_weights" not in state  # every 2 epochs, and no second copy of the weights
    assert len((tmp_path / "b" / "log.csv").read_text().splitlines()) == 1 + 3  # the log has every finished epoch
    best = load_file(str(tmp_path / "b" / "best.safetensors"))
    assert set(best) == set(killed.state_dict()) and not (tmp_path / "b" / "model.safetensors").exists()

    resumed = _StopAt(build_model(tiny_model_config("cae")))
    history = fit(resumed, _augmenting(train), val, cfg, CPU, run_dir=tmp_path / "b", progress=False, resume=True)
    assert [h.epoch for h in history] == [1, 2, 3, 4, 5]
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)

    never = TrainConfig(**{**cfg.__dict__, "epochs": 2, "checkpoint_every": 0})
    fit(_StopAt(build_model(tiny_model_config("cae"))), train, val, never, CPU, run_dir=tmp_path / "c", progress=False)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["log.csv", "model.safetensors"]


def _ddp_nan_worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    """Rank 1 alone sees a NaN loss at its 4th step; every rank must stop there with the same message."""
    import torch.distributed as tdist

    from anovit.errors import TrainingDiverged

    _join_gloo(rank, world, port)
    try:
        train, _ = _data(Path(root))
        torch.manual_seed(0)
        model = _NaNAfter(build_model(tiny_model_config("cae")), n=4 if rank == 1 else 10**9)
        cfg = TrainConfig(epochs=5, batch_size=2, lr=1e-3, seed=0, precision="fp32")
        try:
            fit(model, train, None, cfg, CPU, run_dir=Path(out) / "run", progress=False)
            message = "finished"
        except TrainingDiverged as exc:
            message = str(exc)
        Path(out, f"rank{rank}.txt").write_text(message)
    finally:
        tdist.destroy_process_group()


def test_ddp_nan_on_one_rank_stops_every_rank_with_the_same_message(mvtec_root: Path, tmp_path: Path) -> None:
    ctx = mp.start_processes(
        _ddp_nan_worker,
        args=(2, _free_port(), str(mvtec_root), str(tmp_path)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.time() + 180
    while not ctx.join(timeout=1):
        if time.time() > deadline:  # the bug this guards against: the healthy rank waits forever
            for p in ctx.processes:
                p.kill()
            pytest.fail("a rank hung after the other saw a NaN loss")
    messages = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert messages[0] == messages[1], messages
    assert (
        "the loss became nan on rank 1 at step 3 (epoch 2); training stopped; the last good checkpoint (epoch 1)"
        in messages[0]
    )
