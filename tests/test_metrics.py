"""Metrics without processes: a worker's counts and report, the master's sums that never go back
when a worker leaves, and the exposition read back with prometheus_client's own parser."""

from __future__ import annotations

import signal

from prometheus_client.parser import text_string_to_metric_families

from portico.runtime.metrics import BOUNDS_NS, WorkerMetrics
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
