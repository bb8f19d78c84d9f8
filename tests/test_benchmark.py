"""``anovit benchmark`` end to end on tiny fixtures: the three result files, their schema, resuming."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest

from anovit.cli import main
from anovit.config import RunConfig
from anovit.errors import InputError
from anovit.experiments.benchmark import benchmark_config, config_changes
from anovit.experiments.tables import build_results, results_markdown
from anovit.one_class_rule import SEMANTIC_MIN_STEPS, SEMANTIC_PIXEL_PRESET, SEMANTIC_TOKEN_STEPS, OneClassImages
from anovit.presets import DEFAULT_PRESET, PRESETS

from .test_oneclass import make_mnist

TINY = ["--preset", "small", "--image-size", "32", "--epochs", "1"]


def _check_schema(results: dict, dataset: str, models: list[str], categories: list[str], out: Path) -> None:
    """The tables' schema, each figure the one its run measured (runs/CATEGORY/MODEL/metrics.json)."""
    assert results["dataset"] == dataset and results["models"] == models
    assert [r["category"] for r in results["rows"]] == categories
    for row in results["rows"]:
        for m in models:
            assert set(row[m]) == {"image_auroc", "pixel_auroc"}
            measured = json.loads((out / "runs" / row["category"] / m / "metrics.json").read_text())
            assert row[m] == {k: measured[k] for k in ("image_auroc", "pixel_auroc")}
    for m in models:
        s = results["summary"][m]
        assert {"image_auroc_mean", "image_auroc_std", "pixel_auroc_mean"} <= set(s)
        assert isinstance(s["image_auroc_mean"], float) and isinstance(s["image_auroc_std"], float)


def test_mnist_benchmark_writes_three_files_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_mnist(tmp_path / "mnist", n_train_per_class=10, n_test_per_class=2)
    out = tmp_path / "bench"
    args = [
        "-q",
        "benchmark",
        "--dataset",
        "mnist",
        "--data",
        str(tmp_path / "mnist"),
        "--models",
        "anovit,cae",
        "--classes",
        "0,7",
        *TINY,
        "--out",
        str(out),
    ]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    _check_schema(results, "mnist", ["anovit", "cae"], ["0", "7"], out)
    assert all(r[m]["pixel_auroc"] is None for r in results["rows"] for m in ("anovit", "cae"))
    assert results["summary"]["anovit"]["pixel_auroc_mean"] is None
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and rows[0]["paper_image_auroc"] in ("0.9800", "0.9380")  # Table 2, class 0
    md = (out / "results.md").read_text()
    assert "| Class | 0 |" in md and "Relative Improvement" in md and "paper AnoViT" in md and "| mean |" in md
    assert "0.980" in md and "0.924" in md  # the paper's class-0 and mean AnoViT AUROC beside ours

    weights = out / "runs" / "0" / "anovit" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    (out / "runs" / "7" / "cae" / "metrics.json").unlink()  # as if killed before this run finished
    assert main(args) == 0
    assert weights.stat().st_mtime_ns == stamp  # finished runs are not trained again
    assert (out / "runs" / "7" / "cae" / "metrics.json").is_file()
    assert [r["category"] for r in json.loads((out / "results.json").read_text())["rows"]] == ["0", "7"]

    # a request written before a setting existed asked for that setting's old behaviour: not trained again
    request = out / "runs" / "0" / "anovit" / "benchmark.json"
    older = json.loads(request.read_text())
    assert older["train"].pop("lr_schedule") == "constant"
    request.write_text(json.dumps(older))
    assert main(args) == 0
    assert weights.stat().st_mtime_ns == stamp

    # the l2-CAE has no encoder: another encoder file asked for is the same l2-CAE; for AnoViT it is another model
    for model, retrained in (("cae", False), ("anovit", True)):
        request = out / "runs" / "7" / model / "benchmark.json"
        asked = json.loads(request.read_text())
        assert config_changes(request.parent, RunConfig.from_dict(asked)) == []
        other = asked | {"model": asked["model"] | {"encoder_weights": "/elsewhere/vit.safetensors", "patch_size": 8}}
        request.write_text(json.dumps(other))
        assert bool(config_changes(request.parent, RunConfig.from_dict(asked))) == retrained

    # asked for other settings, a finished run is trained again rather than quoted under them
    assert main([*args, "--sigma", "3.5"]) == 0
    assert weights.stat().st_mtime_ns != stamp
    assert json.loads((out / "runs" / "0" / "anovit" / "config.json").read_text())["score"]["sigma"] == 3.5


def test_mvtec_benchmark_has_localisation_and_figure(mvtec_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert (
        main(
            [
                "-q",
                "benchmark",
                "--dataset",
                "mvtec",
                "--data",
                str(mvtec_root),
                "--models",
                "cae,anovit",
                *TINY,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    _check_schema(results, "mvtec", ["cae", "anovit"], ["weave"], out)
    assert results["rows"][0]["anovit"]["pixel_auroc"] is not None
    md = (out / "results.md").read_text()
    assert "Anomaly localisation (pixel AUROC)" in md and "Anomaly detection (image AUROC)" in md
    assert (
        "| Category | weave |" in md
    )  # not an MVTec AD category: neither Object nor Texture, and not a one-class "Class"
    assert (out / "figures" / "weave.png").stat().st_size > 1000
    assert not (out / "runs" / "weave" / "anovit" / "report.html").exists()
    # Asked again with --report: no retraining (the weights stay), a report per run.
    weights = (out / "runs" / "weave" / "anovit" / "model.safetensors").stat().st_mtime_ns
    assert (
        main(
            [
                "-q",
                "benchmark",
                "--dataset",
                "mvtec",
                "--data",
                str(mvtec_root),
                "--models",
                "cae,anovit",
                *TINY,
                "--report",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "runs" / "weave" / "anovit" / "model.safetensors").stat().st_mtime_ns == weights
    for m in ("cae", "anovit"):
        assert 'class="card' in (out / "runs" / "weave" / m / "report.html").read_text()


def test_other_encoder_with_prefix_tokens_trains(mvtec_root: Path, tmp_path: Path) -> None:
    """DeiT (class + distillation token) through the same command, on a tiny config."""
    run = tmp_path / "deit"
    assert (
        main(
            [
                "-q",
                "train",
                "--data",
                str(mvtec_root),
                "--category",
                "weave",
                "--model",
                "anovit",
                "--encoder",
                "deit_tiny_distilled_patch16_224",
                *TINY,
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert json.loads((run / "config.json").read_text())["model"]["encoder"] == "deit_tiny_distilled_patch16_224"
    assert main(["-q", "test", "--run", str(run), "--data", str(mvtec_root), "--category", "weave"]) == 0


def test_markdown_relative_improvement_and_object_texture_types() -> None:
    rows = [
        {
            "category": "bottle",
            "cae": {"image_auroc": 0.5, "pixel_auroc": 0.8},
            "anovit": {"image_auroc": 0.75, "pixel_auroc": 0.88},
        },
        {
            "category": "wood",
            "cae": {"image_auroc": 0.9, "pixel_auroc": 0.8},
            "anovit": {"image_auroc": 0.9, "pixel_auroc": 0.8},
        },
    ]
    md = results_markdown(build_results("mvtec", ["anovit", "cae"], rows))
    assert "| Object | bottle | 0.500 | 0.750 | +50.00% | 0.770 | 0.830 |" in md  # ours, then Table 4's
    assert "| Texture | wood | 0.900 | 0.900 | +0.00% |" in md
    assert "| mean | - | 0.700 | 0.825 | +17.86% |" in md


def test_categories_run_in_parallel_on_several_devices(mvtec_root: Path, tmp_path: Path) -> None:
    """--device cpu,cpu: two worker processes, one category each, same files as a serial run."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(mvtec_root / "weave", root / "weave")
    shutil.copytree(mvtec_root / "weave", root / "felt")
    out = tmp_path / "bench"
    args = [
        "-q",
        "benchmark",
        "--dataset",
        "mvtec",
        "--data",
        str(root),
        "--models",
        "cae",
        *TINY,
        "--device",
        "cpu,cpu",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["category"] for r in results["rows"]] == ["felt", "weave"]
    # identical data and seed: both workers must reach the same numbers
    assert results["rows"][0]["cae"] == results["rows"][1]["cae"]
    assert {p.name for p in (out / "figures").iterdir()} == {"felt.png", "weave.png"}


def test_one_rule_for_semantic_one_class_data() -> None:
    """The default's settings on one-class data follow what the images are (whole-image anomalies, not
    flip-invariant; drawings on a blank background or photographs), not which dataset holds them; what the user
    sets wins; MVTec AD and other presets keep theirs."""
    unset = dict(
        objective=None,
        score=None,
        test_masks=None,
        border=None,
        feature_layers=None,
        feature_loss=None,
        image_score=None,
        test_flips=None,
    )
    cases = (  # dataset, (side, blank share), the pixel variant's size
        ("digits", (8, 0.48), 32),
        ("mnist", (28, 0.82), 32),
        ("cifar10", (32, 0.0), 32),
        ("folder", (96, 0.05), 96),
        ("folder", (12, 0.1), 32),  # a small photograph stays a photograph
        ("folder", (64, 0.6), 64),  # sketches
    )
    for (dataset, kind, size), preset in itertools.product(cases, (DEFAULT_PRESET, SEMANTIC_PIXEL_PRESET)):
        images = OneClassImages(*kind)
        vit = benchmark_config(dataset, "anovit", preset, None, None, images=images, **unset)
        assert vit.score.image_score == "mean" and vit.score.border == 0, dataset
        assert vit.score.test_flips == "none" and not vit.data.hflip and not vit.data.vflip
        assert vit.score.test_shift == 0  # whole-image anomalies: no finer grid to gain, 4x the scoring
        if preset == DEFAULT_PRESET and not images.drawing:  # photographs: the frozen ViT's tokens, at 224 px
            assert vit.preset == DEFAULT_PRESET and vit.train.objective == "tokens", dataset
            assert vit.score.kinds == ("tokens",) and vit.model.token_decoder_depth > 0
            assert vit.data.image_size == vit.model.image_size == 224
            assert (vit.train.epochs, vit.train.min_steps) == (1, SEMANTIC_TOKEN_STEPS)  # steps, not 30 epochs
        else:  # pixels, inpainted at the native size: drawings, or asked for
            assert vit.preset == SEMANTIC_PIXEL_PRESET
            assert vit.data.image_size == vit.model.image_size == size, dataset
            assert vit.train.objective == "inpaint" and vit.score.test_masks == 4 and vit.model.token_decoder_depth == 0
            assert vit.score.kinds == ("l2", "feature") and (vit.train.epochs, vit.train.min_steps) == (
                1,
                SEMANTIC_MIN_STEPS,
            )
        cae = benchmark_config(dataset, "cae", preset, None, None, images=images, **unset)
        assert cae.data.image_size == max(size, 128) and cae.score.image_score == "mean" and not cae.data.hflip
        assert cae.train.objective == "reconstruct" and cae.train.min_steps == SEMANTIC_MIN_STEPS
        knn = benchmark_config(dataset, "knn", preset, None, None, images=images, **unset)
        assert knn.data.image_size == 224 and knn.score.image_score == "mean"
    photos = OneClassImages(32, 0.0)
    for preset in (DEFAULT_PRESET, SEMANTIC_PIXEL_PRESET):  # --epochs: what the user asked for, exactly
        timed = benchmark_config("cifar10", "anovit", preset, 5, None, images=photos, **unset)
        assert (timed.train.epochs, timed.train.min_steps) == (5, 0)
    assert benchmark_config("folder", "anovit", DEFAULT_PRESET, None, None, **unset).train.objective == "tokens"
    big = benchmark_config(
        "folder", "anovit", SEMANTIC_PIXEL_PRESET, None, None, images=OneClassImages(1000, 0), **unset
    )
    assert big.data.image_size == 224
    digits = OneClassImages(8, 0.48)
    mine = benchmark_config(
        "digits", "anovit", "tiny", None, 64, images=digits, **{**unset, "image_score": "max", "objective": "restore"}
    )
    assert (mine.data.image_size, mine.score.image_score, mine.train.objective) == (64, "max", "restore")
    mine = benchmark_config(
        "mnist", "anovit", DEFAULT_PRESET, None, 112, images=digits, **{**unset, "image_score": "top1"}
    )
    assert (mine.data.image_size, mine.score.image_score, mine.train.objective) == (112, "top1", "inpaint")
    mine = benchmark_config(
        "cifar10", "anovit", DEFAULT_PRESET, None, 112, images=photos, **{**unset, "image_score": "max"}
    )
    assert (mine.data.image_size, mine.score.image_score, mine.train.objective) == (112, "max", "tokens")
    tokens = benchmark_config(
        "mnist", "anovit", DEFAULT_PRESET, None, None, images=digits, **{**unset, "objective": "tokens"}
    )
    assert tokens.preset == DEFAULT_PRESET and tokens.score.kinds == ("tokens",) and tokens.data.image_size == 224
    for dataset, preset in (("mvtec", "tiny"), ("mvtec", DEFAULT_PRESET), ("digits", "small")):
        other = benchmark_config(dataset, "anovit", preset, None, None, **unset)
        assert other.score.image_score == PRESETS[preset].score.image_score
        assert other.train.epochs == PRESETS[preset].train.epochs


def test_one_class_rule_without_weights_trains_the_pixel_variant_from_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    import anovit.models.weights as weights_mod

    unset = dict(objective=None, score=None, image_score=None, test_flips=None)
    found = benchmark_config(
        "cifar10", "anovit", DEFAULT_PRESET, None, None, find_weights=False, images=OneClassImages(32, 0.0), **unset
    )
    assert found.train.objective == "tokens"
    monkeypatch.delenv(weights_mod.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(weights_mod, "hub_weights", lambda encoder: None)  # offline, nothing cached
    cfg = benchmark_config(
        "cifar10", "anovit", DEFAULT_PRESET, None, None, find_weights=True, images=OneClassImages(32, 0.0), **unset
    )
    assert cfg.preset == "scratch" and cfg.data.image_size == 32 and cfg.train.objective == "inpaint"
    assert cfg.score.image_score == "mean" and cfg.train.min_steps == SEMANTIC_MIN_STEPS
    cae = benchmark_config(
        "cifar10", "cae", DEFAULT_PRESET, None, None, find_weights=True, images=OneClassImages(32, 0.0), **unset
    )
    assert cae.data.image_size == 128  # the l2-CAE needs no weights and is unchanged


def test_native_size_of_a_class_folder_tree(tmp_path: Path) -> None:
    from PIL import Image

    from anovit.data.oneclass import native_size

    (tmp_path / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "train" / "cat" / "a.png")
    assert native_size("folder", tmp_path) == 40 and native_size("mnist", None) == 28
    with pytest.raises(InputError, match="no class folders with images"):
        native_size("folder", tmp_path / "nothing")
