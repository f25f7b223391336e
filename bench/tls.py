#!/usr/bin/env python3
"""HTTPS benchmark: Portico against uvicorn and granian over TLS, side by side.

    python bench/tls.py [--duration 10] [--connections 64] [--servers portico,uvicorn,granian]
                        [--scenarios keepalive,handshake] [--out bench/out]

Every server serves ``bench/apps/asgi_app.py`` with the same certificate (ECDSA P-256, made here
with ``openssl``; the key exchange and signature most sites use), one worker pinned to CPU 0,
wrk pinned to CPU 1, after a 1 s warm-up:

* ``keepalive``: plain text over ``--connections`` keep-alive TLS connections (TLS 1.3): the
  per-request cost of encryption;
* ``handshake``: one request per new TLS connection (``Connection: close``; wrk resumes no
  session), 16 connections: the cost of a full TLS 1.3 handshake plus a request.

The table gives req/s, p99 and Portico's rate as a ratio to each peer's; the chart goes to
``out/tls-results.png``. Uses bench/.venv like ``bench/run.py`` (made on first use).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _report as report
import _servers as servers
import _wrk as wrk
import run

ROWS = ("portico", "uvicorn", "granian")
SCENARIOS = {
    "keepalive": "plain text over keep-alive TLS connections",
    "handshake": "one request per new TLS connection",
}
HANDSHAKE_CONNECTIONS = 16


def make_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "bench-cert.pem", folder / "bench-key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key)),
            *("-out", str(cert), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_specs(bin_dir: Path, cert: Path, key: Path) -> dict[str, servers.ServerSpec]:
    known = {s.name: s for s in servers.specs(bin_dir, hypercorn_worker="uvloop", portico_extra=[])}

    def with_tls(name: str, flags: list[str]) -> servers.ServerSpec:
        base = known[name]
        argv: Callable[[int], list[str]] = lambda port: [*base.argv(port), *flags]  # noqa: E731
        return servers.ServerSpec(base.name, base.family, "ASGI", argv)

    return {
        "portico": with_tls("portico-asgi", ["--certfile", str(cert), "--keyfile", str(key)]),
        "uvicorn": with_tls("uvicorn", ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]),
        "granian": with_tls(
            "granian-asgi", ["--ssl-certificate", str(cert), "--ssl-keyfile", str(key)]
        ),
    }


def wait_ready(server: servers.RunningServer, timeout_s: float = 20.0) -> None:
    """A GET / over TLS answers 200 (the plain-HTTP check of ``_servers`` cannot see it)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive:
            raise servers.ServerError(f"exited: {server.log_tail()}")
        conn = http.client.HTTPSConnection(servers.HOST, server.port, timeout=2, context=context)
        try:
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
        finally:
            conn.close()
    raise servers.ServerError(f"not ready over TLS after {timeout_s:.0f} s: {server.log_tail()}")


def measure(port: int, scenario: str, args: argparse.Namespace, script: Path) -> wrk.WrkResult:
    url = f"https://{servers.HOST}:{port}/"
    connections = args.connections if scenario == "keepalive" else HANDSHAKE_CONNECTIONS
    chosen = script if scenario == "handshake" else None
    cpu = None if args.no_pin else args.wrk_cpu
    result = wrk.WrkResult()
    for duration in (1, args.duration):  # the first is the warm-up
        argv = wrk.command(
            url, duration_s=duration, connections=connections, script=chosen, cpu=cpu
        )
        result = wrk.parse(wrk.run(argv, duration_s=duration))
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--servers", default=",".join(ROWS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--out", type=Path, default=run.BENCH_DIR / "out")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--wrk-cpu", type=int, default=1)
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
    cert, key = make_certificate(out)
    script = out / "close.lua"
    script.write_text('wrk.headers["Connection"] = "close"\n', encoding="utf-8")
    specs = server_specs(run.VENV_BIN, cert, key)
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    chosen = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    found = run.versions()
    facts = run.machine()
    print("versions: " + ", ".join(f"{k} {found[k]}" for k in ("portico", "uvicorn", "granian")))
    print(f"machine: {facts['nproc']} CPUs, {facts['cpu_model']}; load {facts['loadavg']}")
    results: dict[str, dict[str, Any]] = {scenario: {} for scenario in chosen}
    cpu = None if args.no_pin else args.server_cpu
    for name in names:
        log_path = out / "logs" / f"tls-{name}.log"
        server = servers.RunningServer(specs[name], cpu=cpu, cwd=run.REPO_ROOT, log_path=log_path)
        try:
            wait_ready(server)
            for scenario in chosen:
                print(f"  {name:<8} {scenario:<10}", end=" ", flush=True)
                try:
                    got = measure(server.port, scenario, args, script)
                except wrk.WrkError as exc:
                    results[scenario][name] = {"failed": str(exc)}
                    print(f"failed: {exc}")
                    continue
                results[scenario][name] = {
                    "rps": got.rps,
                    "p99_ms": got.p99_ms,
                    "errors": got.errors,
                    "requests": got.requests,
                }
                print(f"{got.rps:>10,.0f} req/s  p99 {report.fmt_ms(got.p99_ms)} ms  ")
        except servers.ServerError as exc:
            for scenario in chosen:
                results[scenario][name] = {"failed": str(exc)}
            print(f"  {name}: failed: {exc}")
        finally:
            server.stop()
    lines = [
        f"HTTPS (TLS 1.3, ECDSA P-256), one worker on CPU {args.server_cpu}, wrk -t1 on CPU "
        f"{args.wrk_cpu}, {args.duration} s per run",
        "",
    ]
    for scenario in chosen:
        rows = results[scenario]
        connections = args.connections if scenario == "keepalive" else HANDSHAKE_CONNECTIONS
        lines += [
            f"**{scenario}** ({SCENARIOS[scenario]}, {connections} connections)",
            "",
            "| server | req/s | p99 ms | errors | portico/peer |",
            "|---|---:|---:|---:|---:|",
        ]
        mine = rows.get("portico", {}).get("rps")
        for name, got in rows.items():
            if "failed" in got:
                lines.append(f"| {name} | failed | | | |")
                continue
            ratio = f"{mine / got['rps']:.2f}x" if mine and name != "portico" else ""
            lines.append(
                f"| {name} | {got['rps']:,.0f} | {report.fmt_ms(got['p99_ms'])} | "
                f"{got['errors']} | {ratio} |"
            )
        lines.append("")
    table = "\n".join(lines)
    print("\n" + table)
    (out / "tls-results.md").write_text(table, encoding="utf-8")
    (out / "tls-results.json").write_text(
        json.dumps({"versions": found, "machine": facts, "results": results}, indent=2),
        encoding="utf-8",
    )
    drawn = []
    for scenario, rows in results.items():
        rates = {name: float(got["rps"]) for name, got in rows.items() if "failed" not in got}
        path = out / f"tls-{scenario}.png"
        if report.bar_chart(
            path, rates, title=f"HTTPS, {SCENARIOS[scenario]} (req/s)", ylabel="requests / second"
        ):
            drawn.append(path.name)
    print(f"wrote {out / 'tls-results.md'}, tls-results.json, " + ", ".join(drawn))
    return 0


if __name__ == "__main__":
    sys.exit(main())
