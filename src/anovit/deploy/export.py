"""``anovit export``: the trained model plus scoring as one graph, for ONNX Runtime or OpenVINO, in fp32 or int8.

The graph takes ``images`` (B, 3, S, S) float32 RGB in [0, 1] (S = the run's image size) and
returns ``score_map`` (B, S, S), the run's Gaussian-smoothed score map (the paper's: per-pixel squared
error averaged over channels), and ``image_score`` (B,), taken from each map as the run says (its max,
the mean of its top P %, ...): the same numbers ``anovit test`` and
``anovit predict`` compute. The batch size is dynamic. The run's thresholds go beside it in the
ONNX model's metadata (``image_threshold``, ``pixel_threshold``) when the run has them. ``NAME.json`` beside the
file records the hash of the weights and the whole score config it was made from; the backends refuse a file
whose record no longer matches the run (retrained, or rescored).

int8 (``--int8``) quantises the layers that reconstruct: the trained encoder and decoder (``QUANTISED``); a token
decoder's run (``--objective tokens``, the default) exports int8 to OpenVINO only (weights only), as ONNX Runtime's
dynamic int8 also quantises the activations, whose noise swamps the small token distances. The
score path stays fp32: the frozen reference ViT of the ``feature`` score, the segmentation head, the knn
baseline's features (so ``--model knn`` has nothing to quantise), and the scoring itself (error, smoothing,
max). Every int8 export is checked against PyTorch fp32 on real normal images (the run's training images, or
``--calib DIR``): where the Spearman rank correlation of their image scores falls below ``RANK_BOUND``, export
warns.

- ONNX Runtime: dynamic quantisation of every MatMul/Gemm (the ViT's linear layers; int8 weights
  per output channel, activations quantised per batch at run time, so nothing to calibrate).
  ONNX Runtime's static QDQ quantisation, with the decoder's transposed convolutions, ran slower
  on the CPUs measured (ViT-B/16 at 384: 1.36 against 1.90 images/s) and is not offered.
- OpenVINO: NNCF int8 weight compression of the encoder and the decoder (activations stay fp32/bf16);
  static quantisation of the activations too flattened the default's scores on real tire.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

from anovit.config import ModelConfig, RunConfig, ScoreConfig
from anovit.errors import InputError
from anovit.evaluation.thresholds import load_thresholds
from anovit.files import THRESHOLDS_FILE, atomic_write, export_record, export_record_path, load_config, write_json
from anovit.models.checkpoint import load_trained_model
from anovit.scoring.maps import score_batch

if TYPE_CHECKING:
    from anovit.deploy.backends import Scorer

log = logging.getLogger(__name__)

OPSET = 18
Format = Literal["onnx", "openvino"]
MODEL_PREFIX = "/model/"  # ONNX node names of the model's layers (the scoring's have none)
QUANTISED = ("/model/encoder/", "/model/decoder/")  # what int8 may touch: the trained reconstruction path
RANK_BOUND = 0.95  # the least Spearman correlation of int8 and fp32 image scores on real normal images
CALIBRATION_IMAGES = 64


class ScoringModel(nn.Module):
    """Reconstruction model + scoring: images (B, 3, S, S) -> (score maps (B, S, S), image scores (B,))."""

    def __init__(self, model: nn.Module, score: ScoreConfig) -> None:
        super().__init__()
        self.model = model
        self.score = score

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = score_batch(self.model, images, self.score)
        return scores.maps, scores.image


@dataclass(frozen=True)
class Export:
    """The written file and its largest deviation from PyTorch on real images (None where unchecked)."""

    path: Path
    map_error: float | None = None  # max |exported - PyTorch| over the score maps
    score_error: float | None = None  # the same for the image scores
    runtime: str = "onnxruntime"
    rank_correlation: float | None = None  # int8: Spearman of its image scores and fp32's on real normal images


def default_path(run_dir: Path, fmt: Format, int8: bool) -> Path:
    return Path(run_dir) / f"model{'-int8' if int8 else ''}.{'onnx' if fmt == 'onnx' else 'xml'}"


def _require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise InputError(f"this export needs the {module} package: pip install 'anovit[{extra}]'")


def _write_onnx(scorer: nn.Module, cfg: RunConfig, run_dir: Path, path: Path, opset: int, weights_sha256: str) -> None:
    """Trace ``scorer`` to an fp32 ONNX file at ``path`` (not atomic: the caller renames)."""
    import onnx

    size = cfg.data.image_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on timm's shape asserts
        torch.onnx.export(
            scorer,
            (torch.rand(2, 3, size, size),),
            str(path),
            input_names=["images"],
            output_names=["score_map", "image_score"],
            dynamic_axes={"images": {0: "batch"}, "score_map": {0: "batch"}, "image_score": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    meta = {
        "anovit_model": cfg.model.name,
        "image_size": str(size),
        "sigma": str(cfg.score.sigma),
        "score": "+".join(cfg.score.kinds),
        "input": "RGB float32 in [0, 1], (batch, 3, image_size, image_size)",
        "weights_sha256": weights_sha256,
    }
    if (run_dir / THRESHOLDS_FILE).is_file():
        t = load_thresholds(run_dir)
        meta |= {"image_threshold": repr(t.image), "pixel_threshold": repr(t.pixel)}
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def _quantize_onnx(src: Path, dst: Path) -> None:
    """ONNX Runtime dynamic int8 on the model's MatMul/Gemm nodes (per channel); the scoring stays fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = [
        n.name
        for n in onnx.load(str(src)).graph.node
        if n.name.startswith(QUANTISED) and n.op_type in ("MatMul", "Gemm")
    ]
    if not nodes:
        log.warning("%s: no layer of the reconstruction path to quantise; the int8 file computes in fp32", dst)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs a generic "consider pre-processing" advice on the root logger
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, nodes_to_quantize=nodes)
    finally:
        root.setLevel(level)


def calibration_images(run_dir: Path, size: int, calib: Path | None, n: int = CALIBRATION_IMAGES) -> np.ndarray:
    """Up to ``n`` normal images (n, 3, S, S) float32 in [0, 1]: from ``calib``, else the run's own training folder."""
    from anovit.data.images import as_float_images, model_input, open_rgb
    from anovit.deploy.predict import collect_inputs

    if calib is None:
        source = json.loads((run_dir / "data.json").read_text()) if (run_dir / "data.json").is_file() else {}
        if "data" not in source or "category" not in source or source.get("dataset", "mvtec") != "mvtec":
            raise InputError(
                f"{run_dir}: checking the export needs real normal images; this run's training images are not an "
                "MVTec-layout folder it can find, so pass --calib DIR (a folder of normal images)"
            )
        calib = Path(source["data"]) / source["category"] / "train" / "good"
    files = collect_inputs([calib])
    step = max(1, len(files) // n)
    chosen = [f for f, _ in files[::step][:n]]
    return as_float_images(np.stack([model_input(open_rgb(f), size) for f in chosen]))


def _write_openvino(onnx_path: Path, out: Path, int8: bool) -> None:
    """Convert to OpenVINO IR (``out`` = NAME.xml, weights in NAME.bin), int8 through NNCF when asked; both files
    renamed into place."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if int8:
        import nncf

        # Named ops outside the reconstruction path stay fp32: the scoring's own (/Sub, /Conv, /ReduceMax ...), the
        # reference ViT's and the segmentation head's; ops the conversion named (Constant_12, Multiply_34: pieces
        # of layers) must not be ignored.
        scoring = [
            name
            for op in model.get_ops()
            if (name := op.get_friendly_name()).startswith("/") and not name.startswith(QUANTISED)
        ]
        # Weights only (int8 per output channel, activations kept in fp32 or bf16): NNCF's static quantisation of
        # activations too, even of the encoder alone, flattened the default's scores on real tire (image AUROC
        # 0.584 -> 0.500, Spearman of the scores 0.002), where weights only kept them (0.586, Spearman 0.999).
        model = nncf.compress_weights(
            model,
            mode=nncf.CompressWeightsMode.INT8_ASYM,
            ignored_scope=nncf.IgnoredScope(names=scoring, validate=False),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    try:
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        os.replace(
            tmp / "model.bin", out.with_suffix(".bin")
        )  # the weights first: an .xml never points at missing weights
        os.replace(tmp / "model.xml", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def offered(model: ModelConfig, fmt: Format, int8: bool) -> bool:
    """Whether :func:`export_model` writes ``fmt`` (int8 or not) for ``model``: every pair but ONNX Runtime's int8 of a
    token decoder (``--objective tokens``), whose dynamic int8 activations swamp the small token distances."""
    return not (int8 and fmt == "onnx" and model.token_decoder_depth > 0)


def export_model(
    run_dir: Path,
    fmt: Format = "onnx",
    int8: bool = False,
    out: Path | None = None,
    calib: Path | None = None,
    opset: int = OPSET,
    verify: bool = True,
    calib_images: int = CALIBRATION_IMAGES,
) -> Export:
    """Write the run's model + scoring for ONNX Runtime (``.onnx``) or OpenVINO (``.xml`` + ``.bin``), fp32 or int8.

    Default file: ``RUN/model[-int8].onnx`` or ``RUN/model[-int8].xml``. With ``verify``, the file is
    run on three of the run's real normal images (noise where none can be found) and compared with PyTorch fp32;
    an int8 file is also rank-checked (:func:`check_ranking`).
    """
    if fmt not in ("onnx", "openvino"):
        raise InputError(f"--format {fmt}: expected onnx or openvino")
    _require("onnx", "export")
    if int8 and fmt == "onnx":
        _require("onnxruntime", "export")
    if fmt == "openvino":
        _require("openvino", "openvino")
        if int8:
            _require("nncf", "openvino")
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else default_path(run_dir, fmt, int8)
    if not offered(load_config(run_dir).model, fmt, int8):  # asked before the weights are read
        raise InputError(
            f"{run_dir}: ONNX Runtime's int8 quantises activations too, which swamps the token decoder's small "
            "distances (real normal images' scores reordered, Spearman 0.06-0.16); use --format openvino --int8 "
            "(int8 weights only) or the fp32 ONNX export"
        )
    cfg, model = load_trained_model(run_dir, "cpu")
    scorer = ScoringModel(model, cfg.score).eval()
    size = cfg.data.image_size
    record = export_record(run_dir)  # the weights hashed once: the ONNX metadata and the record beside the file
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        _write_onnx(scorer, cfg, run_dir, fp32, opset, record["weights_sha256"])
        if fmt == "onnx" and not int8:
            atomic_write(out, lambda t: shutil.copyfile(fp32, t))
        elif fmt == "onnx":
            atomic_write(out, lambda t: _quantize_onnx(fp32, t))
        else:
            _write_openvino(fp32, out, int8)
    log.info("exported %s to %s", cfg.model.name, out)
    runtime = "onnxruntime" if fmt == "onnx" else "openvino"
    result = Export(out, runtime=runtime)
    if verify and importlib.util.find_spec(runtime) is not None:
        from anovit.deploy.backends import OnnxRuntimeScorer, OpenVinoScorer

        exported = OnnxRuntimeScorer(out, size) if runtime == "onnxruntime" else OpenVinoScorer(out, size, "fp32")
        errors = check_parity(scorer, exported, parity_images(run_dir, size, calib))
        ranking = check_ranking(scorer, exported, out, run_dir, size, calib, calib_images) if int8 else None
        result = Export(out, *errors, runtime=runtime, rank_correlation=ranking[0] if ranking else None)
        if ranking is not None:
            record["int8_check"] = {"images": ranking[1], "spearman": ranking[0]}
    write_json(export_record_path(out), record)  # what backends check the file against
    return result


def parity_images(run_dir: Path, size: int, calib: Path | None) -> torch.Tensor:
    """Three images (another batch size than traced) to compare the export with PyTorch on: real normal ones where
    the run's training folder (or ``--calib``) can be found, else noise."""
    try:
        return torch.from_numpy(calibration_images(run_dir, size, calib, 3)[:3])
    except InputError:
        return torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0))


def check_ranking(
    scorer: nn.Module, exported: Scorer, path: Path, run_dir: Path, size: int, calib: Path | None, n: int
) -> tuple[float, int] | None:
    """Spearman correlation of the int8 file's image scores (``exported``) and PyTorch fp32's on up to ``n`` real
    normal images, and how many; a warning below ``RANK_BOUND``. None (with a note) where no real images can be
    found."""
    try:
        images = torch.from_numpy(calibration_images(run_dir, size, calib, n))
    except InputError as exc:
        log.warning("int8 not checked on real images: %s", exc)
        return None
    ex = np.concatenate([exported(images[i : i + 8].numpy())[1] for i in range(0, len(images), 8)])
    with torch.no_grad():
        ref = torch.cat([scorer(images[i : i + 8])[1] for i in range(0, len(images), 8)]).numpy()
    from scipy.stats import spearmanr

    rho = float(spearmanr(ex, ref).statistic) if len(ex) > 2 else 1.0  # ties share their mean rank
    if rho < RANK_BOUND:
        log.warning(
            "%s: int8 reorders the image scores of %d real normal images (Spearman %.3f against fp32, bound %.2f); "
            "its verdicts may differ from the fp32 model's: prefer the fp32 export",
            path,
            len(ex),
            rho,
            RANK_BOUND,
        )
    else:
        log.info("%s: int8 keeps the ranking of %d real normal images (Spearman %.3f)", path, len(ex), rho)
    return rho, len(ex)


def check_parity(scorer: nn.Module, exported: Scorer, images: torch.Tensor) -> tuple[float, float]:
    """Run the exported file (``exported``) and PyTorch fp32 on ``images`` (B, 3, S, S): max abs differences (maps,
    scores)."""
    ex_maps, ex_scores = exported(images.numpy())
    with torch.no_grad():
        maps, scores = scorer(images)
    return float(np.abs(ex_maps - maps.numpy()).max()), float(np.abs(ex_scores - scores.numpy()).max())
