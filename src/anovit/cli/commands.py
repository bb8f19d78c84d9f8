"""The command line: parse, build the config, call the library (the arguments are in :mod:`anovit.cli.args`).

Exit codes: 0 ok, 1 internal error (or a diverged training), 2 usage or input error, 3 ``predict
--on-error skip`` scored every readable image but some could not be read, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from anovit.cli import tools
from anovit.cli.args import build_parser
from anovit.cli.options import method_options
from anovit.config import RunConfig
from anovit.errors import InputError, TrainingDiverged

log = logging.getLogger("anovit")


def cmd_train(args: argparse.Namespace) -> None:
    from anovit.models.weights import resolve_run_config
    from anovit.runs.train import train_run

    if args.resume:
        train_run(
            _resume_config(args),
            args.data,
            args.category,
            args.out,
            args.device,
            progress=not args.quiet,
            resume=True,
            val_dir=args.val,
            cache=args.cache,
        )
        print(f"resumed and finished the run in {args.out}")
        return
    cfg, _ = resolve_run_config(  # the encoder's weights found, or the from-scratch fallback (logged)
        preset=args.preset,
        model=args.model,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        precision=args.precision,
        encoder=args.encoder,
        pretrained=args.pretrained,
        encoder_weights=args.encoder_weights,
        checkpoint_every=args.checkpoint_every,
        **method_options(args),
    )
    log.info("config: %s", cfg.to_json().replace("\n", " "))
    result = train_run(
        cfg,
        args.data,
        args.category,
        args.out,
        args.device,
        args.force,
        progress=not args.quiet,
        val_dir=args.val,
        cache=args.cache,
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun, one process reports
        return
    if not result.history:  # knn: a memory bank, no epochs
        print(f"built the knn memory bank in {result.seconds:.0f} s; run folder: {result.run_dir}")
        return
    print(
        f"trained {cfg.model.name} for {len(result.history)} epochs in {result.seconds:.0f} s "
        f"(final train loss {result.history[-1].train_loss:.5f}); run folder: {result.run_dir}"
    )


def _resume_config(args: argparse.Namespace) -> RunConfig:
    """The saved configuration of the run to resume; only --epochs may change (to train longer)."""
    from dataclasses import replace

    from anovit.files import load_config

    cfg = load_config(args.out)
    if cfg.model.name != args.model:
        raise InputError(f"{args.out}: holds a {cfg.model.name} run, not {args.model}")
    if args.epochs is not None:
        cfg = replace(cfg, train=replace(cfg.train, epochs=args.epochs))
    if args.checkpoint_every is not None:
        cfg = replace(cfg, train=replace(cfg.train, checkpoint_every=args.checkpoint_every))
    return cfg


def cmd_test(args: argparse.Namespace) -> None:
    from anovit.cli.output import format_table
    from anovit.runs.test import test_run

    result, _ = test_run(
        args.run,
        args.data,
        args.category,
        args.out,
        args.device,
        args.precision,
        args.batch_size,
        progress=not args.quiet,
        report=args.report,
        cache=args.cache,
        backend=args.backend,
        model_file=args.model_file,
    )
    metrics = result.metrics()
    print(format_table({args.run.name: metrics} | {f"  {d}": m for d, m in metrics.get("per_defect", {}).items()}))
    print(f"metrics written to {(args.out or args.run) / 'metrics.json'}")
    if args.report:
        print(f"report: {(args.out or args.run) / 'report.html'}")


def cmd_calibrate(args: argparse.Namespace) -> None:
    from anovit.runs.calibrate import calibrate_run

    t = calibrate_run(
        args.run, args.val, args.device, args.precision, args.quantile, progress=not args.quiet, cache=args.cache
    )
    f1 = lambda v: "" if v is None else f", F1 {v:.3f}"  # noqa: E731
    print(
        f"image threshold {t.image:.6g} ({t.image_method}{f1(t.image_f1)}); pixel threshold {t.pixel:.6g} "
        f"({t.pixel_method}{f1(t.pixel_f1)}); from {t.source}"
    )
    for note in t.notes:
        print(f"note: {note}")
    print(f"written to {args.run / 'thresholds.json'}")


EXIT_SOME_FAILED = 3  # predict --on-error skip: every readable image was scored, some were not readable


def cmd_predict(args: argparse.Namespace) -> int:
    from anovit.deploy.predict import predict

    results = predict(
        args.run,
        args.paths,
        args.out,
        args.device,
        args.precision,
        args.batch_size,
        args.force,
        progress=not args.quiet,
        on_error=args.on_error,
        backend=args.backend,
        model_file=args.model_file,
    )
    n_bad = sum(r.verdict == "anomalous" for r in results)
    n_failed = sum(r.verdict == "error" for r in results)
    print(
        f"{len(results) - n_failed} images scored, {n_bad} anomalous; overlays and masks in {args.out}, table in "
        f"{args.out / 'predictions.csv'}"
    )
    if n_failed:
        print(
            f"anovit predict: {n_failed} of {len(results)} images could not be read; their errors are in "
            f"{args.out / 'predictions.csv'} (verdict 'error')",
            file=sys.stderr,
        )
        return EXIT_SOME_FAILED
    return 0


def cmd_export(args: argparse.Namespace) -> None:
    from anovit.deploy.export import export_model

    result = export_model(args.run, args.format, args.int8, args.out, args.calib)
    print(
        f"wrote {result.path}" + (f" (+ {result.path.with_suffix('.bin').name})" if args.format == "openvino" else "")
    )
    if result.map_error is not None:
        print(
            f"{result.runtime} vs PyTorch fp32 on three images: max |difference| {result.map_error:.2g} (score map), "
            f"{result.score_error:.2g} (image score)"
        )
    if result.rank_correlation is not None:
        print(f"int8 vs fp32 image-score ranking of real normal images: Spearman {result.rank_correlation:.3f}")
    print(
        f"use it: anovit predict --run {args.run} --backend {result.runtime} --model {result.path} IMAGES... --out DIR"
    )


def cmd_serve(args: argparse.Namespace) -> None:
    from anovit.deploy.serve import serve

    serve(
        [str(r) for r in args.runs],
        args.host,
        args.port,
        args.backend,
        args.device,
        args.precision,
        args.max_batch,
        args.max_wait_ms,
        args.queue_size,
        args.max_bytes,
        args.max_pixels,
        str(args.model) if args.model else None,
    )


COMMANDS = {
    "train": cmd_train,
    "test": cmd_test,
    "calibrate": cmd_calibrate,
    "predict": cmd_predict,
    "export": cmd_export,
    "benchmark": tools.cmd_benchmark,
    "demo": tools.cmd_demo,
    "synth": tools.cmd_synth,
    "info": tools.cmd_info,
    "serve": cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("timm").setLevel(logging.WARNING)
    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1  # torch is imported only where a command needs it
    if torchrun and os.environ.get("RANK", "0") != "0":
        logging.getLogger().setLevel(logging.WARNING)  # one process talks
        args.quiet = True
    try:
        if torchrun:
            from anovit.runtime import distributed

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
            from anovit.runtime import distributed

            distributed.teardown()
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
