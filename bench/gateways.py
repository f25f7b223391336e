#!/usr/bin/env python3
"""nginx in front: Portico over HTTP, uwsgi and FastCGI beside uWSGI and gunicorn.

    python bench/gateways.py [--duration 10] [--connections 64] [--scenarios plaintext,echo]
                             [--servers portico-http,portico-uwsgi,portico-fastcgi,uwsgi,gunicorn]
                             [--out bench/out]

Every server serves the WSGI app ``bench/apps/wsgi_app.py`` with one worker (8 threads, Portico's
default and the gunicorn gthread row of ``bench/run.py``) pinned to CPU 0, behind a real nginx
(one worker process) that shares CPU 1 with wrk (``-t1``): with two cores, the app server gets
one and the proxy and the load generator the other, so every row pays the same proxy cost.

* ``portico-http``: ``proxy_pass`` to an ``upstream`` with ``keepalive``;
* ``portico-uwsgi``: ``uwsgi_pass`` (nginx opens a connection per request: the protocol has no
  keep-alive);
* ``portico-fastcgi``: ``fastcgi_pass`` with ``fastcgi_keep_conn on`` and ``keepalive``;
* ``uwsgi``: uWSGI (``pyuwsgi``) with ``--socket``, behind ``uwsgi_pass``;
* ``gunicorn``: gunicorn gthread behind ``proxy_pass`` with ``keepalive``.

The table gives req/s, p99, errors and Portico's rate as a ratio to uWSGI and to gunicorn; the
chart goes to ``out/gateways-SCENARIO.png``. Uses bench/.venv like ``bench/run.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _report as report
import _servers as servers
import _wrk as wrk
import run

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
THREADS = "8"
SCENARIOS = {
    "plaintext": ("GET", "/", "GET / (13 B text/plain)"),
    "echo": ("POST", "/echo", "POST /echo (16 KiB body echoed)"),
}
# server name -> (how nginx passes to it, the server's command line for a port)
Row = tuple[str, Callable[[int], list[str]]]


def rows(bin_dir: Path) -> dict[str, Row]:
    def portico(bind: str) -> Callable[[int], list[str]]:
        return lambda port: [
            str(bin_dir / "portico"),
            servers.WSGI_APP,
            "--bind",
            bind.format(host=servers.HOST, port=port),
            "--threads",
            THREADS,
            "--log-level",
            "warning",
        ]

    gunicorn = next(
        s
        for s in servers.specs(bin_dir, hypercorn_worker="", portico_extra=[])
        if s.name == "gunicorn"
    )
    return {
        "portico-http": ("http", portico("{host}:{port}")),
        "portico-uwsgi": ("uwsgi", portico("uwsgi:{host}:{port}")),
        "portico-fastcgi": ("fastcgi", portico("fastcgi:{host}:{port}")),
        "uwsgi": (
            "uwsgi",
            lambda port: [
                str(bin_dir / "uwsgi"),
                "--socket",
                f"{servers.HOST}:{port}",
                "--module",
                servers.WSGI_APP,
                "--master",
                "--processes",
                "1",
                "--threads",
                THREADS,
                "--disable-logging",
                "--die-on-term",
                "--listen",
                "1024",
            ],
        ),
        "gunicorn": ("http", gunicorn.argv),
    }


def nginx_conf(root: Path, front: int, how: str, port: int) -> Path:
    upstream = f"127.0.0.1:{port}"
    where = {
        "http": 'proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";',
        "uwsgi": f"include /etc/nginx/uwsgi_params; uwsgi_pass {upstream};",
        "fastcgi": "include /etc/nginx/fastcgi_params; fastcgi_pass app; fastcgi_keep_conn on;",
    }[how]
    for sub in ("body", "proxy", "uwsgi", "fastcgi", "scgi"):
        (root / sub).mkdir(exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
user {pwd.getpwuid(os.geteuid()).pw_name};
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_buffer_size 64k;
    client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;
    uwsgi_temp_path {root}/uwsgi; fastcgi_temp_path {root}/fastcgi; scgi_temp_path {root}/scgi;
    upstream app {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{front} backlog=4096;
        location / {{ {where} }}
    }}
}}
""",
        encoding="utf-8",
    )
    return conf


class Front:
    """nginx in front of one server, pinned to ``cpu``."""

    def __init__(self, root: Path, how: str, port: int, cpu: int | None) -> None:
        self.root = root
        self.port = servers.free_port()
        conf = nginx_conf(root, self.port, how, port)
        argv = [NGINX, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")]
        subprocess.run([*argv, "-t", "-q"], check=True, capture_output=True)
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
        self.proc = subprocess.Popen(
            [*pin, *argv, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, server: servers.RunningServer, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not server.alive:
                raise servers.ServerError(f"exited: {server.log_tail()}")
            try:
                if servers.request(self.port, "GET", "/", timeout_s=2.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise servers.ServerError(f"not ready behind nginx: {server.log_tail()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(port: int, scenario: str, args: argparse.Namespace, echo: Path) -> wrk.WrkResult:
    method, path, _ = SCENARIOS[scenario]
    url = f"http://{servers.HOST}:{port}{path}"
    cpu = None if args.no_pin else args.front_cpu
    result = wrk.WrkResult()
    for duration in (1, args.duration):  # the first is the warm-up
        argv = wrk.command(
            url,
            duration_s=duration,
            connections=args.connections,
            script=echo if method == "POST" else None,
            cpu=cpu,
        )
        result = wrk.parse(wrk.run(argv, duration_s=duration))
    return result


def table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"nginx 1 worker + wrk -t1 -c{args.connections} on CPU {args.front_cpu}, the app server "
        f"(1 worker, {THREADS} threads, WSGI) on CPU {args.server_cpu}, {args.duration} s per "
        "run (the machine is shared: other work may run beside it)",
        "",
    ]
    for scenario, got in results.items():
        lines += [
            f"**{scenario}** ({SCENARIOS[scenario][2]})",
            "",
            "| server | nginx to it | req/s | p99 ms | errors | / uWSGI | / gunicorn |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        peer_u = got.get("uwsgi", {}).get("rps")
        peer_g = got.get("gunicorn", {}).get("rps")
        for name, row in got.items():
            if "failed" in row:
                lines.append(f"| {name} | {row['how']} | failed | | | | |")
                continue
            rps = row["rps"]
            ratio_u = f"{rps / peer_u:.2f}" if peer_u and name.startswith("portico") else ""
            ratio_g = f"{rps / peer_g:.2f}" if peer_g and name.startswith("portico") else ""
            lines.append(
                f"| {name} | {row['how']} | {rps:,.0f} | {report.fmt_ms(row['p99_ms'])} | "
                f"{row['errors']} | {ratio_u} | {ratio_g} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--servers", default="portico-http,portico-uwsgi,portico-fastcgi,uwsgi,gunicorn")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--out", type=Path, default=run.BENCH_DIR / "out")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--front-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--skip-setup", action="store_true")
    args = p.parse_args()
    if not run.in_venv():
        if not args.skip_setup or not run.VENV_PYTHON.exists():
            run.ensure_venv(force=False)
        python = str(run.VENV_PYTHON)
        os.execv(python, [python, __file__, *sys.argv[1:], "--skip-setup"])
    out: Path = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    echo = wrk.write_echo_script(out)
    known = rows(run.VENV_BIN)
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    chosen = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    found = run.versions()
    facts = run.machine()
    print(f"machine: {facts['nproc']} CPUs, {facts['cpu_model']}; load {facts['loadavg']}")
    results: dict[str, dict[str, Any]] = {scenario: {} for scenario in chosen}
    for name in names:
        how, argv = known[name]
        spec = servers.ServerSpec(name, name.split("-")[0], "WSGI", argv)
        log_path = out / "logs" / f"gateways-{name}.log"
        cpu = None if args.no_pin else args.server_cpu
        server = servers.RunningServer(spec, cpu=cpu, cwd=run.REPO_ROOT, log_path=log_path)
        with tempfile.TemporaryDirectory(prefix="bench-nginx-") as root:
            front = Front(Path(root), how, server.port, None if args.no_pin else args.front_cpu)
            try:
                front.wait_ready(server)
                for scenario in chosen:
                    print(f"  {name:<16} {scenario:<10}", end=" ", flush=True)
                    try:
                        got = measure(front.port, scenario, args, echo)
                    except wrk.WrkError as exc:
                        results[scenario][name] = {"how": how, "failed": str(exc)}
                        print(f"failed: {exc}")
                        continue
                    results[scenario][name] = {
                        "how": how,
                        "rps": got.rps,
                        "p99_ms": got.p99_ms,
                        "errors": got.errors,
                        "requests": got.requests,
                    }
                    print(f"{got.rps:>10,.0f} req/s  p99 {report.fmt_ms(got.p99_ms)} ms")
            except servers.ServerError as exc:
                for scenario in chosen:
                    results[scenario][name] = {"how": how, "failed": str(exc)}
                print(f"  {name}: failed: {exc}")
            finally:
                front.stop()
                server.stop()
    text = table(results, args)
    print("\n" + text)
    (out / "gateways-results.md").write_text(text, encoding="utf-8")
    (out / "gateways-results.json").write_text(
        json.dumps({"versions": found, "machine": facts, "results": results}, indent=2),
        encoding="utf-8",
    )
    for scenario, got in results.items():
        rates = {name: float(row["rps"]) for name, row in got.items() if "failed" not in row}
        report.bar_chart(
            out / f"gateways-{scenario}.png",
            rates,
            title=f"behind nginx, {SCENARIOS[scenario][2]} (req/s)",
            ylabel="requests / second",
        )
    print(f"wrote {out / 'gateways-results.md'} and the charts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
