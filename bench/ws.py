#!/usr/bin/env python3
"""WebSocket echo benchmark: Portico against uvicorn (websockets) and granian, side by side.

    python bench/ws.py [--duration 10] [--connections 64] [--size 64]
                       [--servers portico,uvicorn,uvicorn-sansio,granian] [--out bench/out]

Each server runs one worker of ``bench/apps/asgi_app.py`` (whose WebSocket route echoes every
message) pinned to CPU 0; the load generator ``bench/_wsload.py`` runs pinned to CPU 1 with
``--connections`` WebSockets, each sending a ``--size``-byte text message and waiting for its echo
before the next (no compression is offered). After a 1 s warm-up it counts echoed messages for
``--duration`` seconds and records each round trip's latency. The table gives messages per
second, p50 and p99 latency, and Portico's rate as a ratio to each peer's.

Uses bench/.venv like ``bench/run.py`` (made on first use).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import _report as report
import _servers as servers
import run

ROWS = ("portico", "uvicorn", "uvicorn-sansio", "granian")


def server_specs(bin_dir: Path) -> dict[str, servers.ServerSpec]:
    known = {s.name: s for s in servers.specs(bin_dir, hypercorn_worker="uvloop", portico_extra=[])}
    uvicorn = known["uvicorn"]

    def with_ws(impl: str) -> servers.ServerSpec:
        return servers.ServerSpec(
            "uvicorn" if impl == "websockets" else "uvicorn-sansio",
            "uvicorn",
            "ASGI",
            lambda port: [*uvicorn.argv(port), "--ws", impl],
        )

    return {
        "portico": known["portico-asgi"],
        "uvicorn": with_ws("websockets"),  # the websockets library's asyncio implementation
        "uvicorn-sansio": with_ws("websockets-sansio"),  # its sans-I/O layer, as Portico uses
        "granian": known["granian-asgi"],
    }


def load(port: int, args: argparse.Namespace) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(run.BENCH_DIR / "_wsload.py"),
        "--port",
        str(port),
        "--connections",
        str(args.connections),
        "--duration",
        str(args.duration),
        "--size",
        str(args.size),
    ]
    if not args.no_pin:
        argv = ["taskset", "-c", str(args.load_cpu), *argv]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=args.duration + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--size", type=int, default=64, help="bytes per text message (64)")
    p.add_argument("--servers", default=",".join(ROWS))
    p.add_argument("--out", type=Path, default=run.BENCH_DIR / "out")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--skip-setup", action="store_true")
    args = p.parse_args()
    if not run.in_venv():
        if not args.skip_setup or not run.VENV_PYTHON.exists():
            run.ensure_venv(force=False)
        python = str(run.VENV_PYTHON)
        os.execv(python, [python, __file__, *sys.argv[1:], "--skip-setup"])
    specs = server_specs(run.VENV_BIN)
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = [n for n in names if n not in specs]
    if unknown:
        sys.exit(f"unknown server(s) {unknown}; choose from {', '.join(ROWS)}")
    out: Path = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    found = run.versions()
    facts = run.machine()
    print("versions: " + ", ".join(f"{k} {found[k]}" for k in ("portico", "uvicorn", "granian")))
    print(f"machine: {facts['nproc']} CPUs, {facts['cpu_model']}; load {facts['loadavg']}")
    results: dict[str, dict[str, Any]] = {}
    cpu = None if args.no_pin else args.server_cpu
    for name in names:
        spec = specs[name]
        log_path = out / "logs" / f"ws-{name}.log"
        print(f"  {name:<15}", end=" ", flush=True)
        try:
            with servers.running(
                spec, cpu=cpu, cwd=run.REPO_ROOT, log_path=log_path, ready_timeout_s=20
            ) as server:
                got = load(server.port, args)
        except (servers.ServerError, RuntimeError, subprocess.TimeoutExpired) as exc:
            results[name] = {"failed": str(exc)}
            print(f"failed: {exc}")
            continue
        results[name] = got
        print(
            f"{got['messages_per_s']:>10,.0f} msg/s  p50 {got['p50_ms']:.2f} ms  "
            f"p99 {got['p99_ms']:.2f} ms  errors {got['errors']}"
        )
    lines = [
        f"WebSocket echo, {args.connections} connections, {args.size}-byte text messages, "
        f"{args.duration:g} s; server pinned to CPU {args.server_cpu}, load to CPU "
        f"{args.load_cpu}",
        "",
        "| server | msg/s | p50 ms | p99 ms | errors | portico/peer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    mine = results.get("portico", {}).get("messages_per_s")
    for name, got in results.items():
        if "failed" in got:
            lines.append(f"| {name} | failed | | | | |")
            continue
        rate = got["messages_per_s"]
        ratio = f"{mine / rate:.2f}x" if mine and name != "portico" and rate else ""
        lines.append(
            f"| {name} | {rate:,.0f} | {got['p50_ms']:.2f} | {got['p99_ms']:.2f} | "
            f"{got['errors']} | {ratio} |"
        )
    table = "\n".join(lines)
    print()
    print(table)
    (out / "ws-results.md").write_text(table + "\n", encoding="utf-8")
    (out / "ws-results.json").write_text(
        json.dumps({"versions": found, "machine": facts, "results": results}, indent=2),
        encoding="utf-8",
    )
    rates = {n: float(g["messages_per_s"]) for n, g in results.items() if "failed" not in g}
    drawn = report.bar_chart(
        out / "ws-results.png",
        rates,
        title=f"WebSocket echo, {args.connections} connections, {args.size}-byte messages "
        "(messages/s, higher is better)",
        ylabel="messages / second",
    )
    print(
        f"\nwrote {out / 'ws-results.md'}, ws-results.json" + (", ws-results.png" if drawn else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
