"""The command line: parse, build the config, call the library.

Exit codes: 0 ok, 1 internal error (or a diverged training), 2 usage or input error, 3 ``predict
--on-error skip`` scored every readable image but some could not be read, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import PRESETS, RunConfig, resolve_config
from .errors import InputError, TrainingDiverged

log = logging.getLogger("anovit")


def _add_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", default="auto", choices=["auto", "memory", "none"],
                   help="decoded images in memory (memory), or decoded from disk in DataLoader workers every epoch (none); "
                        "auto: memory while they fit in a quarter of the free RAM (at most 4 GiB)")  # fmt: skip


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "openvino"],
                   help="what runs the model: torch (the run's weights), or a file from 'anovit export' on ONNX Runtime / OpenVINO")
    p.add_argument("--model", type=Path, dest="model_file", metavar="FILE",
                   help="the exported file to run (default: RUN/model.onnx or RUN/model.xml); e.g. RUN/model-int8.xml")  # fmt: skip


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train AnoViT or the l2-CAE on the normal images of one category")
    p.add_argument("--data", required=True, type=Path, help="dataset root in the MVTec AD layout")
    p.add_argument("--category", required=True, help="category folder under --data, e.g. bottle")
    p.add_argument("--model", required=True, choices=["anovit", "cae"])
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="paper: ViT-B/16 at 384 px; small: CPU-sized (default)")
    p.add_argument("--image-size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--sigma", type=float, help="Gaussian smoothing sigma of the score map, in pixels")
    p.add_argument("--encoder", help="timm ViT name for the AnoViT encoder")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--pretrained", action="store_true", default=None, help="load timm's pretrained encoder weights (hub)")
    w.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="random encoder initialisation")
    w.add_argument("--encoder-weights", type=Path, help="local encoder weights (.safetensors/.pth/.npz)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    run.add_argument("--resume", action="store_true", help="continue a killed run in --out from its last checkpoint")
    _add_cache(p)
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="write checkpoint.pt (for --resume) every N epochs and after the last; 0: never (default 1)")
    p.add_argument("--val", type=Path, help="labelled validation folder for the thresholds (good/ + defect folders, "
                   "optional ground_truth/); default: the 20%% hold-out of train/good")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="run folder to write")


def _add_test(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("test", help="evaluate a trained run on the test split: image and pixel AUROC")
    p.add_argument("--run", required=True, type=Path, help="run folder written by 'anovit train'")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--category", required=True)
    p.add_argument("--out", type=Path, help="where metrics.json goes (default: the run folder)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--report", action="store_true", help="also write report.html (metrics, ROC, score histograms, gallery)")
    _add_cache(p)
    _add_backend(p)


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="set a run's image and pixel thresholds from a labelled validation folder")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--val", required=True, type=Path,
                   help="folder with good/ (normal) and optional <defect>/ folders; masks in ground_truth/ beside or inside it")  # fmt: skip
    p.add_argument("--quantile", type=float, default=0.99, help="fallback without anomalies: this quantile of normal scores")
    _add_cache(p)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", default="auto")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="score new images: verdict, heat-map overlay and mask per image, predictions.csv/json")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="overwrite earlier predictions in --out")
    _add_backend(p)
    p.add_argument("--on-error", default="stop", choices=["stop", "skip"],
                   help="an unreadable image: stop (exit 2, checked before anything is written), or skip it with its error "
                        "in predictions.csv/json and exit 3 at the end")  # fmt: skip


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export model + scoring (score map and image score) for ONNX Runtime or OpenVINO, fp32 or int8")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--format", default="onnx", choices=["onnx", "openvino"])
    p.add_argument("--int8", action="store_true", help="quantise the model's layers to int8 (the scoring stays fp32)")
    p.add_argument("--calib", type=Path, metavar="DIR",
                   help="normal images to calibrate OpenVINO int8 on (default: the run's own training images)")
    p.add_argument("--out", type=Path, help="file to write (default: RUN/model[-int8].onnx or RUN/model[-int8].xml)")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="an HTTP inspection service and web page over trained runs (dynamic batching, Prometheus metrics)")
    p.add_argument("--run", required=True, type=Path, action="append", dest="runs", help="run folder; repeat for several runs")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "openvino"],
                   help="torch, or each run's exported RUN/model.onnx / RUN/model.xml")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--max-batch", type=int, default=16, help="images scored together at most")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long the first queued image waits for others (0: no batching wait)")
    p.add_argument("--queue-size", type=int, default=256, help="images waiting at most; beyond, requests get 503 + Retry-After")
    p.add_argument("--max-bytes", type=int, default=50 * 2**20, help="largest request body (413 beyond)")


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="this machine: CPU and bf16 flags, the precision probe and what --precision auto picks, backends")
    p.add_argument("--refresh", action="store_true", help="measure the precision probe again instead of reading its cache")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="built-in data: train and test AnoViT and the l2-CAE, write Figure 3")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--epochs", type=int, help="epochs for both models (default: the small preset's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="retrain even if the demo runs exist")


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the built-in synthetic dataset in the MVTec AD layout")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--categories", default="weave", help="comma-separated names; each gets its own texture")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="train and test each model on each class/category; write the paper's tables")
    p.add_argument("--dataset", required=True, choices=["mvtec", "mnist", "cifar10", "digits", "folder"])
    p.add_argument("--data", type=Path, help="dataset root (not needed for digits, which scikit-learn ships)")
    p.add_argument("--models", default="anovit,cae", help="comma-separated: anovit,cae")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--categories", help="comma-separated MVTec categories (default: all found)")
    which.add_argument("--classes", help="comma-separated normal classes, names or indices (default: all ten)")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS))
    p.add_argument("--epochs", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--encoder", help="timm ViT name for the AnoViT encoder")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--pretrained", action="store_true", default=None)
    w.add_argument("--no-pretrained", dest="pretrained", action="store_false")
    w.add_argument("--encoder-weights", type=Path)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto", help="auto (every visible GPU, one category each), cpu, or a list: cuda:0,cuda:1")
    p.add_argument("--report", action="store_true", help="write report.html in each run folder")
    p.add_argument("--out", required=True, type=Path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anovit", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_test, _add_calibrate, _add_predict, _add_export, _add_benchmark, _add_demo, _add_synth, _add_info,
                _add_serve):
        add(sub)
    return parser


def cmd_train(args: argparse.Namespace) -> None:
    from .runs import train_run

    if args.resume:
        train_run(_resume_config(args), args.data, args.category, args.out, args.device, progress=not args.quiet, resume=True,
                  val_dir=args.val, cache=args.cache)  # fmt: skip
        print(f"resumed and finished the run in {args.out}")
        return
    cfg = resolve_config(
        preset=args.preset, model=args.model, image_size=args.image_size, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, lr=args.lr, precision=args.precision,
        encoder=args.encoder, pretrained=args.pretrained, encoder_weights=args.encoder_weights, sigma=args.sigma,
        checkpoint_every=args.checkpoint_every,
    )  # fmt: skip
    log.info("config: %s", cfg.to_json().replace("\n", " "))
    result = train_run(cfg, args.data, args.category, args.out, args.device, args.force, progress=not args.quiet, val_dir=args.val,
                       cache=args.cache)  # fmt: skip
    last = result.history[-1]
    print(f"trained {cfg.model.name} for {len(result.history)} epochs in {result.seconds:.0f} s "
          f"(final train loss {last.train_loss:.5f}); run folder: {result.run_dir}")  # fmt: skip


def _resume_config(args: argparse.Namespace) -> RunConfig:
    """The saved configuration of the run to resume; only --epochs may change (to train longer)."""
    from dataclasses import replace

    from .checkpoint import load_config

    cfg = load_config(args.out)
    if cfg.model.name != args.model:
        raise InputError(f"{args.out}: holds a {cfg.model.name} run, not {args.model}")
    if args.epochs is not None:
        cfg = replace(cfg, train=replace(cfg.train, epochs=args.epochs))
    if args.checkpoint_every is not None:
        cfg = replace(cfg, train=replace(cfg.train, checkpoint_every=args.checkpoint_every))
    return cfg


def cmd_test(args: argparse.Namespace) -> None:
    from .runs import format_table, test_run

    result, _ = test_run(
        args.run, args.data, args.category, args.out, args.device, args.precision, args.batch_size,
        progress=not args.quiet, report=args.report, cache=args.cache, backend=args.backend, model_file=args.model_file,
    )  # fmt: skip
    print(format_table({args.run.name: result.metrics()}))
    print(f"metrics written to {(args.out or args.run) / 'metrics.json'}")
    if args.report:
        print(f"report: {(args.out or args.run) / 'report.html'}")


def cmd_calibrate(args: argparse.Namespace) -> None:
    from .runs import calibrate_run

    t = calibrate_run(args.run, args.val, args.device, args.precision, args.quantile, progress=not args.quiet, cache=args.cache)
    f1 = lambda v: "" if v is None else f", F1 {v:.3f}"  # noqa: E731
    print(f"image threshold {t.image:.6g} ({t.image_method}{f1(t.image_f1)}); pixel threshold {t.pixel:.6g} "
          f"({t.pixel_method}{f1(t.pixel_f1)}); from {t.source}")  # fmt: skip
    for note in t.notes:
        print(f"note: {note}")
    print(f"written to {args.run / 'thresholds.json'}")


EXIT_SOME_FAILED = 3  # predict --on-error skip: every readable image was scored, some were not readable


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict

    results = predict(args.run, args.paths, args.out, args.device, args.precision, args.batch_size, args.force,
                      progress=not args.quiet, on_error=args.on_error, backend=args.backend, model_file=args.model_file)  # fmt: skip
    n_bad = sum(r.verdict == "anomalous" for r in results)
    n_failed = sum(r.verdict == "error" for r in results)
    print(f"{len(results) - n_failed} images scored, {n_bad} anomalous; overlays and masks in {args.out}, table in "
          f"{args.out / 'predictions.csv'}")  # fmt: skip
    if n_failed:
        print(f"anovit predict: {n_failed} of {len(results)} images could not be read; their errors are in "
              f"{args.out / 'predictions.csv'} (verdict 'error')", file=sys.stderr)  # fmt: skip
        return EXIT_SOME_FAILED
    return 0


def cmd_export(args: argparse.Namespace) -> None:
    from .export import export_model

    result = export_model(args.run, args.format, args.int8, args.out, args.calib)
    print(f"wrote {result.path}" + (f" (+ {result.path.with_suffix('.bin').name})" if args.format == "openvino" else ""))
    if result.map_error is not None:
        print(f"{result.runtime} vs PyTorch fp32 on a random batch: max |difference| {result.map_error:.2g} (score map), "
              f"{result.score_error:.2g} (image score)")  # fmt: skip
    backend = "onnxruntime" if args.format == "onnx" else "openvino"
    print(f"use it: anovit predict --run {args.run} --backend {backend} --model {result.path} IMAGES... --out DIR")


def cmd_benchmark(args: argparse.Namespace) -> None:
    from .benchmark import run_benchmark

    picked = args.categories or args.classes
    run_benchmark(
        args.dataset, args.data, [m for m in args.models.split(",") if m], args.out,
        categories=[c for c in picked.split(",") if c] if picked else None, preset=args.preset, epochs=args.epochs,
        image_size=args.image_size, device=args.device, progress=not args.quiet, encoder=args.encoder,
        pretrained=args.pretrained, encoder_weights=args.encoder_weights, precision=args.precision, seed=args.seed,
        report=args.report,
    )  # fmt: skip
    print((args.out / "results.md").read_text())
    print(f"results: {args.out / 'results.json'}, {args.out / 'results.csv'}, {args.out / 'results.md'}")


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.out, epochs=args.epochs, device=args.device, force=args.force, progress=not args.quiet)


def cmd_info(args: argparse.Namespace) -> None:
    import importlib.util

    import torch

    from . import precision

    probe = precision.cpu_probe(refresh=args.refresh)
    print(f"cpu: {precision.cpu_name()}; bf16 flags: {', '.join(precision.cpu_flags()) or 'none'}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"matmul probe ({precision.PROBE_SIZE}^3): fp32 {probe.fp32_gflops:.1f} GFLOP/s, bf16 {probe.bf16_gflops:.1f} GFLOP/s "
          f"({probe.bf16_speedup:.2f}x), measured {probe.measured_at}")  # fmt: skip
    print(f"--precision auto on this CPU: {probe.choice} (bf16 only where at least {precision.BF16_MARGIN}x faster than fp32)")
    print(f"probe cache: {precision.cache_dir() / precision.CACHE_FILE}")
    for i in range(torch.cuda.device_count()):
        print(f"cuda:{i}: {torch.cuda.get_device_name(i)}; --precision auto: {precision.resolve_precision('auto', torch.device('cuda', i))}")
    backends = {name: importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime", "openvino")}
    print("backends: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in backends.items()))


def cmd_serve(args: argparse.Namespace) -> None:
    from .serve import serve

    serve([str(r) for r in args.runs], args.host, args.port, args.backend, args.device, args.precision, args.max_batch,
          args.max_wait_ms, args.queue_size, args.max_bytes)  # fmt: skip


def cmd_synth(args: argparse.Namespace) -> None:
    from .data import make_synthetic_mvtec

    cats = tuple(c for c in args.categories.split(",") if c)
    make_synthetic_mvtec(args.out, categories=cats, size=args.size, seed=args.seed, progress=not args.quiet)
    print(f"wrote {', '.join(cats)} to {args.out}")


COMMANDS = {
    "train": cmd_train, "test": cmd_test, "calibrate": cmd_calibrate, "predict": cmd_predict, "export": cmd_export,
    "benchmark": cmd_benchmark, "demo": cmd_demo, "synth": cmd_synth, "info": cmd_info, "serve": cmd_serve,
}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("timm").setLevel(logging.WARNING)
    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1  # torch is imported only where a command needs it
    if torchrun and os.environ.get("RANK", "0") != "0":
        logging.getLogger().setLevel(logging.WARNING)  # one process talks
        args.quiet = True
    try:
        if torchrun:
            from . import distributed

            distributed.setup()
        code = COMMANDS[args.command](args)
    except InputError as exc:
        print(f"anovit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"anovit {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"anovit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        message = f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)"
        print(f"anovit {args.command}: {message}", file=sys.stderr)
        return 1
    finally:
        if torchrun:
            from . import distributed

            distributed.teardown()
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
