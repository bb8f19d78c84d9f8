"""Hostile and unusual images through ``anovit predict``: what the user sees, and the exit code.

Makes each input (decompression bomb, truncated file, text named .png, empty file, EXIF-rotated
phone photo, 16-bit and float TIFF, CMYK JPEG, ...), runs ``anovit predict`` on it alone (default
``--on-error stop``) and then on all of them at once with ``--on-error skip``, and writes the
table to ``benchmarks/hostile_inputs.md``. A tiny run is trained first (seconds).

    python benchmarks/hostile_inputs.py [--out benchmarks/hostile_inputs.md]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anovit.cli import main as anovit

HERE = Path(__file__).resolve().parent


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = 30_000) -> None:
    """A 150-byte PNG whose header claims side x side RGB pixels (900 M for 30,000): a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )


def exif_rotated_jpeg(path: Path) -> np.ndarray:
    """A 60 x 30 landscape JPEG whose EXIF says 'rotate 90 degrees clockwise' (orientation 6), as phones write.

    Returns the upright pixels a viewer shows (30 wide, 60 high), before JPEG rounding.
    """
    stored = np.zeros((30, 60, 3), dtype=np.uint8)
    stored[:, :20] = (255, 0, 0)  # a red band on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return np.rot90(stored, k=-1).copy()  # clockwise: the red band ends on top


def make_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what it is)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cases: dict[str, tuple[Path, str]] = {}

    def add(name: str, what: str) -> Path:
        cases[name] = (folder / name, what)
        return folder / name

    bomb_png(add("bomb.png", "PNG header claiming 30,000 x 30,000 pixels (150 bytes on disk)"))
    good = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(good).save(add("photo.png", "ordinary 64 x 48 RGB PNG"))
    full = io.BytesIO()
    Image.fromarray(good).save(full, format="PNG")
    add("truncated.png", "PNG cut after its first 200 bytes").write_bytes(full.getvalue()[:200])
    add("notes.png", "a text file named .png").write_text("not an image\n")
    add("empty.jpg", "an empty file").write_bytes(b"")
    exif_rotated_jpeg(add("phone.jpg", "60 x 30 JPEG with EXIF orientation 6 (phone held upright)"))
    Image.fromarray(rng.integers(0, 65535, (40, 50), dtype=np.uint16)).save(add("deep16.tif", "16-bit grey TIFF"))
    Image.fromarray(rng.random((40, 50), dtype=np.float32)).save(
        add("float32.tif", "32-bit float TIFF, values in [0, 1]")
    )
    Image.fromarray(good).convert("CMYK").save(add("print.jpg", "CMYK JPEG"), format="JPEG")
    Image.fromarray(rng.integers(0, 255, (40, 50, 4), dtype=np.uint8), "RGBA").save(add("alpha.webp", "RGBA WebP"))
    return cases


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = anovit(["-q", *argv])
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip() and not ln.startswith("WARNING")]
    return code, lines[0] if lines else ""


def train_tiny_run(work: Path) -> Path:
    from anovit.data import make_synthetic_mvtec

    data = make_synthetic_mvtec(
        work / "data", categories=("weave",), size=32, n_train=8, n_test_good=2, n_per_defect=1, progress=False
    )
    run = work / "run"
    code, err = _run(
        [
            "train",
            "--data",
            str(data),
            "--category",
            "weave",
            "--model",
            "cae",
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--precision",
            "fp32",
            "--out",
            str(run),
        ]
    )
    if code:
        raise RuntimeError(f"training the tiny run failed: {err}")
    return run


def run_all(work: Path) -> list[dict[str, Any]]:
    run = train_tiny_run(work)
    cases = make_inputs(work / "in")
    rows = []
    for name, (file, what) in cases.items():
        out = work / "out" / name
        code, message = _run(["predict", "--run", str(run), str(file), "--out", str(out), "--precision", "fp32"])
        row: dict[str, Any] = {
            "input": name,
            "what": what,
            "exit": code,
            "message": message.replace(str(work) + "/", ""),
        }
        if code == 0:
            p = json.loads((out / "predictions.json").read_text())["predictions"][0]
            row["message"] = f"scored: {p['width']} x {p['height']}, score {p['score']:.3g}, {p['verdict']}"
        rows.append(row)
    out = work / "out" / "all-skip"
    code, message = _run(
        ["predict", "--run", str(run), str(work / "in"), "--out", str(out), "--on-error", "skip", "--precision", "fp32"]
    )
    document = json.loads((out / "predictions.json").read_text())
    rows.append(
        {
            "input": "all of the above",
            "what": "the folder, --on-error skip",
            "exit": code,
            "message": f"{message.replace(str(work) + '/', '')} ({document['n_images'] - document['n_errors']} scored, "
            f"{document['n_errors']} error rows)",
        }
    )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| input | what it is | exit | what the user sees |", "|---|---|---|---|"]
    lines += [f"| `{r['input']}` | {r['what']} | {r['exit']} | {r['message'].replace('|', '/')} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "hostile_inputs.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = table(run_all(Path(tmp)))
    args.out.write_text(
        "`python benchmarks/hostile_inputs.py`: each input alone through `anovit predict`, then all at once.\n\n" + text
    )
    print(text)


if __name__ == "__main__":
    main()
