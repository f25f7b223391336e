#!/usr/bin/env python3
"""HTTP/2 benchmark: Portico against hypercorn and granian with h2load, side by side.

    python bench/http2.py [--duration 10] [--connections 64] [--servers portico,hypercorn,granian]
                       [--scenarios plaintext-m1,...] [--out bench/out]

Each server runs one worker of ``bench/apps/asgi_app.py`` pinned to CPU 0 and is reached by
prior knowledge over cleartext (h2c); ``h2load`` (Debian's ``nghttp2-client``) runs pinned to
CPU 1 with one thread, ``--connections`` connections and ``-m`` streams at once on each, after a
1 s warm-up. Scenarios: plain text and JSON at ``-m1``, ``-m10`` and ``-m100``; a 1 MiB response
and a 16 KiB POST echo (``h2load -d``) at ``-m10``. The table gives requests per second, mean
request time, failures, and Portico's rate as a ratio to each peer's; a chart is drawn with
matplotlib. hypercorn runs with ``--worker-class uvloop``, granian with ``--http auto`` (HTTP/1.1
for the readiness probe, h2c by the preface), Portico with ``--max-in-flight 10000`` (``-m100``
puts 6,400 requests in flight, past its default bound of 1,000).

Uses bench/.venv like ``bench/run.py`` (made on first use).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _report as report
import _servers as servers
import run

ROWS = ("portico", "hypercorn", "granian")


@dataclass(frozen=True, slots=True)
class H2Scenario:
    name: str
    path: str
    streams: int
    post_16k: bool = False


SCENARIOS = {
    s.name: s
    for s in (
        H2Scenario("plaintext-m1", "/", 1),
        H2Scenario("plaintext-m10", "/", 10),
        H2Scenario("plaintext-m100", "/", 100),
        H2Scenario("json-m1", "/json", 1),
        H2Scenario("json-m10", "/json", 10),
        H2Scenario("json-m100", "/json", 100),
        H2Scenario("1m-m10", "/1m", 10),
        H2Scenario("echo16k-m10", "/echo", 10, post_16k=True),
    )
}


def server_specs(bin_dir: Path) -> dict[str, servers.ServerSpec]:
    # -m100 on 64 connections is 6,400 requests at once: above Portico's default max_in_flight
    # (1,000), which would answer the rest with 503; the peers have no such bound
    extra = ["--max-in-flight", "10000"]
    known = {
        s.name: s for s in servers.specs(bin_dir, hypercorn_worker="uvloop", portico_extra=extra)
    }
    granian = known["granian-asgi"]

    def granian_h2(port: int) -> list[str]:
        argv = granian.argv(port)
        at = argv.index("--http")
        # auto: HTTP/1.1 for the readiness probe, HTTP/2 by the prior-knowledge preface
        return [*argv[: at + 1], "auto", *argv[at + 2 :]]

    return {
        "portico": known["portico-asgi"],
        "hypercorn": known["hypercorn"],
        "granian": servers.ServerSpec("granian", "granian", "ASGI", granian_h2),
    }


def h2load(port: int, scenario: H2Scenario, body: Path, args: argparse.Namespace) -> dict[str, Any]:
    argv = [
        "h2load",
        "-t1",
        f"-c{args.connections}",
        f"-m{scenario.streams}",
        f"-D{args.duration:g}",
        "--warm-up-time=1",
        *(["-d", str(body)] if scenario.post_16k else []),
        f"http://{servers.HOST}:{port}{scenario.path}",
    ]
    if not args.no_pin:
        argv = ["taskset", "-c", str(args.load_cpu), *argv]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=args.duration + 60, check=False
    )
    out = done.stdout
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s, ([\d.]+)(\w+)/s", out)
    counts = re.search(
        r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out
    )
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    if rate is None or counts is None:
        raise RuntimeError((done.stderr or out).strip()[-300:] or "h2load failed")
    unit = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}.get(rate.group(3), 1)
    return {
        "rps": float(rate.group(1)),
        "bytes_per_s": float(rate.group(2)) * unit,
        "succeeded": int(counts.group(1)),
        "failed": int(counts.group(2)),
        "mean": mean.group(1) if mean else "",
        "protocol": "h2" if "Application protocol: h2c" in out or "h2c" in out else "?",
    }


def table(results: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace) -> str:
    names = list(next(iter(results.values())).keys()) if results else []
    lines = [
        f"HTTP/2 (h2c prior knowledge), h2load -t1 -c{args.connections} -D{args.duration:g} "
        f"after a 1 s warm-up; server on CPU {args.server_cpu}, h2load on CPU {args.load_cpu}",
        "",
        "| scenario | "
        + " | ".join(f"{n} req/s" for n in names)
        + " | "
        + " | ".join(f"portico/{n}" for n in names if n != "portico")
        + " |",
        "|---|" + "---:|" * (len(names) + len(names) - 1),
    ]
    for scenario, row in results.items():
        cells = []
        for name in names:
            got = row[name]
            if "failed_to_run" in got:
                cells.append("failed")
            else:
                errors = f" ({got['failed']} failed)" if got["failed"] else ""
                cells.append(f"{got['rps']:,.0f}{errors}")
        mine = row.get("portico", {}).get("rps")
        ratios = []
        for name in names:
            if name == "portico":
                continue
            theirs = row[name].get("rps")
            ratios.append(f"{mine / theirs:.2f}x" if mine and theirs else "")
        lines.append(f"| {scenario} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def chart(path: Path, results: dict[str, dict[str, dict[str, Any]]]) -> bool:
    try:
        import matplotlib  # noqa: PLC0415 - optional: the table does not need it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    scenarios = list(results)
    names = list(next(iter(results.values())).keys())
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(scenarios)), 4.8))
    for i, name in enumerate(names):
        values = [results[s][name].get("rps", 0.0) for s in scenarios]
        colour = report.PORTICO_COLOUR if name == "portico" else report.PEER_COLOURS[i % 6]
        xs = [x + (i - (len(names) - 1) / 2) * width for x in range(len(scenarios))]
        ax.bar(xs, values, width, label=name, color=colour)
    ax.set_xticks(range(len(scenarios)), scenarios, rotation=20, ha="right")
    ax.set_ylabel("requests / second")
    ax.set_title("HTTP/2, h2load 64 connections (requests/s, higher is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--servers", default=",".join(ROWS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
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
    chosen = [SCENARIOS[n.strip()] for n in args.scenarios.split(",") if n.strip()]
    out: Path = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    found = run.versions()
    facts = run.machine()
    print("versions: " + ", ".join(f"{k} {found[k]}" for k in ("portico", "hypercorn", "granian")))
    print(f"machine: {facts['nproc']} CPUs, {facts['cpu_model']}; load {facts['loadavg']}")
    results: dict[str, dict[str, dict[str, Any]]] = {s.name: {} for s in chosen}
    cpu = None if args.no_pin else args.server_cpu
    with tempfile.NamedTemporaryFile(suffix=".bin") as body:
        body.write(b"e" * 16384)
        body.flush()
        # scenario by scenario, every server in turn (a fresh start each): on a shared machine
        # the load of others drifts, and this keeps the servers of one row side by side in time
        for scenario in chosen:
            for name in names:
                log_path = out / "logs" / f"h2-{name}.log"
                print(f"  {name:<10} {scenario.name:<15}", end=" ", flush=True)
                try:
                    with servers.running(
                        specs[name],
                        cpu=cpu,
                        cwd=run.REPO_ROOT,
                        log_path=log_path,
                        ready_timeout_s=20,
                    ) as server:
                        got = h2load(server.port, scenario, Path(body.name), args)
                except (servers.ServerError, RuntimeError, subprocess.TimeoutExpired) as exc:
                    got = {"failed_to_run": str(exc)}
                    print(f"failed: {exc}")
                else:
                    print(f"{got['rps']:>10,.0f} req/s  mean {got['mean']}  failed {got['failed']}")
                results[scenario.name][name] = got
    text = table(results, args)
    print()
    print(text)
    (out / "h2-results.md").write_text(text + "\n", encoding="utf-8")
    (out / "h2-results.json").write_text(
        json.dumps({"versions": found, "machine": facts, "results": results}, indent=2),
        encoding="utf-8",
    )
    drawn = chart(out / "h2-results.png", results)
    print(
        f"\nwrote {out / 'h2-results.md'}, h2-results.json" + (", h2-results.png" if drawn else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
