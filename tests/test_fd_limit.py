"""The worker raises its soft descriptor limit for --max-connections, and says when it cannot."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

from portico.worker.fd_limit import FD_RESERVE, ensure_fd_limit
from tests.conftest import ServerFactory

NOFILE = resource.RLIMIT_NOFILE
INF = resource.RLIM_INFINITY


class FakeLimits:
    """``getrlimit``/``setrlimit`` over one remembered pair; ``refuse`` makes setrlimit fail."""

    def __init__(self, soft: int, hard: int, *, refuse: bool = False) -> None:
        self.limits = (soft, hard)
        self.refuse = refuse
        self.calls: list[tuple[int, int]] = []

    def get(self, which: int) -> tuple[int, int]:
        assert which == NOFILE
        return self.limits

    def set(self, which: int, limits: tuple[int, int]) -> None:
        assert which == NOFILE
        self.calls.append(limits)
        if self.refuse:
            raise ValueError("not allowed to raise maximum limit")
        self.limits = limits


def test_soft_limit_raised_to_the_hard_limit() -> None:
    fake = FakeLimits(1024, 20000)
    assert ensure_fd_limit(10000, fake.get, fake.set) == (20000, None)
    assert fake.limits == (20000, 20000)


def test_enough_already_is_left_alone() -> None:
    fake = FakeLimits(20000, 40000)
    assert ensure_fd_limit(10000, fake.get, fake.set) == (20000, None)
    assert fake.calls == []


def test_hard_limit_too_low_is_raised_to_and_reported() -> None:
    fake = FakeLimits(1024, 4096)
    soft, warning = ensure_fd_limit(10000, fake.get, fake.set)
    assert soft == 4096
    assert fake.limits == (4096, 4096)
    assert warning is not None
    assert "(4096)" in warning
    assert f"needs {10000 + FD_RESERVE}" in warning
    assert f"past about {4096 - FD_RESERVE}" in warning


def test_unlimited_hard_limit_takes_what_is_needed() -> None:
    fake = FakeLimits(1024, INF)
    assert ensure_fd_limit(10000, fake.get, fake.set) == (10000 + FD_RESERVE, None)
    assert fake.limits == (10000 + FD_RESERVE, INF)


def test_refused_raise_keeps_the_soft_limit_and_says_so() -> None:
    fake = FakeLimits(1024, 20000, refuse=True)
    soft, warning = ensure_fd_limit(10000, fake.get, fake.set)
    assert soft == 1024
    assert fake.limits == (1024, 20000)
    assert warning is not None
    assert "(1024)" in warning


def _soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' line")


def _prlimit(soft: int, hard: int) -> list[str]:
    return ["prlimit", f"--nofile={soft}:{hard}", sys.executable, "-m", "portico"]


def test_worker_raises_its_soft_limit(serve: ServerFactory) -> None:
    _, hard = resource.getrlimit(NOFILE)
    needed = 2000 + FD_RESERVE
    assert hard >= needed, "the machine's hard limit is too low for this test"
    server = serve("asgi_apps:echo", "--max-connections", "2000", command=_prlimit(256, needed))
    assert _soft_nofile(server.worker_pid) == needed
    assert "file-descriptor limit" not in server.log


def test_worker_says_when_the_hard_limit_is_too_low(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--max-connections", "2000", command=_prlimit(256, 512))
    assert server.wait_for_log("the file-descriptor limit (512) is too low for --max-connections")
    assert _soft_nofile(server.worker_pid) == 512
