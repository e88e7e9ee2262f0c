"""A Prometheus exporter: every queue's counts, totals, ages and processing times.

Values are read from Redis when Prometheus scrapes, so the exporter holds no state and any
number of them can run. Metric names follow Prometheus conventions (``_total`` counters,
``_seconds`` units) and are listed in docs/metrics.md. Scrapes are served concurrently by
uvicorn; while the server cannot be read, a scrape still answers, with the exporter's own
process metrics and ``conveyor_up 0``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from conveyor import connection, defaults, ops, partitions
from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.metrics import QueueMetrics
from conveyor.serving import Server, is_loopback
from conveyor.transport import AsyncTransport

log = logging.getLogger(__name__)

QUANTILES = (0.5, 0.9, 0.99)


class QueueCollector(Collector):
    """The metrics of the queues read for one scrape."""

    def __init__(self, snapshots: Sequence[QueueMetrics]) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Any]:
        jobs = GaugeMetricFamily(
            "conveyor_jobs", "Jobs per queue and state", labels=["queue", "state"]
        )
        paused = GaugeMetricFamily(
            "conveyor_queue_paused", "1 when the queue is paused", labels=["queue"]
        )
        workers = GaugeMetricFamily(
            "conveyor_workers", "Live workers serving the queue", labels=["queue"]
        )
        completed = CounterMetricFamily(
            "conveyor_jobs_completed", "Jobs completed", labels=["queue"]
        )
        failed = CounterMetricFamily(
            "conveyor_job_attempts_failed", "Failed attempts", labels=["queue"]
        )
        dead = CounterMetricFamily("conveyor_jobs_dead", "Jobs that went dead", labels=["queue"])
        waiting_age = GaugeMetricFamily(
            "conveyor_oldest_waiting_age_seconds", "How long the next job to run has waited",
            labels=["queue"],
        )  # fmt: skip
        dead_age = GaugeMetricFamily(
            "conveyor_oldest_dead_age_seconds", "How long ago the oldest dead job died",
            labels=["queue"],
        )  # fmt: skip
        duration = GaugeMetricFamily(
            "conveyor_job_duration_seconds",
            "Processing time quantiles of completed jobs over the metrics window (bucket bounds)",
            labels=["queue", "quantile"],
        )
        abandoned = GaugeMetricFamily(
            "conveyor_abandoned_threads",
            "Handler threads hung past their timeout, over the live workers of the queue",
            labels=["queue"],
        )
        for m in self.snapshots:
            q = m.queue
            for state, count in m.counts.per_state().items():
                jobs.add_metric([q, state.value], count)
            paused.add_metric([q], int(m.counts.paused))
            workers.add_metric([q], len(m.workers))
            abandoned.add_metric([q], sum(w.abandoned_threads for w in m.workers))
            completed.add_metric([q], m.completed_total)
            failed.add_metric([q], m.failed_total)
            dead.add_metric([q], m.dead_total)
            waiting_age.add_metric([q], m.oldest_waiting_age or 0.0)
            dead_age.add_metric([q], m.oldest_dead_age or 0.0)
            for fraction in QUANTILES:
                value = m.processing_time(fraction)
                if value is not None:
                    duration.add_metric([q, str(fraction)], value)
        yield from (jobs, paused, workers, abandoned, completed, failed, dead, waiting_age,
                    dead_age, duration)  # fmt: skip


class _Scrape(Collector):
    """What one scrape exposes: the process's metrics, ``conveyor_up``, the queues'."""

    def __init__(self, process: Collector, snapshots: Sequence[QueueMetrics] | None) -> None:
        self.process = process
        self.snapshots = snapshots

    def collect(self) -> Iterator[Any]:
        yield from self.process.collect()
        up = GaugeMetricFamily("conveyor_up", "1 when this scrape could read the server, else 0")
        up.add_metric([], int(self.snapshots is not None))
        yield up
        if self.snapshots is not None:
            yield from QueueCollector(self.snapshots).collect()


class _Exporter:
    """The endpoint of one exporter app: its connection, settings and outage state."""

    def __init__(
        self, url: str, token: str | None, queues: list[str], window: float, timeout: float
    ) -> None:
        self.url = url
        self.expected = f"Bearer {token}".encode() if token else None
        self.queues = queues
        self.window = window
        self.timeout = timeout
        self.transport: AsyncTransport | None = None
        self.down = False  # the last scrape could not read the server
        self.process = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.process)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.transport = AsyncTransport(connection.async_client(self.url), self.url)
        try:
            yield
        finally:
            await self.transport.close()
            self.transport = None

    async def read(self) -> list[QueueMetrics]:
        assert self.transport is not None
        names = self.queues or await self.transport.run(ops.known_queues())
        return await self.transport.run(partitions.metrics_of(names, self.window))

    async def metrics(self, request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if self.expected is not None and not hmac.compare_digest(given, self.expected):
            return PlainTextResponse("unauthorized\n", 401, {"WWW-Authenticate": "Bearer"})
        snapshots: list[QueueMetrics] | None
        try:
            snapshots = await asyncio.wait_for(self.read(), self.timeout)
        except (ConveyorError, asyncio.TimeoutError) as exc:
            if not self.down:  # once per outage, not at every scrape
                log.warning("cannot read the queues' metrics (conveyor_up 0): %s",
                            exc or f"no answer within {self.timeout:g}s")  # fmt: skip
            self.down, snapshots = True, None
        else:
            if self.down:
                log.warning("the queues' metrics can be read again (conveyor_up 1)")
            self.down = False
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = encoder(_Scrape(self.process, snapshots))
        return Response(body, headers={"content-type": content_type})


def create_exporter_app(
    url: str | None = None,
    *,
    token: str | None = None,
    queues: Iterable[str] = (),
    window: float = 3600.0,
    scrape_timeout: float = defaults.SCRAPE_TIMEOUT,
) -> Starlette:
    """An ASGI app serving the metrics at ``/metrics`` (and ``/``).

    ``url`` is the server (else ``CONVEYOR_URL``, else the embedded server); ``queues``
    limits it to those queues (default: every known queue). With ``token``, a request must
    carry ``Authorization: Bearer <token>``. A scrape that cannot read the server within
    ``scrape_timeout`` seconds answers ``conveyor_up 0``.
    """
    exporter = _Exporter(connection.resolve_url(url), token, list(queues), window,
                         scrape_timeout)  # fmt: skip
    routes = [Route("/metrics", exporter.metrics), Route("/", exporter.metrics)]
    return Starlette(routes=routes, lifespan=exporter.lifespan)


def make_exporter(
    url: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 9808,
    token: str | None = None,
    queues: Iterable[str] = (),
    read_timeout: float = defaults.HTTP_READ_TIMEOUT,
) -> Server:
    """A server for ``/metrics``, listening once made. Binding beyond loopback requires a token."""
    if not token and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve metrics on {host} without a token "
            f"(--token or {defaults.METRICS_TOKEN_ENV})"
        )
    app = create_exporter_app(url, token=token, queues=queues)
    return Server(app, host, port, read_timeout=read_timeout)
