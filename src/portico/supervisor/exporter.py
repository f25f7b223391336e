"""``--metrics-bind``: the master answers Prometheus scrapes of ``/metrics`` on its own socket.

The text is ``prometheus_client``'s exposition (OpenMetrics when the scraper's ``Accept`` asks
for it) of the totals ``supervisor.metrics`` keeps. The HTTP is the least a scraper needs, read
and written without blocking from the master's own selector loop: one ``GET`` or ``HEAD`` per
connection, a head of at most 8 KiB, ``Connection: close``, at most eight connections at a time,
each given ten seconds. No thread is started (the master forks) and none of the workers' HTTP
code is imported: the master stays a supervisor that happens to print numbers.

A TCP address is bound with ``SO_REUSEPORT``, so that during a ``SIGUSR2`` upgrade the new
master binds it beside the old one; both answer until the old one stops, each with its own
totals (a new master's counters start again from zero, which Prometheus' ``rate`` expects).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import time
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from portico.logs import error_log as log
from portico.runtime.binds import create_socket, describe, parse_bind
from portico.runtime.metrics import BOUNDS_NS, REQUEST_KEY
from portico.supervisor.metrics import EXIT_CAUSES, MasterMetrics
from portico.supervisor.process import Worker, rss_mib

__all__ = ["MetricsEndpoint", "exposition"]


_MAX_HEAD = 8192
_MAX_CONNECTIONS = 8
_DEADLINE = 10.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
}


class _Families(Collector):
    """The series of one scrape (``prometheus_client`` calls :meth:`collect`)."""

    def __init__(self, metrics: MasterMetrics, workers: list[Worker]) -> None:
        self.metrics = metrics
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        metrics, workers = self.metrics, self.workers
        totals = metrics.totals(workers)
        counters, gauges = totals.counters, totals.gauges
        requests = CounterMetricFamily(
            "portico_requests",
            "Responses, by method, status class and protocol.",
            labels=("method", "status", "protocol"),
        )
        for key, value in sorted(counters.items()):
            if key.startswith(REQUEST_KEY + ":"):
                _, method, status, protocol = key.split(":", 3)
                requests.add_metric((method, status, protocol), value)
        yield requests
        cumulative = 0.0
        buckets: list[tuple[str, float]] = []
        for index, bound in enumerate(BOUNDS_NS):
            cumulative += counters.get(f"d{index}", 0.0)
            buckets.append((repr(bound / 1e9), cumulative))
        cumulative += counters.get(f"d{len(BOUNDS_NS)}", 0.0)
        buckets.append(("+Inf", cumulative))
        yield HistogramMetricFamily(
            "portico_request_duration_seconds",
            "Time from a request's admission to its response's last byte.",
            buckets=buckets,
            sum_value=counters.get("duration_ns", 0.0) / 1e9,
        )
        for name, key, text in (
            ("portico_requests_in_flight", "in_flight", "Requests being answered now."),
            ("portico_open_connections", "connections", "Client connections open now."),
            ("portico_open_websockets", "websockets", "WebSockets open now."),
        ):
            yield GaugeMetricFamily(name, text, value=gauges.get(key, 0.0))
        for name, key, text in (
            ("portico_received_bytes", "received", "Bytes received from clients."),
            ("portico_sent_bytes", "sent", "Bytes sent to clients."),
            ("portico_protocol_errors", "protocol_errors", "Requests refused as malformed."),
        ):
            yield CounterMetricFamily(name, text, value=counters.get(key, 0.0))
        yield CounterMetricFamily("portico_worker_starts", "Workers started.", value=metrics.starts)
        exits = CounterMetricFamily("portico_worker_exits", "Workers gone.", labels=("cause",))
        for cause in EXIT_CAUSES:
            exits.add_metric((cause,), metrics.exits[cause])
        yield exits
        yield CounterMetricFamily(
            "portico_heartbeat_timeouts",
            "Workers silent for longer than --timeout.",
            value=metrics.heartbeat_timeouts,
        )
        yield CounterMetricFamily(
            "portico_reloads", "Reloads (SIGHUP, --reload).", value=metrics.reloads
        )
        yield GaugeMetricFamily("portico_workers", "Worker processes.", value=len(workers))
        memory = GaugeMetricFamily(
            "portico_worker_memory_bytes",
            "Resident memory of each worker.",
            labels=("slot", "pid"),
        )
        for worker in sorted(workers, key=lambda w: (w.slot, w.pid)):
            memory.add_metric((str(worker.slot), str(worker.pid)), rss_mib(worker.pid) * 2**20)
        yield memory


def exposition(metrics: MasterMetrics, workers: Iterable[Worker], accept: str) -> tuple[bytes, str]:
    """The scrape's body and its content type, as ``Accept`` asks."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(metrics, list(workers)))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


class _Scrape:
    """One connection: read a head, write the answer, close."""

    def __init__(self, endpoint: MetricsEndpoint, sock: socket.socket) -> None:
        self.endpoint = endpoint
        self.sock = sock
        self.started = time.monotonic()
        self.head = b""
        self.out = b""

    def on_events(self, events: int) -> None:
        try:
            if self.out:
                self._send()
                return
            data = self.sock.recv(_MAX_HEAD)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        self.head += data
        if b"\r\n\r\n" not in self.head and b"\n\n" not in self.head:
            if len(self.head) > _MAX_HEAD:
                self._answer(431, b"request head too large\n", "text/plain")
            return
        self._respond()

    def _respond(self) -> None:
        lines = self.head.split(b"\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._answer(400, b"bad request\n", "text/plain")
            return
        method, target = parts[0], parts[1]
        if target.partition(b"?")[0] != b"/metrics":
            self._answer(404, b"the metrics are at /metrics\n", "text/plain")
            return
        if method not in (b"GET", b"HEAD"):
            self._answer(405, b"GET or HEAD\n", "text/plain")
            return
        accept = ""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"accept":
                accept = value.strip().decode("latin-1")
        body, content_type = self.endpoint.render(accept)
        self._answer(200, body, content_type, head_only=method == b"HEAD")

    def _answer(self, status: int, body: bytes, content_type: str, head_only: bool = False) -> None:
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            + ("Allow: GET, HEAD\r\n" if status == 405 else "")
            + "Connection: close\r\n\r\n"
        )
        self.out = head.encode("latin-1") + (b"" if head_only else body)
        self.endpoint.selector.modify(self.sock, selectors.EVENT_WRITE, self.on_events)
        self._send()

    def _send(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self.out = self.out[sent:]
        if not self.out:
            self.close()

    def close(self) -> None:
        self.endpoint.closed(self)


class MetricsEndpoint:
    """The listening socket of ``--metrics-bind`` and its connections, in the master's selector."""

    def __init__(
        self,
        address: str,
        selector: selectors.BaseSelector,
        metrics: MasterMetrics,
        workers: Mapping[int, Worker],
    ) -> None:
        self.selector = selector
        self.metrics = metrics
        self.workers = workers
        kind, path, _ = parse_bind(address)
        self.unix_path = path if kind == "unix" else ""
        self.sock = create_socket(address, 64, reuse_port=kind == "tcp")
        self.scrapes: dict[int, _Scrape] = {}
        selector.register(self.sock, selectors.EVENT_READ, self._accept)
        log.info("Portico metrics on %s/metrics", describe(self.sock))

    def render(self, accept: str) -> tuple[bytes, str]:
        return exposition(self.metrics, self.workers.values(), accept)

    def fds(self) -> list[int]:
        """Descriptors a forked worker must close."""
        return [self.sock.fileno(), *self.scrapes]

    def _accept(self, events: int) -> None:
        try:
            sock, _ = self.sock.accept()
        except OSError:  # BlockingIOError, or the peer already gave up
            return
        self.sweep()
        if len(self.scrapes) >= _MAX_CONNECTIONS:
            sock.close()
            return
        sock.setblocking(False)
        scrape = _Scrape(self, sock)
        self.scrapes[sock.fileno()] = scrape
        self.selector.register(sock, selectors.EVENT_READ, scrape.on_events)

    def sweep(self) -> None:
        """Close the scrapes older than ``_DEADLINE`` (a client that sent half a head, or stopped
        reading): called on every master tick, so one is dropped within a second of its
        deadline, not when the next scraper happens to connect."""
        now = time.monotonic()
        for scrape in [s for s in self.scrapes.values() if now - s.started > _DEADLINE]:
            scrape.close()

    def closed(self, scrape: _Scrape) -> None:
        fd = scrape.sock.fileno()
        if self.scrapes.pop(fd, None) is not None:
            self.selector.unregister(scrape.sock)
        scrape.sock.close()

    def close(self) -> None:
        for scrape in list(self.scrapes.values()):
            scrape.close()
        self.selector.unregister(self.sock)
        self.sock.close()
        if self.unix_path:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)
