"""The learning-rate schedule: a warm-up, a cosine decay to 0 at the run's last step, the same after a resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from anovit.config import TrainConfig
from anovit.data import ImageDataset, mvtec_samples
from anovit.models import build_model
from anovit.resolve import resolve_config
from anovit.training.loop import fit, lr_factor

from .conftest import tiny_model_config
from .test_resume_and_ddp import _augmenting, _StopAt

CPU = torch.device("cpu")


def test_cosine_factor_warms_up_then_decays_to_zero() -> None:
    total = 200
    cosine = [lr_factor("cosine", s, total) for s in range(total)]
    warmup = 10  # 5 % of the steps
    assert cosine[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert cosine[warmup] == pytest.approx(1.0) and cosine[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(cosine[warmup:], cosine[warmup + 1 :]))  # never rises after the warm-up
    assert cosine[warmup + (total - 1 - warmup) // 2] == pytest.approx(0.5, abs=0.01)  # half-way down at mid-decay
    assert {lr_factor("constant", s, total) for s in range(total)} == {1.0}
    assert resolve_config(lr_schedule="cosine").train.lr_schedule == "cosine"


def test_a_cosine_run_steps_on_the_schedule_and_resumes_exactly(
    mvtec_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = ImageDataset(mvtec_samples(mvtec_root, "weave", "train"), 32, progress=False)
    val = train.subset(range(3))
    cfg = TrainConfig(epochs=4, batch_size=4, lr=1e-3, seed=5, precision="fp32", lr_schedule="cosine")
    used: list[float] = []
    adam_step = torch.optim.Adam.step

    def recording_step(self: torch.optim.Adam, *args: object, **kwargs: object) -> object:
        used.append(self.param_groups[0]["lr"])
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    torch.manual_seed(0)
    whole = _StopAt(build_model(tiny_model_config("cae")))  # the same parameter names as the resumed model's
    fit(whole, _augmenting(train), val, cfg, CPU, run_dir=tmp_path / "a", progress=False)
    total = len(used)
    assert total == 4 * (len(train) // 4)  # every step of the run went through the optimiser
    assert used == pytest.approx([1e-3 * lr_factor("cosine", s, total) for s in range(total)])

    per_epoch = total // 4
    torch.manual_seed(0)
    killed = _StopAt(build_model(tiny_model_config("cae")), n=2 * per_epoch + 2)  # killed in epoch 3
    with pytest.raises(KeyboardInterrupt):
        fit(killed, _augmenting(train), val, cfg, CPU, run_dir=tmp_path / "b", progress=False)
    used.clear()
    resumed = _StopAt(build_model(tiny_model_config("cae")))  # a fresh init: everything comes from the checkpoint
    fit(resumed, _augmenting(train), val, cfg, CPU, run_dir=tmp_path / "b", progress=False, resume=True)
    assert used == pytest.approx([1e-3 * lr_factor("cosine", s, total) for s in range(2 * per_epoch, total)])
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
