"""Metrics without processes: a worker's counts and report, the master's sums that never go back
when a worker leaves, and the exposition read back with prometheus_client's own parser."""

from __future__ import annotations

import bisect
import selectors
import signal
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from portico.runtime.metrics import BOUNDS_NS, WorkerMetrics
from portico.supervisor import exporter
from portico.supervisor.exporter import exposition
from portico.supervisor.metrics import MasterMetrics
from portico.supervisor.process import Worker


def worker(pid: int, *, ready: bool = True) -> Worker:
    return Worker(
        pid=pid, slot=pid % 10, fd=-1, started=0.0, last_seen=0.0, ready_at=1.0 if ready else None
    )


def samples(metrics: MasterMetrics, workers: list[Worker]) -> dict[str, float]:
    body, content_type = exposition(metrics, workers, "")
    assert content_type.startswith("text/plain")
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def test_a_worker_counts_responses_into_bounded_labels() -> None:
    metrics = WorkerMetrics()
    metrics.count("GET", 200, "1.1", 40_000)  # 40 µs: the first bucket
    metrics.count("GET", 204, "1.1", 3_000_000_000)  # 3 s
    metrics.count("BREW", 418, "1.0", 100_000)  # a method nobody knows is "other"
    metrics.count("POST", 503, "2", 20_000_000_000)  # past the last bound: +Inf
    metrics.count("GET", 99, "0.9", 0)  # no status class or protocol: the last ones
    metrics.protocol_errors = 2
    (line,) = metrics.report(1, 3, 1, 500, 9000)
    tokens = dict(token.split("=") for token in line.split())
    assert tokens["r:GET:2xx:HTTP/1.1"] == "2"
    assert tokens["r:other:4xx:HTTP/1.0"] == "1"
    assert tokens["r:POST:5xx:HTTP/2"] == "1"
    assert tokens["r:GET:5xx:other"] == "1"
    assert tokens["d0"] == "3"  # 40 µs, 100 µs (on the bound) and 0
    assert tokens[f"d{BOUNDS_NS.index(5_000_000_000)}"] == "1"
    assert tokens[f"d{len(BOUNDS_NS)}"] == "1"
    assert tokens["duration_ns"] == str(40_000 + 3_000_000_000 + 100_000 + 20_000_000_000)
    assert (tokens["in_flight"], tokens["connections"], tokens["websockets"]) == ("1", "3", "1")
    assert (tokens["received"], tokens["sent"], tokens["protocol_errors"]) == ("500", "9000", "2")


def test_every_duration_lands_in_the_bucket_bisect_finds() -> None:
    # the bucket of the last response is tried first (its range kept in native ints): the
    # counts must be those of a plain bisection, on the bounds, between them and past them
    durations = [0, 1, 2]
    for bound in BOUNDS_NS:
        durations += [bound - 1, bound, bound, bound + 1]
    durations += [BOUNDS_NS[-1] * 10, 5, BOUNDS_NS[-1] * 10, BOUNDS_NS[3]]
    metrics = WorkerMetrics()
    expected = [0] * (len(BOUNDS_NS) + 1)
    for duration in durations + durations[::-1]:
        metrics.count("GET", 200, "1.1", duration)
        expected[bisect.bisect_left(BOUNDS_NS, duration)] += 1
    (line,) = metrics.report(0, 0, 0, 0, 0)
    tokens = dict(token.split("=") for token in line.split())
    assert [int(tokens.get(f"d{i}", "0")) for i in range(len(expected))] == expected


def test_runs_of_one_cell_are_counted_once_across_reports() -> None:
    # A run of equal responses is held in native counters until it ends or a report is made:
    # each response must be in exactly one report's totals, however the runs fall.
    metrics = WorkerMetrics()

    def report() -> dict[str, str]:
        (line,) = metrics.report(0, 0, 0, 0, 0)
        return dict(token.split("=") for token in line.split())

    for _ in range(5):
        metrics.count("GET", 200, "1.1", 40_000)
    metrics.count("POST", 201, "1.1", 40_000)
    metrics.count("GET", 200, "1.1", 400_000)
    first = report()
    assert first["r:GET:2xx:HTTP/1.1"] == "6"
    assert first["r:POST:2xx:HTTP/1.1"] == "1"
    assert (first["d0"], first["d2"]) == ("6", "1")
    assert report() == first  # a report moves the runs; a second one counts nothing twice
    metrics.count("GET", 200, "1.1", 400_000)
    second = report()
    assert second["r:GET:2xx:HTTP/1.1"] == "7"
    assert second["d2"] == "2"


def test_a_long_report_is_split_into_lines_shorter_than_pipe_buf() -> None:
    metrics = WorkerMetrics()
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "X"):
        for status in (100, 200, 300, 400, 500):
            for version in ("1.0", "1.1", "2", "3"):
                metrics.count(method, status, version, 10**9)
    lines = metrics.report(0, 0, 0, 0, 0)
    assert len(lines) > 1 and all(len(line) < 4096 - len("stats \n") for line in lines)
    keys = [token.split("=")[0] for line in lines for token in line.split()]
    assert len(keys) == len(set(keys))
    assert sum(key.startswith("r:") for key in keys) == 9 * 5 * 4


def test_totals_are_summed_and_never_go_back_when_workers_leave() -> None:
    master = MasterMetrics()
    first, second = worker(101), worker(102)
    for one, count in ((first, 7), (second, 5)):
        master.starts += 1
        metrics = WorkerMetrics()
        for _ in range(count):
            metrics.count("GET", 200, "1.1", 1000)
        for line in metrics.report(1, 2, 0, 100 * count, 1000 * count):
            master.report(one, line)
    before = samples(master, [first, second])
    key = "portico_requests_total{method=GET,protocol=HTTP/1.1,status=2xx}"
    assert before[key] == 12
    assert before["portico_request_duration_seconds_count{}"] == 12
    assert before["portico_request_duration_seconds_sum{}"] == 12 * 1e-6
    assert before["portico_received_bytes_total{}"] == 1200
    assert before["portico_requests_in_flight{}"] == 2
    assert before["portico_open_connections{}"] == 4
    assert before["portico_workers{}"] == 2

    master.exited(first, -signal.SIGKILL)  # died unasked: a crash, its counts kept
    after = samples(master, [second])
    assert after[key] == 12 and after["portico_sent_bytes_total{}"] == 12000
    assert after["portico_requests_in_flight{}"] == 1  # a level: the dead worker's is gone
    assert after["portico_worker_exits_total{cause=crash}"] == 1
    assert all(after[name] >= value for name, value in before.items() if "_total" in name)

    replacement = worker(103)
    master.report(replacement, "r:GET:2xx:HTTP/1.1=1 d0=1")
    assert samples(master, [second, replacement])[key] == 13
    master.report(second, "r:GET:2xx:HTTP/1.1=6 garbage=x")  # a newer total replaces the last
    assert samples(master, [second, replacement])[key] == 14


def test_exits_are_counted_by_cause() -> None:
    master = MasterMetrics()
    stopped, killed, silent, unready, crashed = (worker(pid) for pid in range(5))
    stopped.stopping_at = killed.stopping_at = 1.0
    silent.aborted = True
    unready.ready_at = None
    for one, code in (
        (stopped, 0),
        (killed, -signal.SIGKILL),
        (silent, -signal.SIGABRT),
        (unready, 3),
        (crashed, 1),
    ):
        master.exited(one, code)
    master.heartbeat_timeouts, master.reloads = 1, 2
    found = samples(master, [])
    for cause in ("stopped", "killed", "timeout", "boot_failure", "crash"):
        assert found[f"portico_worker_exits_total{{cause={cause}}}"] == 1
    assert found["portico_heartbeat_timeouts_total{}"] == 1
    assert found["portico_reloads_total{}"] == 2
    assert found["portico_requests_in_flight{}"] == 0


def test_openmetrics_when_the_scraper_asks() -> None:
    body, content_type = exposition(
        MasterMetrics(), [], "application/openmetrics-text; version=1.0.0"
    )
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_a_stalled_scrape_is_closed_by_the_sweep_without_a_new_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A scraper that sends half a head and waits must not hold one of the few scrape slots
    # until the next scraper connects: the master's tick sweeps it past the deadline.
    monkeypatch.setattr(exporter, "_DEADLINE", 0.2)
    with selectors.DefaultSelector() as selector:
        endpoint = exporter.MetricsEndpoint("127.0.0.1:0", selector, MasterMetrics(), {})
        try:
            port = endpoint.sock.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(b"GET /metrics HTTP/1.1\r\n")  # no end of head
                for key, events in selector.select(1.0):
                    key.data(events)  # accept, then read the partial head
                assert len(endpoint.scrapes) == 1
                endpoint.sweep()
                assert len(endpoint.scrapes) == 1  # not yet past the deadline
                time.sleep(0.3)
                endpoint.sweep()
                assert endpoint.scrapes == {}
                # closed by the server: an end of stream, or a reset since the head it got was
                # never read
                try:
                    assert client.recv(1) == b""
                except ConnectionResetError:
                    pass
        finally:
            endpoint.close()
