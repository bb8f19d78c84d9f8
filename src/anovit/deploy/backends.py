"""Inference backends: the same score maps and image scores from PyTorch, ONNX Runtime or OpenVINO.

A :class:`Scorer` takes a batch of images at the run's size and returns the smoothed score maps
and the image scores, as numpy arrays, whatever runs underneath:

- ``torch``: the run's ``model.safetensors`` (needs torch and timm);
- ``onnxruntime``: a file from ``anovit export --format onnx [--int8]`` (default ``RUN/model.onnx``);
- ``openvino``: a file from ``anovit export --format openvino [--int8]`` (default ``RUN/model.xml``).

The exported graphs hold the model *and* the scoring (error, Gaussian smoothing, max), so the
ONNX Runtime and OpenVINO scorers import neither torch nor timm: a deployment needs only the
runtime, numpy and Pillow.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from anovit.config import Precision, RunConfig
from anovit.data.images import as_float_images
from anovit.errors import InputError
from anovit.evaluation.thresholds import scoring_precision
from anovit.files import check_export

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnxruntime", "openvino"]
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
DEFAULT_FILES = {"onnxruntime": "model.onnx", "openvino": "model.xml"}
EXPORT_HINT = {"onnxruntime": "onnx", "openvino": "openvino"}


class Scorer(Protocol):
    """images (B, 3, S, S), uint8 or float32 in [0, 1] -> (score maps (B, S, S) float32, image scores (B,) float32)."""

    image_size: int
    description: str

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class OnnxRuntimeScorer:
    """An exported ONNX file on ONNX Runtime's CPU provider (fp32 kernels; int8 where the file is quantised)."""

    def __init__(self, path: Path, image_size: int, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 (onnxruntime raises its own exception types for bad files)
            raise InputError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
        self.image_size = image_size
        self.description = f"onnxruntime ({path.name})"

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps, scores = self.session.run(None, {"images": as_float_images(images)})
        return maps, scores


class OpenVinoScorer:
    """An exported OpenVINO IR (or ONNX) file compiled for the CPU.

    ``precision``: fp32 keeps every non-quantised op in f32 (equal to torch fp32 within 1e-4);
    bf16 asks for bf16 where the CPU has it; auto leaves the choice to OpenVINO.
    """

    def __init__(
        self, path: Path, image_size: int, precision: Precision | None = None, threads: int | None = None
    ) -> None:
        import openvino as ov

        config: dict[str, object] = {}
        if precision in ("fp32", "bf16"):
            config["INFERENCE_PRECISION_HINT"] = "f32" if precision == "fp32" else "bf16"
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        except Exception as exc:  # noqa: BLE001 (OpenVINO raises RuntimeError with its own text)
            raise InputError(
                f"{path}: not a readable OpenVINO model ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        self.request = self.compiled.create_infer_request()
        self.image_size = image_size
        self.description = f"openvino ({path.name}, {precision or 'auto'})"

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.request.infer({0: as_float_images(images)})
        return np.asarray(out[0]), np.asarray(out[1])


def installed(backend: str) -> bool:
    """Each backend is the Python package of the same name."""
    return importlib.util.find_spec(backend) is not None


def load_scorer(
    run_dir: Path,
    backend: Backend = "torch",
    model_file: Path | None = None,
    device: str = "auto",
    precision: Precision | None = None,
    threads: int | None = None,
) -> Scorer:
    """The scorer of a run on ``backend``; ``model_file`` overrides the exported file (default: the run's)."""
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    if not installed(backend):
        raise InputError(f"--backend {backend} needs the {backend} package: pip install {backend}")
    run_dir = Path(run_dir)
    if backend == "torch":
        if model_file is not None:
            raise InputError(
                "--model is for an exported file (--backend onnxruntime or openvino); "
                "torch reads the run's model.safetensors"
            )
        # torch only where it is asked for: the other backends run without it
        from anovit.deploy.torch_scorer import TorchScorer

        return TorchScorer(run_dir, device, precision)
    if device not in ("auto", "cpu"):
        raise InputError(f"--device {device}: the {backend} backend runs on the CPU")
    path = Path(model_file) if model_file is not None else run_dir / DEFAULT_FILES[backend]
    if not path.is_file():
        raise InputError(
            f"{path}: no exported model here; "
            f"write it with: anovit export --run {run_dir} --format {EXPORT_HINT[backend]}"
        )
    check_export(run_dir, path)  # made from these weights and this score config, or a one-line error
    size = RunConfig.load(run_dir / "config.json").data.image_size
    at = scoring_precision(run_dir, precision, "auto")  # the thresholds' precision unless told otherwise
    if backend == "onnxruntime":
        if precision == "bf16":
            raise InputError(
                "--precision bf16: ONNX Runtime's CPU provider has no bf16 kernels; use fp32, or --backend openvino"
            )
        if at not in ("auto", "fp32"):
            log.warning("%s: the run's thresholds were set on %s scores; ONNX Runtime scores in fp32", path, at)
        return OnnxRuntimeScorer(path, size, threads)
    if at == "fp16":
        log.warning("%s: the run's thresholds were set on fp16 scores; OpenVINO on a CPU scores in fp32", path)
        at = "fp32"
    return OpenVinoScorer(path, size, None if at == "auto" else at, threads)  # type: ignore[arg-type]
