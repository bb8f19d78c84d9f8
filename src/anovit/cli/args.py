"""The command line's arguments: one ``_add_<command>`` per subcommand, and :func:`build_parser`."""

from __future__ import annotations

import argparse
from pathlib import Path

from anovit.cli import options
from anovit.config import LR_SCHEDULES, MODEL_NAMES, PRECISIONS
from anovit.data import DATASETS
from anovit.deploy.backends import BACKENDS
from anovit.presets import DEFAULT_PRESET, PRESETS

DESCRIPTION = """anovit: AnoViT anomaly detection and localisation (train, test, predict, export, serve, ...).

Exit codes: 0 ok, 1 internal error (or a diverged training), 2 usage or input error, 3 predict
--on-error skip scored every readable image but some could not be read, 130 interrupted."""


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train AnoViT or the l2-CAE on the normal images of one category")
    p.add_argument("--data", required=True, type=Path, help="dataset root in the MVTec AD layout")
    p.add_argument("--category", required=True, help="category folder under --data, e.g. bottle")
    p.add_argument("--model", required=True, choices=list(MODEL_NAMES))
    p.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=sorted(PRESETS),
        help=f"{DEFAULT_PRESET} (default): the CPU default, a pretrained ViT-Ti/16 at 224 px (without its weights: "
        "scratch); tokens: the same ViT-Ti frozen, its tokens given back by a decoder (--objective tokens); "
        "scratch: a from-scratch ViT at 128 px, no weights needed; paper: ViT-B/16 at 384 px; "
        "small: a from-scratch ViT at 64 px",
    )
    p.add_argument("--image-size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument(
        "--lr-schedule",
        choices=list(LR_SCHEDULES),
        help="constant (default): --lr throughout; cosine: a 5 %% warm-up, then a cosine decay to 0 at the last step",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=list(PRECISIONS))
    options.add_method(p)
    p.add_argument("--encoder", help="timm ViT name for the AnoViT encoder")
    w = p.add_mutually_exclusive_group()
    w.add_argument(
        "--pretrained", action="store_true", default=None, help="load timm's pretrained encoder weights (hub)"
    )
    w.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="random encoder initialisation")
    w.add_argument("--encoder-weights", type=Path, help="local encoder weights (.safetensors/.pth/.npz)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    run.add_argument("--resume", action="store_true", help="continue a killed run in --out from its last checkpoint")
    options.add_cache(p)
    p.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="write checkpoint.pt (for --resume) every N epochs and after the last; 0: never (default 1; where a "
        "small set gets extra epochs to make the preset's minimum of steps, N grows with them)",
    )
    p.add_argument(
        "--val",
        type=Path,
        help="labelled validation folder for the thresholds (good/ + defect folders, "
        "optional ground_truth/); default: the 20%% hold-out of train/good",
    )
    p.add_argument("--out", required=True, type=Path, help="run folder to write")


def _add_test(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("test", help="evaluate a trained run on the test split: image and pixel AUROC")
    p.add_argument("--run", required=True, type=Path, help="run folder written by 'anovit train'")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--category", required=True)
    p.add_argument("--out", type=Path, help="where metrics.json goes (default: the run folder)")
    p.add_argument("--precision", choices=list(PRECISIONS))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--report", action="store_true", help="also write report.html (metrics, ROC, score histograms, gallery)"
    )
    options.add_cache(p)
    options.add_backend(p)


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="set a run's image and pixel thresholds from a labelled validation folder")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument(
        "--val",
        required=True,
        type=Path,
        help="folder with good/ (normal) and optional <defect>/ folders; masks in ground_truth/ beside or inside it",
    )
    p.add_argument(
        "--quantile", type=float, default=0.99, help="fallback without anomalies: this quantile of normal scores"
    )
    options.add_cache(p)
    p.add_argument("--precision", choices=list(PRECISIONS))
    p.add_argument("--device", default="auto")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="score new images: verdict, heat-map overlay and mask per image, predictions.csv/json"
    )
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", choices=list(PRECISIONS))
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="overwrite earlier predictions in --out")
    options.add_backend(p)
    p.add_argument(
        "--on-error",
        default="stop",
        choices=["stop", "skip"],
        help="an unreadable image: stop (exit 2, checked before anything is written), or skip it with its error "
        "in predictions.csv/json and exit 3 at the end",
    )


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export model + scoring (score map and image score) for ONNX Runtime or OpenVINO, fp32 or int8"
    )
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--format", default="onnx", choices=["onnx", "openvino"])
    p.add_argument("--int8", action="store_true", help="quantise the model's layers to int8 (the scoring stays fp32)")
    p.add_argument(
        "--calib",
        type=Path,
        metavar="DIR",
        help="normal images to check the export on (default: the run's own training images)",
    )
    p.add_argument("--out", type=Path, help="file to write (default: RUN/model[-int8].onnx or RUN/model[-int8].xml)")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="an HTTP inspection service and web page over trained runs (dynamic batching, Prometheus metrics)"
    )
    p.add_argument(
        "--run", required=True, type=Path, action="append", dest="runs", help="run folder; repeat for several runs"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--backend",
        default="torch",
        choices=list(BACKENDS),
        help="torch, or each run's exported RUN/model.onnx / RUN/model.xml",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=list(PRECISIONS))
    p.add_argument("--max-batch", type=int, default=16, help="images scored together at most")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long the first queued image waits for others (0: no batching wait)",
    )
    p.add_argument(
        "--queue-size", type=int, default=256, help="images waiting at most; beyond, requests get 503 + Retry-After"
    )
    p.add_argument("--max-bytes", type=int, default=50 * 2**20, help="largest request body (413 beyond)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=40_000_000,
        help="largest image, in pixels, refused with 413 from its header before decoding (default 40 M)",
    )
    p.add_argument(
        "--model",
        type=Path,
        help="an exported file of the (single) run instead of its default, e.g. RUN/model-int8.onnx",
    )


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info", help="this machine: CPU and bf16 flags, the precision probe and what --precision auto picks, backends"
    )
    p.add_argument(
        "--refresh", action="store_true", help="measure the precision probe again instead of reading its cache"
    )


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="built-in data: train and test AnoViT and the l2-CAE, write Figure 3")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument(
        "--epochs", type=int, help="epochs of the trained models (default: 15 for the quick demo, else the preset's)"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="retrain even if the demo runs exist")
    p.add_argument(
        "--full",
        action="store_true",
        help="both built-in categories at the preset's full training (several times the quick demo's minutes)",
    )


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the built-in synthetic dataset in the MVTec AD layout")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument(
        "--categories",
        default="weave",
        help="comma-separated names: weave (regular), sand (stochastic), fibres (high-frequency), tiles, capsule and "
        "nut (objects); any other name gets a woven texture of its own",
    )
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="train and test each model on each class/category; write the paper's tables")
    p.add_argument("--dataset", required=True, choices=list(DATASETS))
    p.add_argument("--data", type=Path, help="dataset root (not needed for digits, which scikit-learn ships)")
    p.add_argument(
        "--models", default="anovit,cae", help="comma-separated: anovit, cae (the l2-CAE), knn (PatchCore's search)"
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--categories", help="comma-separated MVTec categories (default: all found)")
    which.add_argument("--classes", help="comma-separated normal classes, names or indices (default: all ten)")
    p.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=sorted(PRESETS),
        help=f"{DEFAULT_PRESET} (default; on digits, MNIST, CIFAR-10 and folders, the one-class rule: no flips, every "
        "model scores the map's mean, AnoViT and knn at 224 px (images under 14 px: AnoViT inpaints pixels at 32 px), "
        "the l2-CAE at 128 px); paper: the published setting",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--image-size", type=int)
    options.add_method(p)
    p.add_argument("--encoder", help="timm ViT name for the AnoViT encoder")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--pretrained", action="store_true", default=None)
    w.add_argument("--no-pretrained", dest="pretrained", action="store_false")
    w.add_argument("--encoder-weights", type=Path)
    p.add_argument("--precision", choices=list(PRECISIONS))
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--device", default="auto", help="auto (every visible GPU, one category each), cpu, or a list: cuda:0,cuda:1"
    )
    p.add_argument("--report", action="store_true", help="write report.html in each run folder")
    p.add_argument("--out", required=True, type=Path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anovit", description=DESCRIPTION)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_train,
        _add_test,
        _add_calibrate,
        _add_predict,
        _add_export,
        _add_benchmark,
        _add_demo,
        _add_synth,
        _add_info,
        _add_serve,
    ):
        add(sub)
    return parser
