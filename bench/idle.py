"""What an idle keep-alive connection costs a Portico worker: RSS growth per connection.

Starts Portico (master + one worker) on the benchmark app, opens N connections that each make one
``GET /`` and then stay open, idle, and reads the worker's memory from ``/proc`` before and after:

    python bench/idle.py [--portico .venv/bin/portico] [--interface wsgi|asgi|both]
                         [--connections 10000,limit]

``limit`` means as many as the file-descriptor hard limit lets both sides hold (the client raises
its soft ``RLIMIT_NOFILE`` to the hard limit; the worker does the same at startup). For each run
it prints the worker's growth in VmRSS and in RssAnon (``/proc/PID/status``), divided by N, and
the worker's CPU time (user + system, from ``/proc/PID/stat``) per connection-and-request.

The baseline is taken after a warm-up (a few hundred connections opened, used and closed), so that
what the first requests allocate once (imports, caches, the pool's threads) is not counted.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _servers as servers

ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle-bench\r\n\r\n"
# fds either side keeps besides the connections (listeners, the loop, pipes, logs, the pool)
FD_MARGIN = 64
WARM_UP = 500
TICKS = os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    """Raise this process's soft fd limit to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def worker_pid(master: int, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise servers.ServerError("no worker process appeared")


def memory_kib(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            fields[name] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    after_name = stat[stat.rindex(")") + 2 :].split()
    return (int(after_name[11]) + int(after_name[12])) / TICKS  # utime, stime


def one_request(sock: socket.socket) -> None:
    sock.sendall(REQUEST)
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise servers.ServerError("connection closed before the response")
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(body) >= length:
                if not head.startswith(b"HTTP/1.1 200"):
                    raise servers.ServerError(f"answered {head.splitlines()[0]!r}")
                return


def open_idle(port: int, count: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    for _ in range(count):
        sock = socket.create_connection((servers.HOST, port))
        one_request(sock)
        socks.append(sock)
    return socks


def measure(portico: str, interface: str, count: int) -> dict[str, float]:
    app = servers.WSGI_APP if interface == "wsgi" else servers.ASGI_APP
    spec = servers.ServerSpec(
        name=f"portico-{interface}",
        family="portico",
        interface=interface.upper(),
        argv=lambda port: [
            portico,
            app,
            "--bind",
            f"{servers.HOST}:{port}",
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--keepalive-timeout",
            "3600",
            "--max-connections",
            str(count + FD_MARGIN),
        ],
    )
    log_path = ROOT / "bench" / "out" / "logs" / f"idle-{interface}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with servers.running(spec, cpu=None, cwd=ROOT, log_path=log_path, ready_timeout_s=20) as srv:
        pid = worker_pid(srv.proc.pid)
        for sock in open_idle(srv.port, WARM_UP):
            sock.close()
        time.sleep(0.5)
        before = memory_kib(pid)
        cpu_before = cpu_seconds(pid)
        socks = open_idle(srv.port, count)
        cpu_after = cpu_seconds(pid)
        time.sleep(1.0)  # let the worker settle (the Date ticker, any deferred frees)
        after = memory_kib(pid)
        for sock in socks:
            sock.close()
        del socks
        gc.collect()
    return {
        "rss_kib": (after["VmRSS"] - before["VmRSS"]) / count,
        "anon_kib": (after["RssAnon"] - before["RssAnon"]) / count,
        "cpu_us": (cpu_after - cpu_before) / count * 1e6,
        "rss_total_mib": (after["VmRSS"] - before["VmRSS"]) / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--portico", default=str(ROOT / ".venv" / "bin" / "portico"))
    parser.add_argument("--interface", choices=("wsgi", "asgi", "both"), default="both")
    parser.add_argument("--connections", default="10000,limit", help="counts, or 'limit'")
    args = parser.parse_args()
    hard = raise_nofile()
    counts = [hard - FD_MARGIN if c == "limit" else int(c) for c in args.connections.split(",")]
    interfaces = ("wsgi", "asgi") if args.interface == "both" else (args.interface,)
    print(f"fd hard limit {hard}; {args.portico}")
    print(
        "| interface | idle connections | KiB/conn (VmRSS) | KiB/conn (RssAnon) "
        "| worker growth MiB | CPU µs/conn+request |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for interface in interfaces:
        for count in counts:
            r = measure(args.portico, interface, count)
            print(
                f"| {interface} | {count:,} | {r['rss_kib']:.2f} | {r['anon_kib']:.2f} "
                f"| {r['rss_total_mib']:.1f} | {r['cpu_us']:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
