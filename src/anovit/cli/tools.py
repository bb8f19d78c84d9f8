"""The commands around the runs: ``benchmark``, ``demo``, ``info`` (this machine: CPU, precision, backends)
and ``synth`` (the built-in data set)."""

from __future__ import annotations

import argparse

from anovit.cli.options import method_options


def cmd_benchmark(args: argparse.Namespace) -> None:
    from anovit.experiments.benchmark import run_benchmark

    picked = args.categories or args.classes
    run_benchmark(
        args.dataset,
        args.data,
        [m for m in args.models.split(",") if m],
        args.out,
        categories=[c for c in picked.split(",") if c] if picked else None,
        preset=args.preset,
        epochs=args.epochs,
        image_size=args.image_size,
        device=args.device,
        progress=not args.quiet,
        encoder=args.encoder,
        pretrained=args.pretrained,
        encoder_weights=args.encoder_weights,
        precision=args.precision,
        seed=args.seed,
        report=args.report,
        **method_options(args),
    )
    print((args.out / "results.md").read_text())
    print(f"results: {args.out / 'results.json'}, {args.out / 'results.csv'}, {args.out / 'results.md'}")


def cmd_demo(args: argparse.Namespace) -> None:
    from anovit.cli.demo import run_demo

    run_demo(
        args.out, epochs=args.epochs, device=args.device, force=args.force, progress=not args.quiet, full=args.full
    )


def cmd_info(args: argparse.Namespace) -> None:
    import importlib.util

    import torch

    from anovit.runtime import precision

    probe = precision.cpu_probe(refresh=args.refresh)
    print(f"cpu: {precision.cpu_name()}; bf16 flags: {', '.join(precision.cpu_flags()) or 'none'}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"matmul probe ({precision.PROBE_SIZE}^3): fp32 {probe.fp32_gflops:.1f} GFLOP/s, "
        f"bf16 {probe.bf16_gflops:.1f} GFLOP/s ({probe.bf16_speedup:.2f}x), measured {probe.measured_at}"
    )
    print(
        f"--precision auto on this CPU: {probe.choice} "
        f"(bf16 only where at least {precision.BF16_MARGIN}x faster than fp32)"
    )
    print(f"probe cache: {precision.cache_dir() / precision.CACHE_FILE}")
    for i in range(torch.cuda.device_count()):
        print(
            f"cuda:{i}: {torch.cuda.get_device_name(i)}; --precision auto: "
            f"{precision.resolve_precision('auto', torch.device('cuda', i))}"
        )
    backends = {name: importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime", "openvino")}
    print("backends: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in backends.items()))


def cmd_synth(args: argparse.Namespace) -> None:
    from anovit.data import make_synthetic_mvtec

    cats = tuple(c for c in args.categories.split(",") if c)
    make_synthetic_mvtec(args.out, categories=cats, size=args.size, seed=args.seed, progress=not args.quiet)
    print(f"wrote {', '.join(cats)} to {args.out}")
