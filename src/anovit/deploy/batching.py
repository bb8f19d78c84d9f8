"""Dynamic batching for ``anovit serve``: the images of concurrent requests scored together, a bounded
queue, and the service's Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from anovit.deploy.api import ImageResult, Run
from anovit.errors import InputError

log = logging.getLogger(__name__)


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
