"""``anovit serve``: an HTTP inspection service over trained runs, with dynamic batching and a web page.

Starlette + uvicorn, not FastAPI: the service takes image bytes and returns a small JSON, so it
needs routing, multipart parsing and a lifespan, which Starlette is (FastAPI is Starlette plus
pydantic models and OpenAPI generation, two more dependencies on an inspection PC for nothing
this API uses). uvicorn is the ASGI server both document.

- ``POST /v1/runs/{name}/predict``: images as multipart files (any field names) or one image as
  the raw body with an ``image/*`` (or ``application/octet-stream``) content type. Per image:
  score, verdict, thresholds, anomalous area, size; with ``?overlay=png`` also the overlay and the
  mask as PNG data URIs at the image's own size. The numbers are those of ``anovit predict``.
- Images of requests that arrive together are scored in one batch (:class:`Batcher`): a worker
  takes up to ``max_batch`` images, waiting at most ``max_wait_ms`` for more. The queue is
  bounded: a request that does not fit gets 503 with ``Retry-After``.
- ``GET /healthz``, ``GET /v1/runs`` (config, thresholds, image size), ``GET /metrics``
  (Prometheus text format), ``GET /`` (the web page).
- Bad input answers 4xx with one JSON line ``{"error": "..."}``: 400 not an image or truncated,
  413 too large a body (``max_bytes``) or too many pixels (``max_pixels``, read from the header before
  decoding), 404 unknown run, 415 another content type.
- Decoding and the overlay PNGs run in a thread pool, off the event loop: ``/healthz`` answers while
  large images are decoded and encoded.

The service keeps no state besides the loaded runs: run several replicas behind any HTTP load
balancer, one process per GPU (``--device cuda:N``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from anovit.data.images import data_uri, decode_bytes
from anovit.deploy.api import ImageResult, Run
from anovit.deploy.batching import Batcher, HTTPError, Metrics
from anovit.errors import ImageTooLarge, InputError
from anovit.evaluation.colours import heat_overlay

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 50 * 2**20
DEFAULT_MAX_PIXELS = 40_000_000  # an 8K frame is 33 M; each pixel costs ~30 bytes of maps and overlay on the way
IMAGE_TYPES = ("image/", "application/octet-stream")


def result_json(name: str, rgb: np.ndarray, r: ImageResult, run: Run, overlay: bool) -> dict[str, Any]:
    """The JSON of one scored image (the fields of ``anovit predict``'s predictions.json, plus the thresholds)."""
    out: dict[str, Any] = {
        "name": name,
        "score": r.score,
        "verdict": r.verdict,
        "anomalous_fraction": r.anomalous_fraction,
        "width": r.width,
        "height": r.height,
        "thresholds": {"image": run.thresholds.image, "pixel": run.thresholds.pixel},
    }
    if overlay:
        out["overlay"] = data_uri(heat_overlay(rgb, r.anomaly_map, run.thresholds.pixel))
        out["mask"] = data_uri(r.mask.astype(np.uint8) * 255)
    return out


async def _read_body(request: Any, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``max_bytes`` (Content-Length or streamed)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise HTTPError(
            413, f"request body of {int(length):,} bytes is larger than the limit of {max_bytes:,} (--max-bytes)"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPError(413, f"request body is larger than the limit of {max_bytes:,} bytes (--max-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _uploads(request: Any, max_bytes: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in the request: multipart files, or the raw body."""
    content_type = request.headers.get("content-type", "")
    body = await _read_body(request, max_bytes)
    if content_type.startswith("multipart/form-data"):
        request._body = body  # Starlette parses the form from the body read above (and never reads the stream twice)
        try:
            form = await request.form(max_files=1000, max_fields=1000)
        except Exception as exc:  # noqa: BLE001 (python-multipart's parse errors)
            raise HTTPError(400, f"malformed multipart body ({exc})") from None
        files = [(v.filename or k, await v.read()) for k, v in form.multi_items() if hasattr(v, "read")]
        if not files:
            raise HTTPError(400, "no image files in the multipart body (send them as file fields)")
        return files
    if any(content_type.startswith(t) for t in IMAGE_TYPES):
        if not body:
            raise HTTPError(400, "empty body: send an image as the body or as multipart file fields")
        return [("body", body)]
    raise HTTPError(
        415, f"content type {content_type or '(none)'!r}: send multipart/form-data files or an image/* body"
    )


def create_app(
    runs: Sequence[Run],
    max_batch: int = 16,
    max_wait_ms: float = 5.0,
    queue_size: int = 256,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Any:
    """The ASGI app serving ``runs`` (each under its folder name)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    from anovit.deploy.webpage import PAGE

    by_name = {run.name: run for run in runs}
    if len(by_name) != len(runs):
        raise InputError("two runs share a folder name; serve them from folders with different names")
    metrics = Metrics()
    batchers = {name: Batcher(run, metrics, max_batch, max_wait_ms, queue_size) for name, run in by_name.items()}
    decoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")

    def error(exc: HTTPError, reason: str) -> JSONResponse:
        metrics.errors.labels(reason).inc()
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    async def predict(request: Request) -> Response:
        start = time.perf_counter()
        name = request.path_params["name"]
        if name not in by_name:
            return error(
                HTTPError(404, f"unknown run {name!r}; this server has: {', '.join(sorted(by_name))}"), "unknown_run"
            )
        run = by_name[name]
        status = 200
        try:
            uploads = await _uploads(request, max_bytes)
            loop = asyncio.get_running_loop()
            try:
                images = await asyncio.gather(
                    *(loop.run_in_executor(decoder, decode_bytes, data, fname, max_pixels) for fname, data in uploads)
                )
            except ImageTooLarge as exc:
                raise HTTPError(413, str(exc)) from None
            except InputError as exc:
                raise HTTPError(400, str(exc)) from None
            results = await batchers[name].score(images)
            overlay = request.query_params.get("overlay", "") == "png"
            items = await loop.run_in_executor(  # PNG encoding of overlays and masks: off the event loop
                decoder,
                lambda: [result_json(n, rgb, r, run, overlay) for (n, _), rgb, r in zip(uploads, images, results)],
            )
            body = {"run": name, "images": items}
            for r in results:
                metrics.images.labels(name, r.verdict).inc()
            return JSONResponse(body)
        except HTTPError as exc:
            status = exc.status
            return error(
                exc, {400: "bad_image", 413: "too_large", 415: "content_type", 503: "busy"}.get(exc.status, "other")
            )
        except Exception as exc:  # noqa: BLE001 (nothing crashes the server: a 500 with one line)
            log.exception("predict on %s failed", name)
            status = 500
            return error(HTTPError(500, f"internal error: {type(exc).__name__}: {exc}"), "internal")
        finally:
            metrics.requests.labels(name, str(status)).inc()
            metrics.latency.labels(name).observe(time.perf_counter() - start)

    async def runs_info(request: Request) -> Response:
        return JSONResponse({"runs": [run.info() for run in by_name.values()]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "runs": sorted(by_name)})

    async def metrics_text(request: Request) -> Response:
        body, content_type = metrics.text()
        return Response(body, media_type=content_type)

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        for batcher in batchers.values():
            await batcher.start()
        yield
        for batcher in batchers.values():
            await batcher.stop()
        decoder.shutdown(wait=False)

    routes = [
        Route("/", page),
        Route("/healthz", healthz),
        Route("/metrics", metrics_text),
        Route("/v1/runs", runs_info),
        Route("/v1/runs/{name}/predict", predict, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(
    run_dirs: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "torch",
    device: str = "auto",
    precision: str | None = None,
    max_batch: int = 16,
    max_wait_ms: float = 5.0,
    queue_size: int = 256,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    model_file: str | None = None,
) -> None:
    """Load every run once, then serve until interrupted; ``model_file``: an exported file (int8) for a single run."""
    try:
        import uvicorn
    except ImportError:
        raise InputError("anovit serve needs: pip install 'anovit[serve]'") from None
    from anovit.deploy.api import load_run

    if model_file is not None and len(run_dirs) != 1:
        raise InputError("--model names the exported file of one run: serve a single --run with it")
    runs = [
        load_run(d, backend, model_file, device=device, precision=precision)  # type: ignore[arg-type]
        for d in run_dirs
    ]
    app = create_app(runs, max_batch, max_wait_ms, queue_size, max_bytes, max_pixels)
    log.info("serving %s on http://%s:%d", ", ".join(r.name for r in runs), host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
