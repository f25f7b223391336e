#!/usr/bin/env python3
"""Interleaved A/B benchmark of two Portico builds: is a change slower than the code before it?

    python bench/ab.py --a /path/to/old/venv/bin/portico --b .venv/bin/portico
                       [--rounds 4] [--duration 5] [--scenarios plaintext,json,1m,echo]
                       [--apps asgi,wsgi] [--out bench/out] [--burst S]

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

``--burst S`` starts every side's server at once (one worker each, all on CPU 0, only one
loaded at a time) and alternates runs of S seconds, ``--rounds`` of them per side, after a 2 s
warm-up of each: on a VM whose speed drifts by a third within a minute, the two sides of each
ratio are then seconds apart, not a round of server starts.

Install the old build in a venv of its own, e.g. from a worktree of the old commit:
``git worktree add /tmp/old COMMIT && python3 -m venv /tmp/old/.venv &&
/tmp/old/.venv/bin/pip install /tmp/old``. Both builds serve the same apps from this tree.
"""

from __future__ import annotations

import argparse
import contextlib
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
    server: servers.RunningServer,
    scenario: report.Scenario,
    args: argparse.Namespace,
    durations: tuple[int, ...] = (),
) -> tuple[float, float]:
    """req/s of the last of the runs (by default a 1 s warm-up, then ``--duration``), and the
    CPU time the server's processes spent per request in it (µs, from /proc; with the worker
    saturated it is about 1 ÷ req/s, and it shows what the master and threads add)."""
    body = b"x" * wrk.ECHO_BODY_SIZE if scenario.method == "POST" else None
    servers.check_scenario(server.port, scenario.method, scenario.path, body)
    url = f"http://{servers.HOST}:{server.port}{scenario.path}"
    script = args.echo_script if scenario.method == "POST" else None
    for duration in durations or (1, args.duration):  # the first is the warm-up
        argv = wrk.command(
            url, duration_s=duration, connections=args.connections, script=script, cpu=1
        )
        cpu_before = servers.tree_cpu_seconds(server.proc.pid)
        result = wrk.parse(wrk.run(argv, duration_s=duration))
        cpu_used = servers.tree_cpu_seconds(server.proc.pid) - cpu_before
    if result.errors > result.requests * report.ERROR_SHARE or not result.requests:
        raise servers.ServerError(f"{result.errors} errors in {result.requests} requests")
    return result.rps, cpu_used * 1e6 / result.requests


#: (interface, scenario) -> side -> (req/s, CPU µs per request) of each round
Rates = dict[tuple[str, str], dict[str, list[tuple[float, float]]]]


def record(rates: Rates, key: tuple[str, str], label: str, run: tuple[float, float]) -> None:
    rates.setdefault(key, {}).setdefault(label, []).append(run)
    print(
        f"{key[0]} {key[1]:<10} {label:<7} {run[0]:>10,.0f} req/s {run[1]:>7.1f} µs CPU/req",
        flush=True,
    )


def bursts(  # noqa: PLR0917 -- the state of main, passed on once
    args: argparse.Namespace,
    labels: list[str],
    builds: dict[str, str],
    extras: dict[str, list[str]],
    apps: list[str],
    scenarios: list[report.Scenario],
    out: Path,
    rates: Rates,
) -> None:
    """``--burst``: the sides' servers run side by side (one is loaded at a time) and take
    turns of a few seconds, so the machine's drift, which moves single rounds of a minute by a
    third on a small VM, has seconds, not a minute, to come between two sides of a ratio."""
    for app in apps:
        with contextlib.ExitStack() as stack:
            running: dict[str, servers.RunningServer] = {}
            for label in labels:
                server_spec = spec(label, builds[label], app, extras[label])
                running[label] = stack.enter_context(
                    servers.running(
                        server_spec,
                        cpu=0,
                        cwd=REPO_ROOT,
                        log_path=out / "logs" / f"ab-{label}.log",
                        ready_timeout_s=20,
                    )
                )
            interface = "ASGI" if app == servers.ASGI_APP else "WSGI"
            for scenario in scenarios:
                for label in labels:
                    measure(running[label], scenario, args, (2,))  # the warm-up
                for round_ in range(args.rounds):
                    for label in labels if round_ % 2 == 0 else labels[::-1]:
                        run = measure(running[label], scenario, args, (args.burst,))
                        print(f"burst {round_ + 1} ", end="")
                        record(rates, (interface, scenario.name), label, run)


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
    p.add_argument(
        "--burst",
        type=int,
        default=0,
        metavar="S",
        help="start every side's server at once and alternate S-second runs (--rounds of them)",
    )
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
    rates: Rates = {}
    if args.burst:
        bursts(args, labels, builds, extras, apps, scenarios, out, rates)
    for round_ in range(0 if args.burst else args.rounds):
        order = labels if round_ % 2 == 0 else labels[::-1]
        for app in apps:
            for label in order:
                server_spec = spec(label, builds[label], app, extras[label])
                log = out / "logs" / f"ab-{label}.log"
                with servers.running(
                    server_spec, cpu=0, cwd=REPO_ROOT, log_path=log, ready_timeout_s=20
                ) as server:
                    for scenario in scenarios:
                        run = measure(server, scenario, args)
                        print(f"round {round_ + 1} ", end="")
                        record(rates, (server_spec.interface, scenario.name), label, run)
    others = labels[1:]
    how = (
        f"{args.rounds} bursts of {args.burst} s per side, every side's server up at once"
        if args.burst
        else f"{args.rounds} rounds, -d{args.duration}s"
    )
    lines = [
        f"Interleaved A/B, {how}, wrk -t1 -c{args.connections}, one worker on CPU 0, wrk on CPU 1"
    ]
    summary: dict[str, Any] = {}
    for index, unit, what in ((0, "req/s", "Throughput"), (1, "µs CPU/req", "CPU per request")):
        lines += [
            "",
            f"{what}:",
            "",
            "| scenario | "
            + " | ".join(f"{label} {unit} (min-max)" for label in labels)
            + " | "
            + " | ".join(
                f"{label} ÷ {label_a}, median of the rounds' (min-max)" for label in others
            )
            + " |",
            "|---|" + "---:|" * (len(labels) + len(others)),
        ]
        for (interface, name), by_build in rates.items():
            runs = {label: [run[index] for run in by_build[label]] for label in labels}
            a = runs[label_a]
            digits = 0 if index == 0 else 1
            cells = [
                f"{statistics.median(r):,.{digits}f} ({min(r):,.{digits}f}-{max(r):,.{digits}f})"
                for r in runs.values()
            ]
            entry: dict[str, Any] = summary.setdefault(f"{interface} {name}", {})
            entry[what] = runs
            ratios = []
            for label in others:
                # per round, then the median: the builds of one round ran seconds apart, so the
                # machine's drift between rounds cancels out of each round's ratio
                paired = [b / base for b, base in zip(runs[label], a, strict=True)]
                ratio = statistics.median(paired)
                entry[f"{what} ratio {label}"] = ratio
                entry[f"{what} rounds {label}"] = paired
                ratios.append(f"{ratio:.3f} ({min(paired):.2f}-{max(paired):.2f})")
            lines.append(f"| {interface} {name} | " + " | ".join(cells + ratios) + " |")
    table = "\n".join(lines)
    print("\n" + table)
    (out / "ab.md").write_text(table + "\n", encoding="utf-8")
    (out / "ab.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"\nwrote {out / 'ab.md'} and ab.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
