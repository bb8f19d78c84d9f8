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
  413 too large a body (``max_bytes``) or too many pixels, 404 unknown run, 415 another content type.

The service keeps no state besides the loaded runs: run several replicas behind any HTTP load
balancer, one process per GPU (``--device cuda:N``).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from anovit.data.images import decode_bytes
from anovit.deploy.api import ImageResult, Run
from anovit.errors import ImageTooLarge, InputError
from anovit.evaluation.colours import heat_overlay

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 50 * 2**20
IMAGE_TYPES = ("image/", "application/octet-stream")


class HTTPError(Exception):
    """A 4xx/5xx answer with one JSON line ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Metrics:
    """Prometheus metrics of one app, in a registry of its own (several apps can live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "anovit_requests", "Predict requests answered", ["run", "status"], registry=self.registry
        )
        self.images = Counter("anovit_images", "Images scored", ["run", "verdict"], registry=self.registry)
        self.errors = Counter("anovit_errors", "Requests answered with an error", ["reason"], registry=self.registry)
        self.latency = Histogram(
            "anovit_request_seconds",
            "Predict request latency",
            ["run"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch = Histogram(
            "anovit_batch_size",
            "Images per model call",
            ["run"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.queue = Gauge("anovit_queue_depth", "Images waiting to be scored", ["run"], registry=self.registry)

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


@dataclass
class _Job:
    rgb: np.ndarray  # (H, W, 3) uint8
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Scores the images of concurrent requests together: up to ``max_batch`` per model call.

    The first queued image starts a batch; the worker then waits at most ``max_wait_ms`` for more.
    Model calls run one at a time in a worker thread, so the event loop keeps accepting requests.
    """

    def __init__(
        self, run: Run, metrics: Metrics, max_batch: int = 16, max_wait_ms: float = 5.0, queue_size: int = 256
    ) -> None:
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0:
            raise InputError("--max-batch and --queue-size must be >= 1 and --max-wait-ms >= 0")
        self.run, self.metrics = run, metrics
        self.max_batch, self.max_wait, self.queue_size = max_batch, max_wait_ms / 1000.0, queue_size
        self.queue: asyncio.Queue[_Job] | None = None
        self.task: asyncio.Task | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"score-{run.name}")

    async def start(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.queue_size)
        self.task = asyncio.create_task(self._work())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.executor.shutdown(wait=True)

    async def score(self, images: Sequence[np.ndarray]) -> list[ImageResult]:
        """Queue the images of one request (all or none) and wait for their results."""
        assert self.queue is not None, "Batcher.start() first"
        if len(images) > self.queue_size:  # would never fit: retrying cannot help
            raise HTTPError(
                413, f"{len(images)} images in one request, more than the queue holds ({self.queue_size}, --queue-size)"
            )
        if self.queue.qsize() + len(images) > self.queue_size:
            raise HTTPError(
                503,
                f"busy: {self.queue.qsize()} images queued (limit {self.queue_size}); retry shortly",
                {"Retry-After": "1"},
            )
        loop = asyncio.get_running_loop()
        jobs = [_Job(rgb, loop.create_future()) for rgb in images]
        for job in jobs:
            self.queue.put_nowait(job)
        self.metrics.queue.labels(self.run.name).set(self.queue.qsize())
        return list(await asyncio.gather(*(job.future for job in jobs)))

    async def _work(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            self.metrics.queue.labels(self.run.name).set(self.queue.qsize())
            self.metrics.batch.labels(self.run.name).observe(len(batch))
            try:
                results = await loop.run_in_executor(self.executor, self.run.score_rgb, [job.rgb for job in batch])
            except Exception as exc:  # noqa: BLE001 (the requests waiting on this batch get the error, the worker goes on)
                log.exception("scoring a batch of %d failed", len(batch))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)


def _png_data_uri(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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
        out["overlay"] = _png_data_uri(heat_overlay(rgb, r.anomaly_map, run.thresholds.pixel))
        out["mask"] = _png_data_uri(r.mask.astype(np.uint8) * 255)
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
                    *(loop.run_in_executor(decoder, decode_bytes, data, fname) for fname, data in uploads)
                )
            except ImageTooLarge as exc:
                raise HTTPError(413, str(exc)) from None
            except InputError as exc:
                raise HTTPError(400, str(exc)) from None
            results = await batchers[name].score(images)
            overlay = request.query_params.get("overlay", "") == "png"
            body = {
                "run": name,
                "images": [result_json(n, rgb, r, run, overlay) for (n, _), rgb, r in zip(uploads, images, results)],
            }
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
) -> None:
    """Load every run once, then serve until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise InputError("anovit serve needs: pip install 'anovit[serve]'") from None
    from anovit.deploy.api import load_run

    runs = [load_run(d, backend, device=device, precision=precision) for d in run_dirs]  # type: ignore[arg-type]
    app = create_app(runs, max_batch, max_wait_ms, queue_size, max_bytes)
    log.info("serving %s on http://%s:%d", ", ".join(r.name for r in runs), host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
