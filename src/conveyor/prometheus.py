"""A Prometheus exporter: every queue's counts, totals, ages and processing times.

Values are read from Redis when Prometheus scrapes, so the exporter holds no state and any
number of them can run. Metric names follow Prometheus conventions (``_total`` counters,
``_seconds`` units) and are listed in docs/metrics.md.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from conveyor import connection, ops, partitions
from conveyor.errors import ConfigurationError
from conveyor.metrics import QueueMetrics
from conveyor.transport import SyncTransport

QUANTILES = (0.5, 0.9, 0.99)
STATES = ("waiting", "delayed", "active", "completed", "dead")


class QueueCollector(Collector):
    """Reads the metrics of every known queue (or the given ones) at each scrape."""

    def __init__(
        self, transport: SyncTransport, queues: Iterable[str] = (), window: float = 3600.0
    ) -> None:
        self.transport = transport
        self.queues = list(queues)
        self.window = window

    def _snapshots(self) -> list[QueueMetrics]:
        names = self.queues or self.transport.run(ops.known_queues())
        return self.transport.run(partitions.metrics_of(names, self.window))

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
        for m in self._snapshots():
            q = m.queue
            for state in STATES:
                jobs.add_metric([q, state], getattr(m.counts, state))
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def with_token(app: WSGIApp, token: str) -> WSGIApp:
    """Refuse requests that do not carry ``Authorization: Bearer <token>``."""
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if not hmac.compare_digest(given, expected):
            start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer")])
            return [b"unauthorized\n"]
        return app(environ, start_response)

    return guarded


def make_exporter(
    url: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 9808,
    token: str | None = None,
    queues: Iterable[str] = (),
) -> WSGIServer:
    """A WSGI server for ``/metrics``. Binding beyond loopback requires a token."""
    if not token and not _is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve metrics on {host} without a token (--token or CONVEYOR_TOKEN)"
        )
    resolved = connection.resolve_url(url)
    registry = CollectorRegistry()
    transport = SyncTransport(connection.sync_client(resolved), resolved)
    registry.register(QueueCollector(transport, queues))
    app: WSGIApp = make_wsgi_app(registry)
    if token:
        app = with_token(app, token)
    return make_server(host, port, app, handler_class=_QuietHandler)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass
