"""The graceful drain under HTTP/2 load: h2load against two workers while they are replaced.

A worker that drains sends GOAWAY, waits for the requests already on their way (a PING's round
trip and a second), answers them, and only then closes (RFC 9113 §6.8): no request h2load sent
may fail. (Requests h2load queued but never sent because a GOAWAY came first are its own
refusals, not the server's: see ``tests/h2load.py``; they stay a small fraction.)
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.conftest import ServerFactory, established, wait_until
from tests.h2load import H2Load


def test_sighup_under_h2load_fails_no_request(serve: ServerFactory, tmp_path: Path) -> None:
    server = serve("master_apps:app", "--workers", "2")
    before = set(server.worker_pids())
    load = H2Load(server.url, seconds=10, log=tmp_path / "h2load.log")
    assert wait_until(lambda: established(server.port) >= 16)  # h2load is under way
    server.signal(signal.SIGHUP)
    result = load.result()
    assert result.bad == 0, result.output + server.log[-4000:]
    # Load really ran through the reload. Not a throughput bar: a client whose connection got
    # the GOAWAY sends little more ("Process Request Failure" in h2load's output), so the count
    # mostly says how fast the machine served before the SIGHUP (8,730 on one loaded CI run).
    assert result.succeeded > 1_000, result.output
    # A client whose connection got the GOAWAY may leave the requests it had queued unsent:
    # at most its window of -m10 streams, so 16 x 10 in all, whatever the machine's speed (a
    # share of the succeeded count failed a loaded CI run at 160 of 15,720).
    assert result.never_sent <= 16 * 10, result.output
    assert "reload complete" in server.log
    assert not before & set(server.worker_pids())  # every worker was replaced
    assert server.stop() == 0


def test_max_requests_recycling_under_h2load_fails_no_request(
    serve: ServerFactory, tmp_path: Path
) -> None:
    server = serve("master_apps:app", "--workers", "2", "--max-requests", "15000")
    before = set(server.worker_pids())
    result = H2Load(server.url, seconds=8, log=tmp_path / "h2load.log").result()
    assert result.bad == 0, result.output + server.log[-4000:]
    assert before - set(server.worker_pids())  # a worker was recycled under the load
    assert "asked to be replaced" in server.log
    assert server.stop() == 0
