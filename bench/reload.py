#!/usr/bin/env python3
"""Reloads under load: how many requests each server fails while it replaces its workers.

    python bench/run.py --scenarios plaintext --duration 2   # once: builds bench/.venv
    bench/.venv/bin/python bench/reload.py [--duration 12] [--connections 64] [--signals 3]

Every server runs two workers of the same app (`bench/apps/`). wrk keeps `--connections`
keep-alive connections busy for `--duration` seconds while the master gets SIGHUP `--signals`
times, evenly spaced. Printed per server: requests served, requests failed (wrk's socket errors
plus non-2xx answers) and whether every worker was really replaced. Not pinned: two workers and
wrk share the two CPUs, so compare failures, not throughput.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import _report as report
import _servers as servers
import _wrk as wrk

BENCH_DIR = Path(__file__).resolve().parent
BIN = BENCH_DIR / ".venv" / "bin"


def commands() -> dict[str, tuple[str, list[str]]]:
    """name -> (interface, argv with {port}); each runs two workers."""
    host = servers.HOST
    return {
        "portico (ASGI)": (
            "ASGI",
            [str(BIN / "portico"), servers.ASGI_APP, "--workers", "2", "--bind", f"{host}:{{port}}",
             "--log-level", "warning"],
        ),
        "uvicorn --workers 2": (
            "ASGI",
            [str(BIN / "uvicorn"), servers.ASGI_APP, "--workers", "2", "--host", host, "--port",
             "{port}", "--log-level", "warning", "--no-access-log"],
        ),
        "granian (ASGI)": (
            "ASGI",
            [str(BIN / "granian"), "--interface", "asgi", "--http", "1", "--workers", "2",
             "--host", host, "--port", "{port}", "--log-level", "warning", "--no-access-log",
             servers.ASGI_APP],
        ),
        "portico (WSGI)": (
            "WSGI",
            [str(BIN / "portico"), servers.WSGI_APP, "--workers", "2", "--bind", f"{host}:{{port}}",
             "--log-level", "warning"],
        ),
        "gunicorn gthread": (
            "WSGI",
            [str(BIN / "gunicorn"), "-w", "2", "-k", "gthread", "--threads", "8", "--bind",
             f"{host}:{{port}}", "--log-level", "warning", servers.WSGI_APP],
        ),
    }  # fmt: skip


def children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def measure(name: str, argv: list[str], args: argparse.Namespace, log: Path) -> dict[str, object]:
    def command(port: int) -> list[str]:
        return [arg.replace("{port}", str(port)) for arg in argv]

    spec = servers.ServerSpec(name, name.split(maxsplit=1)[0], "ASGI", command)
    server = servers.RunningServer(spec, cpu=None, cwd=BENCH_DIR.parent, log_path=log)
    try:
        server.wait_ready(30)
        time.sleep(1.0)  # both workers up
        before = children(server.proc.pid)
        argv_wrk = wrk.command(
            f"http://{servers.HOST}:{server.port}/",
            duration_s=args.duration,
            connections=args.connections,
            script=None,
            cpu=None,
        )
        report: list[str] = []
        thread = threading.Thread(
            target=lambda: report.append(wrk.run(argv_wrk, duration_s=args.duration))
        )
        thread.start()
        step = args.duration / (args.signals + 1)
        for _ in range(args.signals):
            time.sleep(step)
            server.proc.send_signal(signal.SIGHUP)
        thread.join()
        time.sleep(1.0)
        after = children(server.proc.pid)
        result = wrk.parse(report[0])
        return {
            "server": name,
            "requests": result.requests,
            "failed": result.errors,
            "detail": f"non-2xx {result.non2xx}, "
            + ", ".join(f"{k} {v}" for k, v in result.socket_errors.items()),
            # both workers gone (a helper process, like multiprocessing's resource tracker,
            # may stay)
            "replaced": len(before - after) >= 2,
        }
    except (servers.ServerError, wrk.WrkError) as exc:
        return {"server": name, "requests": 0, "failed": -1, "detail": str(exc), "replaced": False}
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=12)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--signals", type=int, default=3)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    args = parser.parse_args(argv)
    if not (BIN / "portico").exists():
        sys.exit("bench/.venv is missing: run `python bench/run.py` once first")
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "reload-servers.log"
    log.write_text("")
    print(
        f"SIGHUP x{args.signals} during wrk -c{args.connections} -d{args.duration}s, two workers\n"
    )
    print("| server | requests | failed | workers replaced | failures |")
    print("|---|---:|---:|---|---|")
    failed: dict[str, float] = {}
    for name, (_, command) in commands().items():
        row = measure(name, command, args, log)
        if isinstance(row["failed"], int) and row["failed"] >= 0:
            failed[name] = row["failed"]
        shown = "n/a" if row["failed"] == -1 else f"{row['failed']:,}"
        print(
            f"| {row['server']} | {row['requests']:,} | {shown} | "
            f"{'yes' if row['replaced'] else 'no'} | {row['detail']} |",
            flush=True,
        )
    chart = args.out / "reload.png"
    if report.bar_chart(
        chart,
        failed,
        title=f"Failed requests during {args.signals} x SIGHUP under wrk (lower is better)",
        ylabel="failed requests",
    ):
        print(f"\nwrote {chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
