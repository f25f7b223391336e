"""The master process, with real processes, real signals and real load (wrk).

Each test starts ``python -m portico`` (the master) and acts on it the way an operator would:
signals, kill -9, edits on disk. "Zero failed requests" is wrk's count of socket errors and
non-2xx responses.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory, ServerProcess, cmdline, established, wait_until
from tests.wrk import Load


def answering_pids(server: ServerProcess, count: int = 40) -> set[int]:
    """Pids of the workers that answered ``count`` requests, each on a new connection."""
    return {int(httpx.get(server.url).text) for _ in range(count)}


def test_workers_share_the_listener_and_have_titles(serve: ServerFactory) -> None:
    server = serve("master_apps:app", "--workers", "2")
    pids = server.worker_pids()
    assert len(pids) == 2
    assert wait_until(lambda: answering_pids(server) == set(pids))
    assert cmdline(server.proc.pid).startswith("portico: master")
    assert all(cmdline(pid).startswith("portico: worker") for pid in pids)
    assert server.log.count("Portico serving") == 1  # once, when both are ready
    assert server.stop() == 0


def test_kill_9_of_a_worker_is_healed_and_only_its_requests_fail(serve: ServerFactory) -> None:
    server = serve("master_apps:app", "--workers", "2")
    victim, survivor = server.worker_pids()
    load = Load(server.url, seconds=4, connections=8)
    assert wait_until(lambda: established(server.port) >= 8)  # wrk is under way
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids())
    result = load.result()
    # at most the victim's connections (one request in flight each) fail
    assert result.failed <= 8, result.output
    assert result.requests > 1000
    assert survivor in server.worker_pids()
    assert "died (signal SIGKILL)" in server.log


@pytest.mark.parametrize(
    ("app", "signals"),
    [
        ("master_apps:app", ("SIGHUP",)),
        ("master_apps:app", ("SIGTTIN", "SIGTTOU")),
        # a WSGI response is written from a thread: a shutdown can begin between its head (which
        # promised keep-alive) and its end, and that promise must still be kept
        ("wsgi_apps:echo", ("SIGHUP",)),
    ],
)
def test_hup_ttin_ttou_under_load_fail_no_request(
    serve: ServerFactory, app: str, signals: tuple[str, ...]
) -> None:
    server = serve(app, "--workers", "2")
    before = set(server.worker_pids())
    load = Load(server.url, seconds=6)
    assert wait_until(lambda: established(server.port) >= 16)  # wrk is under way
    for number, name in enumerate(signals, 1):
        server.signal(signal.Signals[name])
        # each signal's effect is complete before the next one (or the end of the load)
        want = 3 if name == "SIGTTIN" else 2
        done = (
            (lambda n=number: server.log.count("reload complete") >= n)
            if name == "SIGHUP"
            else (lambda n=want: len(server.worker_pids()) == n)
        )
        assert wait_until(done, 30), server.log[-3000:]
    result = load.result()
    # the server's log goes with a failure: which worker closed what, and when
    assert result.failed == 0, result.output + server.log[-4000:]
    assert result.requests > 1000
    after = set(server.worker_pids())
    assert len(after) == 2
    if signals == ("SIGHUP",):
        assert not before & after  # every worker was replaced
        assert "reload complete" in server.log
    else:
        assert "workers: 2 -> 3" in server.log and "workers: 3 -> 2" in server.log
    assert server.stop() == 0


def test_max_requests_recycles_workers_one_at_a_time_without_failures(
    serve: ServerFactory,
) -> None:
    server = serve(
        "master_apps:app",
        "--workers",
        "2",
        "--max-requests",
        "3000",
        "--max-requests-jitter",
        "500",
    )
    before = set(server.worker_pids())
    result = Load(server.url, seconds=6).result()
    assert result.failed == 0, result.output
    assert result.requests > 7000, result.output
    assert not before & set(server.worker_pids())
    assert server.log.count("asked to be replaced") >= 2
    assert server.stop() == 0


def test_term_lets_the_slow_request_finish_and_exits_0(serve: ServerFactory) -> None:
    server = serve("master_apps:app", "--workers", "2")
    with httpx.Client(timeout=10) as client:
        outcome: list[httpx.Response] = []
        import threading  # noqa: PLC0415

        thread = threading.Thread(target=lambda: outcome.append(client.get(server.url + "/slow?2")))
        thread.start()
        assert server.wait_for_log("slow request started")
        server.signal(signal.SIGTERM)
        thread.join(10)
    assert outcome and outcome[0].status_code == 200
    assert outcome[0].headers["connection"] == "close"
    assert server.wait() == 0
    assert server.log.count("lifespan shutdown in") == 2


def test_a_hung_worker_is_aborted_with_its_stack_and_replaced(serve: ServerFactory) -> None:
    server = serve("master_apps:app", "--timeout", "2")
    hung = server.worker_pid
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/block", timeout=10)
    assert wait_until(lambda: hung not in server.worker_pids() and server.worker_pids() != [])
    assert "silent for" in server.log
    assert "blocking_call_in_the_event_loop" in server.log  # faulthandler's dump
    assert int(httpx.get(server.url).text) != hung


@pytest.mark.parametrize(
    ("app", "code", "message"),
    [
        ("master_broken:app", 4, "this module is broken on purpose"),
        ("master_apps:nope", 4, "has no attribute 'nope'"),
        ("master_apps:failing_lifespan", 3, "no database"),
    ],
)
def test_a_worker_that_cannot_boot_stops_the_master(
    serve: ServerFactory, app: str, code: int, message: str
) -> None:
    server = serve(app, "--workers", "2", ready=False)
    assert server.wait() == code
    assert message in server.log
    assert server.log.count("failed to start") == 1  # no crash loop


def test_preload_imports_the_app_once_in_the_master(serve: ServerFactory) -> None:
    server = serve("master_apps:app", "--workers", "2", "--preload")
    assert server.log.count("master_apps imported in process") == 1
    assert f"imported in process {server.proc.pid}" in server.log
    assert len(answering_pids(server)) >= 1


def test_max_worker_memory_replaces_a_grown_worker(serve: ServerFactory) -> None:
    server = serve("master_apps:app", "--max-worker-memory", "100")
    grown = server.worker_pid
    for _ in range(2):
        assert httpx.get(server.url + "/grow", timeout=10).status_code == 200
    assert wait_until(lambda: grown not in server.worker_pids() and server.worker_pids() != [])
    assert "--max-worker-memory" in server.log
    assert int(httpx.get(server.url).text) != grown


def test_a_worker_that_keeps_dying_is_restarted_with_backoff(serve: ServerFactory) -> None:
    server = serve("master_apps:app")
    for _ in range(3):
        server.wait_ready()
        pid = server.worker_pid
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url + "/exit")
        assert wait_until(lambda: server.worker_pids() not in ([], [pid]), timeout=10)  # noqa: B023
    assert "died (exit code 1); starting a new one\n" in server.log + "\n"
    assert re.search(r"died \(exit code 1\); starting a new one in 0\.5s", server.log)
    assert re.search(r"died \(exit code 1\); starting a new one in 1\.0s", server.log)
    assert httpx.get(server.url).status_code == 200


def test_hup_rereads_the_config_file(serve: ServerFactory, tmp_path: Path) -> None:
    config = tmp_path / "portico.toml"
    config.write_text("server_header = true\n")
    server = serve("master_apps:app", "--config", str(config))
    assert httpx.get(server.url).headers["server"] == "portico"
    config.write_text("server_header = false\n")
    server.signal(signal.SIGHUP)
    assert server.wait_for_log("reload complete")
    assert "server" not in httpx.get(server.url).headers
    config.write_text("server_header = 'maybe'\n")
    server.signal(signal.SIGHUP)
    assert server.wait_for_log("the new configuration is invalid")
    assert "server" not in httpx.get(server.url).headers
