"""Shared fixtures: a real Portico server process on 127.0.0.1, port 0."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

APPS = Path(__file__).parent / "apps"
_LISTENING = re.compile(r"serving .+? on https?://127\.0\.0\.1:(\d+)")


class ServerProcess:
    """A ``python -m portico`` child process; its log is collected in :attr:`log`."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        ready: bool = True,
        *,
        command: list[str] | None = None,
        cwd: Path = APPS,
        pass_fds: tuple[int, ...] = (),
    ):
        self.args = args
        self.lines: list[str] = []
        self._port: int | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "portico"]), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            cwd=str(cwd),
            pass_fds=pass_fds,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if ready:
            self.wait_ready()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and self._port is None:
                self._port = int(match.group(1))
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 20.0) -> None:
        if not self._ready.wait(timeout) or self._port is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + self.log)

    @property
    def port(self) -> int:
        assert self._port is not None
        return self._port

    def worker_pids(self) -> list[int]:
        """The master's children that are workers (not the ``--reload`` watcher)."""
        return [pid for pid in children(self.proc.pid) if "worker" in cmdline(pid)]

    @property
    def worker_pid(self) -> int:
        """The one worker of a ``--workers 1`` server (its memory is the one to measure)."""
        pids = self.worker_pids()
        assert len(pids) == 1, pids
        return pids[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_log(self, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log:
                return True
            time.sleep(0.02)
        return False

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def barrier(self) -> None:
        """Wait until every line the server wrote so far has been read: the master's answer to
        SIGUSR1 ("log files reopened") is written after them, to the same pipe."""
        seen = self.log.count("log files reopened")
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while self.log.count("log files reopened") <= seen:
            assert time.monotonic() < deadline, "the server did not answer SIGUSR1"
            time.sleep(0.01)

    def wait(self, timeout: float = 20.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def stop(self) -> int:
        family = children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in family:  # a worker left behind by a killed master
            if cmdline(pid).startswith("portico:"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def raw(
        self, data: bytes, timeout: float = 5.0, shutdown: bool = False, closed: bool = False
    ) -> bytes:
        """Send raw bytes on a new connection; return everything until the server closes it
        (``closed``: and fail if it did not close before ``timeout``)."""
        return raw_exchange(self.port, data, timeout=timeout, shutdown=shutdown, closed=closed)


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` passes (False): for states the
    test cannot be told about, such as a process's file descriptors or sockets."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def established(port: int) -> int:
    """How many TCP connections to the local ``port`` are established (Linux /proc/net/tcp)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as file:
                next(file)
                for line in file:
                    fields = line.split()
                    local, state = fields[1], fields[3]
                    if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                        count += 1
        except FileNotFoundError:
            continue
    return count


def children(pid: int) -> list[int]:
    """Child processes of ``pid`` (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return [int(child) for child in file.read().split()]
    except FileNotFoundError:
        return []


def cmdline(pid: int) -> str:
    """The command line (or the title setproctitle gave it) of a process; empty once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def raw_exchange(
    port: int, data: bytes, timeout: float = 5.0, shutdown: bool = False, closed: bool = False
) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            if closed:
                raise AssertionError("the server did not close the connection") from None
        return b"".join(chunks)


ServerFactory = Callable[..., ServerProcess]


@dataclass(frozen=True)
class Certs:
    """A test CA and a server certificate for 127.0.0.1/localhost, made for one test."""

    server_pem: str  # the key and the chain, as ``--certfile`` takes them
    ca_pem: str


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    server_pem, ca_pem = tmp_path / "server.pem", tmp_path / "ca.pem"
    issued.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    return Certs(str(server_pem), str(ca_pem))


@pytest.fixture
def serve() -> Iterator[ServerFactory]:
    """``serve("app:app", "--flag", ...)`` starts a server; all are stopped after the test."""
    started: list[ServerProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        ready: bool = True,
        bind: bool = True,
        **options: Any,
    ) -> ServerProcess:
        binds = ["--bind", "127.0.0.1:0"] if bind else []
        server = ServerProcess(
            [*args, *binds, "--log-level", "info"], env=env, ready=ready, **options
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
