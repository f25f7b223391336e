#!/usr/bin/env python3
"""Interleaved A/B benchmark of two Portico builds: is a change slower than the code before it?

    python bench/ab.py --a /path/to/old/venv/bin/portico --b .venv/bin/portico
                       [--rounds 4] [--duration 5] [--scenarios plaintext,json,1m,echo]
                       [--apps asgi,wsgi] [--out bench/out]

A noisy machine drifts over minutes, so the two builds take turns: every round runs each build
on every scenario, and the order of the builds flips from one round to the next (A B, B A, A B…),
so drift falls on both alike. Each run is one worker pinned to CPU 0 with wrk
(``-t1 -c64``) pinned to CPU 1, after a 1 s warm-up, as in ``bench/run.py``. The table gives
each build's median req/s over the rounds, the spread (min-max), and B ÷ A.

Install the old build in a venv of its own, e.g. from a worktree of the old commit:
``git worktree add /tmp/old COMMIT && python3 -m venv /tmp/old/.venv &&
/tmp/old/.venv/bin/pip install /tmp/old``. Both builds serve the same apps from this tree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import _report as report
import _servers as servers
import _wrk as wrk

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
APPS = {"asgi": servers.ASGI_APP, "wsgi": servers.WSGI_APP}


def spec(name: str, exe: str, app: str, extra: list[str]) -> servers.ServerSpec:
    return servers.ServerSpec(
        name,
        "portico",
        "ASGI" if app == servers.ASGI_APP else "WSGI",
        lambda port: (
            [exe, app, "--bind", f"{servers.HOST}:{port}", "--log-level", "warning", *extra]
        ),
    )


def measure(
    server: servers.RunningServer, scenario: report.Scenario, args: argparse.Namespace
) -> float:
    body = b"x" * wrk.ECHO_BODY_SIZE if scenario.method == "POST" else None
    servers.check_scenario(server.port, scenario.method, scenario.path, body)
    url = f"http://{servers.HOST}:{server.port}{scenario.path}"
    script = args.echo_script if scenario.method == "POST" else None
    for duration in (1, args.duration):  # the first is the warm-up
        argv = wrk.command(
            url, duration_s=duration, connections=args.connections, script=script, cpu=1
        )
        result = wrk.parse(wrk.run(argv, duration_s=duration))
    if result.errors > result.requests * report.ERROR_SHARE:
        raise servers.ServerError(f"{result.errors} errors in {result.requests} requests")
    return result.rps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", required=True, help="the portico executable of build A (before)")
    p.add_argument("--b", required=True, help="the portico executable of build B (after)")
    p.add_argument("--labels", default="before,after")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--scenarios", default="plaintext,json,1m,echo")
    p.add_argument("--apps", default="asgi,wsgi")
    p.add_argument("--portico-arg", action="append", default=[], metavar="ARG")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    args = p.parse_args()
    label_a, label_b = args.labels.split(",")
    out: Path = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    args.echo_script = wrk.write_echo_script(out)
    scenarios = [report.SCENARIOS[name] for name in args.scenarios.split(",")]
    apps = [APPS[name] for name in args.apps.split(",")]
    builds = {label_a: args.a, label_b: args.b}
    # (app, scenario) -> build -> req/s of each round
    rates: dict[tuple[str, str], dict[str, list[float]]] = {}
    for round_ in range(args.rounds):
        order = [label_a, label_b] if round_ % 2 == 0 else [label_b, label_a]
        for app in apps:
            for label in order:
                server_spec = spec(label, builds[label], app, args.portico_arg)
                log = out / "logs" / f"ab-{label}.log"
                with servers.running(
                    server_spec, cpu=0, cwd=REPO_ROOT, log_path=log, ready_timeout_s=20
                ) as server:
                    for scenario in scenarios:
                        rps = measure(server, scenario, args)
                        key = (server_spec.interface, scenario.name)
                        rates.setdefault(key, {}).setdefault(label, []).append(rps)
                        print(
                            f"round {round_ + 1} {server_spec.interface} {scenario.name:<10} "
                            f"{label:<7} {rps:>10,.0f} req/s",
                            flush=True,
                        )
    lines = [
        f"Interleaved A/B, {args.rounds} rounds, wrk -t1 -c{args.connections} "
        f"-d{args.duration}s, one worker on CPU 0, wrk on CPU 1",
        "",
        f"| scenario | {label_a} req/s (min-max) | {label_b} req/s (min-max) | "
        f"{label_b} ÷ {label_a} |",
        "|---|---:|---:|---:|",
    ]
    summary: dict[str, Any] = {}
    for (interface, name), by_build in rates.items():
        a, b = by_build[label_a], by_build[label_b]
        ratio = statistics.median(b) / statistics.median(a)
        lines.append(
            f"| {interface} {name} | {statistics.median(a):,.0f} ({min(a):,.0f}-{max(a):,.0f}) | "
            f"{statistics.median(b):,.0f} ({min(b):,.0f}-{max(b):,.0f}) | {ratio:.3f} |"
        )
        summary[f"{interface} {name}"] = {label_a: a, label_b: b, "ratio": ratio}
    table = "\n".join(lines)
    print("\n" + table)
    (out / "ab.md").write_text(table + "\n", encoding="utf-8")
    (out / "ab.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"\nwrote {out / 'ab.md'} and ab.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
