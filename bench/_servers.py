"""The servers under test: how each is started, when it is ready, and how it is stopped.

Every server runs one worker, as a real subprocess in its own session (so a master and its
workers can be signalled as one process group), pinned to one CPU with ``taskset``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

HOST = "127.0.0.1"
ASGI_APP = "bench.apps.asgi_app:app"
WSGI_APP = "bench.apps.wsgi_app:app"
STOP_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One server configuration, named as it appears in the tables."""

    name: str
    family: str  # what --servers selects: portico, uvicorn, granian, hypercorn, gunicorn
    interface: str  # "ASGI" or "WSGI"
    argv: Callable[[int], list[str]]  # the command line for a port, without taskset
    optional: bool = False  # a start failure reads "n/a" (not built yet), not "failed"

    @property
    def is_portico(self) -> bool:
        return self.family == "portico"


def specs(
    bin_dir: Path,
    *,
    hypercorn_worker: str,
    portico_extra: list[str],
    pure_bin: Path | None = None,
) -> list[ServerSpec]:
    """Every known server, in table order (Portico first within each interface). ``pure_bin``
    holds a pure-Python install of Portico (``PORTICO_COMPILE=0``) for the ``-pure`` rows."""

    def exe(name: str) -> str:
        return str(bin_dir / name)

    def portico(app: str, folder: Path | None = None) -> Callable[[int], list[str]]:
        command = str((folder or bin_dir) / "portico")
        return lambda port: [
            command,
            app,
            "--bind",
            f"{HOST}:{port}",
            "--log-level",
            "warning",
            *portico_extra,
        ]

    def granian(interface: str, app: str) -> Callable[[int], list[str]]:
        # --http 1: wrk speaks HTTP/1.1 only, so skip granian's protocol sniffing.
        return lambda port: [
            exe("granian"),
            "--interface",
            interface,
            "--http",
            "1",
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
            "--host",
            HOST,
            "--port",
            str(port),
            app,
        ]

    return [
        ServerSpec("portico-asgi", "portico", "ASGI", portico(ASGI_APP)),
        ServerSpec(
            "uvicorn",
            "uvicorn",
            "ASGI",
            lambda port: [
                exe("uvicorn"),
                ASGI_APP,
                "--host",
                HOST,
                "--port",
                str(port),
                "--http",
                "httptools",
                "--loop",
                "uvloop",
                "--no-access-log",
                "--log-level",
                "warning",
                "--workers",
                "1",
            ],
        ),
        ServerSpec("granian-asgi", "granian", "ASGI", granian("asgi", ASGI_APP)),
        ServerSpec(
            "hypercorn",
            "hypercorn",
            "ASGI",
            lambda port: [
                exe("hypercorn"),
                "-w",
                "1",
                "--worker-class",
                hypercorn_worker,
                "--bind",
                f"{HOST}:{port}",
                "--log-level",
                "warning",
                ASGI_APP,
            ],
        ),
        ServerSpec("portico-wsgi", "portico", "WSGI", portico(WSGI_APP), optional=True),
        ServerSpec(
            "portico-asgi-pure", "portico-pure", "ASGI", portico(ASGI_APP, pure_bin), optional=True
        ),
        ServerSpec(
            "portico-wsgi-pure", "portico-pure", "WSGI", portico(WSGI_APP, pure_bin), optional=True
        ),
        ServerSpec(
            "gunicorn",
            "gunicorn",
            "WSGI",
            lambda port: [
                exe("gunicorn"),
                "-w",
                "1",
                "-k",
                "gthread",
                "--threads",
                "8",
                "--bind",
                f"{HOST}:{port}",
                "--log-level",
                "warning",
                WSGI_APP,
            ],
        ),
        ServerSpec("granian-wsgi", "granian", "WSGI", granian("wsgi", WSGI_APP)),
    ]


def free_port() -> int:
    """A port the kernel says is free now (bind to port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ServerError(RuntimeError):
    """The server did not start, did not answer, or answered wrongly."""


class RunningServer:
    """A started server process; ``stop()`` ends it and every process it started."""

    def __init__(self, spec: ServerSpec, *, cpu: int | None, cwd: Path, log_path: Path) -> None:
        self.spec = spec
        self.port = free_port()
        self.log_path = log_path
        argv = spec.argv(self.port)
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        self.argv = argv
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(cwd), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("BENCH_RUN_IN_VENV", None)  # run.py's own marker; not the servers' business
        self._log: IO[bytes] = log_path.open("ab")
        self._log.write(f"$ {' '.join(argv)}\n".encode())
        self._log.flush()
        self._log_start = self._log.tell()  # log_tail() shows this process's output only
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise ServerError(f"cannot start: {exc}") from exc

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 3) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_start)
                text = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        if not text:
            return "(no output)"
        return " | ".join(line.strip() for line in text[-lines:])

    def wait_ready(self, timeout_s: float) -> None:
        """Poll a TCP connect plus one GET / until the server answers 200, or give up."""
        deadline = time.monotonic() + timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            if not self.alive:
                raise ServerError(f"exited with code {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    pass
            except OSError as exc:
                last_error = f"connect: {exc}"
                time.sleep(0.05)
                continue
            try:
                status, _, _ = request(self.port, "GET", "/", timeout_s=2.0)
            except (OSError, http.client.HTTPException) as exc:
                last_error = f"GET /: {exc!r}"
                time.sleep(0.05)
                continue
            if status == 200:
                return
            last_error = f"GET / answered {status}"
            time.sleep(0.05)
        raise ServerError(f"not ready after {timeout_s:.0f} s ({last_error}): {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after a grace period, and reap the leader."""
        pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        if self.alive:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                self.proc.wait()
        # Workers that outlived their master are still in the group: make sure none is left.
        _signal_group(pgid, signal.SIGKILL)
        self._log.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def request(
    port: int, method: str, path: str, *, body: bytes | None = None, timeout_s: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a fresh connection: (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def check_scenario(port: int, method: str, path: str, body: bytes | None) -> None:
    """Fail unless one request of the scenario gets the response the app is meant to give."""
    try:
        status, headers, data = request(port, method, path, body=body)
    except (OSError, http.client.HTTPException) as exc:
        raise ServerError(f"{method} {path}: {exc!r}") from exc
    if status != 200:
        raise ServerError(f"{method} {path} answered {status}")
    length = headers.get("content-length")
    if length is None or int(length) != len(data):
        raise ServerError(f"{method} {path}: Content-Length {length!r} for {len(data)} bytes")
    if path == "/" and data != b"Hello, world!":
        raise ServerError(f"GET / body {data[:40]!r}")
    if path == "/json":
        try:
            json.loads(data)
        except ValueError as exc:
            raise ServerError(f"GET /json body is not JSON: {data[:40]!r}") from exc
    if path == "/1m" and len(data) != 1 << 20:
        raise ServerError(f"GET /1m sent {len(data)} bytes")
    if path == "/echo" and data != body:
        raise ServerError(
            f"POST /echo sent back {len(data)} bytes, not the {len(body or b'')} sent"
        )


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a process and all its descendants (every thread of each),
    from /proc: a server's master, its workers and their threads."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text(encoding="ascii")
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:  # gone meanwhile
            continue
        fields = stat.rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime: stat(5) fields 14 and 15
        for task in tasks:
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running(
    spec: ServerSpec, *, cpu: int | None, cwd: Path, log_path: Path, ready_timeout_s: float
) -> Iterator[RunningServer]:
    """A ready server for the duration of the block; stopped on exit, whatever happens."""
    server = RunningServer(spec, cpu=cpu, cwd=cwd, log_path=log_path)
    try:
        server.wait_ready(ready_timeout_s)
        yield server
    finally:
        server.stop()
