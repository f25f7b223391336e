#!/usr/bin/env python3
"""Interleaved A/B benchmark of two Portico builds: is a change slower than the code before it?

    python bench/ab.py --a /path/to/old/venv/bin/portico --b .venv/bin/portico
                       [--rounds 4] [--duration 5] [--scenarios plaintext,json,1m,echo]
                       [--apps asgi,wsgi] [--out bench/out]

A noisy machine drifts over minutes, so the two builds take turns: every round runs each build
on every scenario, and the order of the builds flips from one round to the next (A B, B A, A B…),
so drift falls on both alike. Each run is one worker pinned to CPU 0 with wrk
(``-t1 -c64``) pinned to CPU 1, after a 1 s warm-up, as in ``bench/run.py``. The table gives
each build's median req/s over the rounds, the spread (min-max), and the median of the rounds'
B ÷ A.

``--portico-arg`` goes to every side, ``--a-arg`` and ``--b-arg`` to one: the same build with
two configurations is an A/B too (``--a X --b X --b-arg=--access-log-file --b-arg=/tmp/a.log``
measures what the access log costs). ``--c`` (with ``--c-arg`` and a third label) adds a third
side to the same rounds, so two costs are measured side by side against one baseline (each
round runs A, B, C, then C, B, A…); each ratio is to A.

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
    p.add_argument("--a-arg", action="append", default=[], metavar="ARG", help="A's only")
    p.add_argument("--b-arg", action="append", default=[], metavar="ARG", help="B's only")
    p.add_argument("--c", help="a third portico executable, measured in the same rounds")
    p.add_argument("--c-arg", action="append", default=[], metavar="ARG", help="C's only")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    args = p.parse_args()
    labels = args.labels.split(",")
    sides = [(args.a, args.a_arg), (args.b, args.b_arg)] + (
        [(args.c, args.c_arg)] if args.c else []
    )
    if len(labels) != len(sides):
        p.error(f"--labels names {len(labels)} sides, but {len(sides)} are given")
    label_a = labels[0]
    out: Path = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    args.echo_script = wrk.write_echo_script(out)
    scenarios = [report.SCENARIOS[name] for name in args.scenarios.split(",")]
    apps = [APPS[name] for name in args.apps.split(",")]
    builds = {label: exe for label, (exe, _) in zip(labels, sides, strict=True)}
    extras = {label: args.portico_arg + own for label, (_, own) in zip(labels, sides, strict=True)}
    # (app, scenario) -> build -> req/s of each round
    rates: dict[tuple[str, str], dict[str, list[float]]] = {}
    for round_ in range(args.rounds):
        order = labels if round_ % 2 == 0 else labels[::-1]
        for app in apps:
            for label in order:
                server_spec = spec(label, builds[label], app, extras[label])
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
    others = labels[1:]
    lines = [
        f"Interleaved A/B, {args.rounds} rounds, wrk -t1 -c{args.connections} "
        f"-d{args.duration}s, one worker on CPU 0, wrk on CPU 1",
        "",
        "| scenario | "
        + " | ".join(f"{label} req/s (min-max)" for label in labels)
        + " | "
        + " | ".join(f"{label} ÷ {label_a}, median of the rounds' (min-max)" for label in others)
        + " |",
        "|---|" + "---:|" * (len(labels) + len(others)),
    ]
    summary: dict[str, Any] = {}
    for (interface, name), by_build in rates.items():
        a = by_build[label_a]
        cells = [
            f"{statistics.median(r):,.0f} ({min(r):,.0f}-{max(r):,.0f})"
            for r in (by_build[label] for label in labels)
        ]
        entry: dict[str, Any] = {label: by_build[label] for label in labels}
        ratios = []
        for label in others:
            # per round, then the median: the builds of one round ran seconds apart, so the
            # machine's drift between rounds cancels out of each round's ratio
            paired = [b / base for b, base in zip(by_build[label], a, strict=True)]
            ratio = statistics.median(paired)
            entry["ratio" if len(others) == 1 else f"ratio {label}"] = ratio
            entry["rounds" if len(others) == 1 else f"rounds {label}"] = paired
            ratios.append(f"{ratio:.3f} ({min(paired):.2f}-{max(paired):.2f})")
        lines.append(f"| {interface} {name} | " + " | ".join(cells + ratios) + " |")
        summary[f"{interface} {name}"] = entry
    table = "\n".join(lines)
    print("\n" + table)
    (out / "ab.md").write_text(table + "\n", encoding="utf-8")
    (out / "ab.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"\nwrote {out / 'ab.md'} and ab.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
