"""Observability end to end: access logs in a gunicorn format and in JSON under hostile requests,
X-Request-ID, measured request times, the JSON error log, and a Prometheus scrape of the master
whose counters are summed over the workers and survive a worker's death and a reload."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerFactory, ServerProcess, raw_exchange
from tests.test_uwsgi import nginx_vars, packet

GUNICORN = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s %({x-request-id}o)s'


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def lines_of(path: Path, count: int) -> list[str]:
    """The first ``count`` lines of an access log, once the workers have written them."""
    assert wait_until(lambda: path.exists() and path.read_text().count("\n") >= count)
    return path.read_text().splitlines()


# Requests the HTTP parser lets through, each carrying what a forger would like to see logged:
# quotes, backslashes, bytes that are not UTF-8, a line of its own.
HOSTILE = [
    b'GET /a%0a203.0.113.9%20-%20-%20"x HTTP/1.1\r\nHost: x\r\n'
    b'User-Agent: "\\" 200 0 "-" "-"\t\xff\xfe\r\nReferer: \xc3\xa9\\x0a"\r\n\r\n',
    b'GET /q?"}{"status":200, HTTP/1.1\r\nHost: x\r\nUser-Agent: "},"forged":{"\r\n'
    b"X-Request-ID: \xed\xa0\x80bad id\r\n\r\n",
    b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Request-ID: upstream-42\r\nUser-Agent: \x80\x81\r\n\r\n",
]


def send_hostile(server: ServerProcess) -> list[bytes]:
    """Each request on its own connection, which the server closes after its answer."""
    closing = [r.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n", 1) for r in HOSTILE]
    return [raw_exchange(server.port, request) for request in closing]


def test_gunicorn_format_with_hostile_requests_and_request_ids(
    serve: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    server = serve(
        "asgi_apps:echo",
        "--access-log-file",
        str(log),
        "--access-log-format",
        GUNICORN,
        "--request-id",
    )
    answers = send_hostile(server)
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers), answers
    ids = [re.search(rb"\r\nx-request-id: ([^\r]+)\r\n", answer) for answer in answers]
    assert all(ids), answers
    generated, replaced, kept = (match.group(1).decode() for match in ids if match)
    assert re.fullmatch(r"[0-9a-f]{32}", generated) and re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert generated != replaced and kept == "upstream-42"
    # the app saw the same id among its request headers
    body = json.loads(answers[0].split(b"\r\n\r\n", 1)[1])
    assert ["x-request-id", generated] in body["headers"]
    lines = lines_of(log, 3)
    assert len(lines) == 3  # no forged line
    pattern = re.compile(
        r'127\.0\.0\.1 - - \[[^]"]+\] "([^"]*)" 200 \d+ "([^"]*)" "([^"]*)" (\d+) (\S+)'
    )
    seen = []
    for line in lines:
        assert line.isascii() and line.isprintable(), line
        match = pattern.fullmatch(line)
        assert match, line
        seen.append(match.groups())
    first, second, third = seen
    assert first[0].startswith("GET /a%0a203.0.113.9%20-%20-%20\\x22x HTTP/1.1")
    assert first[2] == "\\x22\\x5c\\x22 200 0 \\x22-\\x22 \\x22-\\x22\\x09\\xff\\xfe"
    assert first[1] == "\\xc3\\xa9\\x5cx0a\\x22"
    assert (first[4], second[4], third[4]) == (generated, replaced, kept)
    assert all(0 < int(row[3]) < 5_000_000 for row in seen)  # µs, measured


def test_json_access_log_with_hostile_requests(serve: ServerFactory, tmp_path: Path) -> None:
    log = tmp_path / "access.json"
    server = serve("asgi_apps:echo", "--access-log-file", str(log), "--access-log-format", "json")
    send_hostile(server)
    entries = [json.loads(line) for line in lines_of(log, 3)]
    assert len(entries) == 3
    assert [entry["status"] for entry in entries] == [200, 200, 200]
    first, second, third = entries
    assert first["user_agent"] == '"\\" 200 0 "-" "-"\t\\xff\\xfe'
    assert first["referer"] == 'é\\x0a"'
    assert first["target"] == '/a%0a203.0.113.9%20-%20-%20"x'
    assert second["user_agent"] == '"},"forged":{"' and "forged" not in second
    assert second["request_id"] == "\\xed\\xa0\\x80bad id"  # shown, not adopted (no --request-id)
    assert third["user_agent"] == "\\x80\\x81" and third["request_id"] == "upstream-42"
    assert all(entry["client_addr"] == "127.0.0.1" and entry["pid"] > 0 for entry in entries)
    assert all(isinstance(entry["duration_us"], int) for entry in entries)


def test_the_request_time_is_measured(serve: ServerFactory, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = serve(
        "asgi_apps:slow", "--access-log-file", str(log), "--access-log-format", "{duration_us}"
    )
    httpx.get(server.url + "/?0.3")
    httpx.get(server.url + "/?0")
    slow, fast = (int(line) for line in lines_of(log, 2))
    assert 300_000 <= slow < 1_500_000
    assert 0 < fast < 300_000  # not rounded to the worker's one-second clock


def test_json_error_log(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--log-format", "json", "--workers", "2")
    server.stop()
    entries = [json.loads(line) for line in server.lines if line.startswith("{")]
    messages = [entry["message"] for entry in entries]
    assert any(message.startswith("Portico serving") for message in messages)
    assert {entry["level"] for entry in entries} <= {"debug", "info", "warning"}
    assert len({entry["pid"] for entry in entries}) >= 2  # the master and its workers


# --- metrics ------------------------------------------------------------------------------------

_METRICS = re.compile(r"Portico metrics on (http://127\.0\.0\.1:\d+)/metrics")


def scrape(server: ServerProcess) -> dict[str, float]:
    """Every sample of a scrape, by ``name{label=value,...}``."""
    match = _METRICS.search(server.log)
    assert match, server.log
    text = httpx.get(match.group(1) + "/metrics").text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def requests_total(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("portico_requests_total{"))


def answering(server: ServerProcess, count: int) -> set[int]:
    """Pids of the workers that answered ``count`` requests, each on its own connection."""
    return {int(httpx.get(server.url, headers={"Connection": "close"}).text) for _ in range(count)}


@pytest.mark.timeout(90)
def test_a_scrape_sums_the_workers_and_survives_a_kill_and_a_reload(serve: ServerFactory) -> None:
    server = serve("master_apps:app", "--workers", "2", "--metrics-bind", "127.0.0.1:0")
    workers = set(server.worker_pids())
    sent, pids = 0, set()
    while pids != workers and sent < 400:  # until both workers have answered some
        pids |= answering(server, 10)
        sent += 10
    assert pids == workers
    assert wait_until(lambda: requests_total(scrape(server)) == sent)
    samples = scrape(server)
    key = "portico_requests_total{method=GET,protocol=HTTP/1.1,status=2xx}"
    assert samples[key] == sent
    assert samples["portico_request_duration_seconds_count{}"] == sent
    assert samples["portico_request_duration_seconds_bucket{le=+Inf}"] == sent
    assert samples["portico_received_bytes_total{}"] > 0 < samples["portico_sent_bytes_total{}"]
    assert samples["portico_workers{}"] == 2 and samples["portico_worker_starts_total{}"] == 2
    assert samples["portico_open_connections{}"] == 0
    memory = {k: v for k, v in samples.items() if k.startswith("portico_worker_memory_bytes")}
    assert len(memory) == 2 and all(v > 10 * 2**20 for v in memory.values())

    # SIGKILL: the victim's last report (a second old at most) stays in the totals
    victim = next(iter(workers))
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids())
    after_kill = scrape(server)
    assert after_kill["portico_worker_exits_total{cause=crash}"] == 1
    assert after_kill["portico_worker_starts_total{}"] == 3
    assert requests_total(after_kill) >= sent * 0.5  # what the survivor and the report held
    assert all(after_kill[k] >= v for k, v in samples.items() if k.endswith("_total{}"))
    before_reload = after_kill[key]
    more = 10
    answering(server, more)
    assert wait_until(lambda: scrape(server)[key] == before_reload + more)

    # a reload replaces both workers; their final reports make the totals exact
    server.signal(signal.SIGHUP)
    assert server.wait_for_log("reload complete", timeout=30)
    assert wait_until(lambda: scrape(server)["portico_worker_exits_total{cause=stopped}"] == 2)
    after_reload = scrape(server)
    assert after_reload[key] == before_reload + more
    assert after_reload["portico_reloads_total{}"] == 1
    assert after_reload["portico_worker_starts_total{}"] == 5
    assert server.stop() == 0


def test_the_metrics_endpoint_speaks_only_what_a_scraper_needs(serve: ServerFactory) -> None:
    server = serve("master_apps:app", "--metrics-bind", "127.0.0.1:0")
    match = _METRICS.search(server.log)
    assert match
    base = match.group(1)
    openmetrics = httpx.get(
        base + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
    assert httpx.get(base + "/").status_code == 404
    assert httpx.post(base + "/metrics").status_code == 405
    head = httpx.head(base + "/metrics")
    assert head.status_code == 200 and head.content == b""
    port = int(base.rsplit(":", 1)[1])
    assert raw_exchange(port, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_exchange(port, b"GET /metrics HTTP/1.1\r\n" + b"x" * 9000).startswith(
        b"HTTP/1.1 431 "
    )
    # the app's port knows nothing of metrics
    assert httpx.get(server.url + "/metrics").text.isdigit()


def test_every_protocol_is_logged_counted_and_given_its_request_id(
    serve: ServerFactory, tmp_path: Path
) -> None:
    """HTTP/2 (h2c) and uwsgi go through the same context as HTTP/1.1: the id is added by their
    drivers, their lines name their protocol, and the metrics count their bytes."""
    log = tmp_path / "access.json"
    fields = "json:protocol,status,request_id,response_header:x-request-id,bytes"
    server = serve(
        "master_apps:app",
        "--bind",
        "uwsgi:127.0.0.1:0",
        "--request-id",
        "--access-log-file",
        str(log),
        "--access-log-format",
        fields,
        "--metrics-bind",
        "127.0.0.1:0",
    )
    with httpx.Client(http1=False, http2=True) as client:
        h2 = client.get(server.url, headers={"x-request-id": "from-the-edge"})
    assert h2.http_version == "HTTP/2" and h2.headers["x-request-id"] == "from-the-edge"
    bound = re.search(r"on uwsgi://127\.0\.0\.1:(\d+)", server.log)
    assert bound, server.log
    uwsgi_port = int(bound.group(1))
    with socket.create_connection(("127.0.0.1", uwsgi_port), timeout=10) as sock:
        sock.sendall(packet(nginx_vars()))
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    made = re.search(rb"\r\nx-request-id: ([0-9a-f]{32})\r\n", reply)
    assert reply.startswith(b"HTTP/1.1 200 ") and made, reply
    entries = [json.loads(line) for line in lines_of(log, 2)]
    assert {(e["protocol"], e["request_id"]) for e in entries} == {
        ("HTTP/2", "from-the-edge"),
        ("HTTP/1.1", made.group(1).decode()),
    }
    assert all(e["response_header:x-request-id"] == e["request_id"] for e in entries)
    assert wait_until(lambda: requests_total(scrape(server)) == 2)
    samples = scrape(server)
    assert samples["portico_requests_total{method=GET,protocol=HTTP/2,status=2xx}"] == 1
    assert samples["portico_received_bytes_total{}"] > len(packet(nginx_vars()))
    assert samples["portico_sent_bytes_total{}"] > len(reply)
