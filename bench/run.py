#!/usr/bin/env python3
"""Benchmark Portico against its peers with wrk; see bench/README.md.

    python bench/run.py [--duration 10] [--connections 64]
                        [--servers portico,uvicorn,granian,hypercorn,gunicorn]
                        [--scenarios plaintext,json,1m,echo] [--out bench/out] [--publish]

On first use (or when bench/.venv is missing or out of date) this makes bench/.venv, installs the
peers and Portico's working tree (editable) into it, and re-runs itself with that venv's Python.
Each server runs one worker pinned to one CPU; wrk runs on the other.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import _report as report
import _servers as servers
import _wrk as wrk

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
VENV_DIR = BENCH_DIR / ".venv"
VENV_BIN = VENV_DIR / "bin"
VENV_PYTHON = VENV_BIN / "python"
SETUP_MARKER = VENV_DIR / ".bench-setup.json"
PEER_REQUIREMENTS = (
    "uvicorn[standard]",
    "granian",
    "gunicorn",
    "hypercorn",
    "matplotlib",
    "pyuwsgi",  # uWSGI, for bench/gateways.py
)
PEER_SCRIPTS = ("uvicorn", "granian", "gunicorn", "hypercorn")
VERSION_PACKAGES = (
    "portico",
    "uvicorn",
    "uvloop",
    "httptools",
    "granian",
    "hypercorn",
    "gunicorn",
    "pyuwsgi",
)
FAMILIES = ("portico", "portico-pure", "uvicorn", "granian", "hypercorn", "gunicorn")
PURE_DIR = BENCH_DIR / ".venv-pure"
WARMUP_S = 1
# Not PORTICO_*: Portico rejects environment variables with its prefix that it does not know.
REEXEC_FLAG = "BENCH_RUN_IN_VENV"


# ----------------------------------------------------------------------------- the venv


def _pyproject_digest() -> str:
    return hashlib.sha256((REPO_ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]


def _pip(*args: str) -> bool:
    cmd = [str(VENV_PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
    print(f"[setup] {shlex.join(cmd[2:])}", flush=True)
    return subprocess.run(cmd, check=False).returncode == 0


def ensure_venv(*, force: bool) -> None:
    """Make bench/.venv with the peers and an editable Portico, unless it is already up to date."""
    want = {"peers": list(PEER_REQUIREMENTS), "pyproject": _pyproject_digest()}
    try:
        have = json.loads(SETUP_MARKER.read_text())
    except (OSError, ValueError):
        have = {}
    scripts_ok = all((VENV_BIN / s).exists() for s in (*PEER_SCRIPTS, "portico"))
    if not force and VENV_PYTHON.exists() and have == want and scripts_ok:
        return
    if force or not VENV_PYTHON.exists():
        print(f"[setup] creating {VENV_DIR.relative_to(REPO_ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV_DIR)], check=True)
    if not _pip(*PEER_REQUIREMENTS):
        sys.exit("[setup] installing the peers failed; see pip's output above")
    # Portico is the tree under test and may be half-built: a failed install is reported as
    # "failed" rows later, not a reason to stop here.
    portico_ok = _pip("-e", str(REPO_ROOT))
    if not portico_ok:
        print("[setup] warning: `pip install -e .` failed; Portico rows will read 'failed'")
    SETUP_MARKER.write_text(json.dumps(want if portico_ok else {**want, "portico": False}))


def ensure_pure_venv() -> None:
    """bench/.venv-pure: Portico from this tree without its compiled modules (what users get
    without a C compiler), reinstalled at every run so that it measures the current code."""
    python = PURE_DIR / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PURE_DIR)], check=True)
    print("[setup] pure-Python Portico into bench/.venv-pure", flush=True)
    subprocess.run(
        [
            *(str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"),
            *("--force-reinstall", str(REPO_ROOT)),
        ],
        check=True,
        env={**os.environ, "PORTICO_COMPILE": "0"},
    )


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV_DIR.resolve()


def reexec_in_venv() -> None:
    if os.environ.get(REEXEC_FLAG):
        sys.exit(
            f"re-running under {VENV_PYTHON} did not land in that venv (sys.prefix={sys.prefix})"
        )
    env = {**os.environ, REEXEC_FLAG: "1"}
    argv = [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:], "--skip-setup"]
    os.execve(argv[0], argv, env)


# ----------------------------------------------------------------------------- facts


def versions() -> dict[str, str]:
    found: dict[str, str] = {"python": platform.python_version(), "wrk": wrk.version()}
    for name in VERSION_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, Any]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": f"{platform.system()} {platform.release()}",
        "loadavg": " ".join(f"{x:.2f}" for x in load),
        "loadavg_1m": load[0],
    }


def portico_revision() -> str:
    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False
        )
        return proc.stdout.strip() if proc.returncode == 0 else ""

    sha = git("rev-parse", "--short", "HEAD") or "no commit yet"
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "src") else ""
    return f"working tree at {sha}{dirty}"


# ----------------------------------------------------------------------------- running


def measure(
    server: servers.RunningServer,
    scenario: report.Scenario,
    args: argparse.Namespace,
    echo_script: Path,
    raw_dir: Path,
) -> report.Result:
    spec = server.spec
    body = b"x" * wrk.ECHO_BODY_SIZE if scenario.method == "POST" else None
    try:
        servers.check_scenario(server.port, scenario.method, scenario.path, body)
    except servers.ServerError as exc:
        return report.Result(spec.name, spec.interface, scenario.name, report.FAILED, str(exc))
    url = f"http://{servers.HOST}:{server.port}{scenario.path}"
    script = echo_script if scenario.method == "POST" else None
    cpu = None if args.no_pin else args.wrk_cpu
    try:
        warm = wrk.command(
            url, duration_s=WARMUP_S, connections=args.connections, script=script, cpu=cpu
        )
        wrk.run(warm, duration_s=WARMUP_S)
        argv = wrk.command(
            url, duration_s=args.duration, connections=args.connections, script=script, cpu=cpu
        )
        cpu_before = servers.tree_cpu_seconds(server.proc.pid)
        output = wrk.run(argv, duration_s=args.duration)
        cpu_used = servers.tree_cpu_seconds(server.proc.pid) - cpu_before
        (raw_dir / f"{spec.name}-{scenario.name}.txt").write_text(
            f"$ {shlex.join(argv)}\n{output}", encoding="utf-8"
        )
        got = wrk.parse(output)
    except wrk.WrkError as exc:
        note = str(exc) if server.alive else f"server died: {server.log_tail()}"
        return report.Result(spec.name, spec.interface, scenario.name, report.FAILED, note)
    status, note = report.OK, ""
    if got.requests == 0 or got.rps == 0:
        status, note = report.FAILED, f"no request completed ({got.errors} errors)"
    elif got.errors > got.requests * report.ERROR_SHARE:
        status, note = report.ERRORS, f"{got.errors} errors in {got.requests} requests"
    if not server.alive:
        status, note = report.FAILED, f"server died during the run: {server.log_tail()}"
    return report.Result(
        spec.name,
        spec.interface,
        scenario.name,
        status,
        note,
        rps=got.rps,
        p50_ms=got.p50_ms,
        p99_ms=got.p99_ms,
        transfer_bytes_per_s=got.transfer_bytes_per_s,
        requests=got.requests,
        non2xx=got.non2xx,
        socket_errors=got.socket_errors,
        cpu_us_per_request=cpu_used * 1e6 / got.requests if got.requests else None,
    )


def bench_server(
    spec: servers.ServerSpec,
    scenarios: Sequence[report.Scenario],
    args: argparse.Namespace,
    echo_script: Path,
    out_dir: Path,
) -> list[report.Result]:
    """Run every scenario against one server, restarting it if a scenario killed it."""
    results: list[report.Result] = []
    log_path = out_dir / "logs" / f"{spec.name}.log"
    log_path.write_bytes(b"")
    cpu = None if args.no_pin else args.server_cpu
    server: servers.RunningServer | None = None
    started_once = False
    try:
        for i, scenario in enumerate(scenarios):
            print(f"  {spec.name:<13} {scenario.name:<10}", end=" ", flush=True)
            if server is not None and not server.alive:
                server.stop()
                server = None
            if server is None:
                try:
                    server = servers.RunningServer(spec, cpu=cpu, cwd=REPO_ROOT, log_path=log_path)
                    server.wait_ready(args.ready_timeout)
                except servers.ServerError as exc:
                    if server is not None:
                        server.stop()
                        server = None
                    never = not started_once
                    status = report.NOT_AVAILABLE if spec.optional and never else report.FAILED
                    note = f"did not start: {exc}"
                    print(status, flush=True)
                    # A server that never came up will not come up for the next scenario either.
                    rest = scenarios[i:] if never else [scenario]
                    results += [
                        report.Result(spec.name, spec.interface, s.name, status, note) for s in rest
                    ]
                    if never:
                        print(f"  {spec.name}: {note}", flush=True)
                        break
                    continue
                started_once = True
            result = measure(server, scenario, args, echo_script, out_dir / "wrk")
            results.append(result)
            if result.measured:
                errs = f", {result.errors} errors" if result.errors else ""
                cpu_text = (
                    ""
                    if result.cpu_us_per_request is None
                    else f"  CPU {result.cpu_us_per_request:.1f} µs/req"
                )
                print(
                    f"{result.rps:>10,.0f} req/s  p99 {report.fmt_ms(result.p99_ms)} ms"
                    f"{cpu_text}{errs}"
                )
            else:
                print(f"{result.status}: {result.note}", flush=True)
    finally:
        if server is not None:
            server.stop()
    return results


def median_results(
    rounds: Sequence[Sequence[report.Result]], chosen: Sequence[servers.ServerSpec]
) -> list[report.Result]:
    """One result per server and scenario, in table order: the run with the median req/s
    among the rounds that measured it (the lower middle one for an even count), else the
    first round's failure."""
    results: list[report.Result] = []
    for spec in chosen:
        mine = [r for runs in rounds for r in runs if r.server == spec.name]
        for scenario in dict.fromkeys(r.scenario for r in mine):
            runs = [r for r in mine if r.scenario == scenario]
            measured = sorted((r for r in runs if r.measured), key=lambda r: r.rps or 0.0)
            results.append(measured[(len(measured) - 1) // 2] if measured else runs[0])
    return results


def spreads(rounds: Sequence[Sequence[report.Result]]) -> dict[str, list[float]]:
    """``server/scenario`` -> the req/s of every round, for the JSON record."""
    found: dict[str, list[float]] = {}
    for runs in rounds:
        for r in runs:
            if r.measured and r.rps is not None:
                found.setdefault(f"{r.server}/{r.scenario}", []).append(round(r.rps))
    return found


def paired_ratios(rounds: Sequence[Sequence[report.Result]]) -> dict[str, list[float]]:
    """``portico-row÷peer-row/scenario`` -> Portico's req/s over the peer's in each round that
    measured both, for rows of the same interface. The two ran within one round, seconds
    apart, so a drift of the machine's speed between rounds cancels out of each ratio: on a
    noisy machine the median of these is steadier than the ratio of the medians."""
    found: dict[str, list[float]] = {}
    for runs in rounds:
        ours = [r for r in runs if r.measured and r.rps and r.server.startswith("portico")]
        peers = [r for r in runs if r.measured and r.rps and not r.server.startswith("portico")]
        for mine in ours:
            for peer in peers:
                if peer.scenario == mine.scenario and peer.interface == mine.interface:
                    key = f"{mine.server}÷{peer.server}/{mine.scenario}"
                    found.setdefault(key, []).append(round((mine.rps or 0) / (peer.rps or 1), 3))
    return found


def select_servers(
    wanted: str, all_specs: Sequence[servers.ServerSpec]
) -> list[servers.ServerSpec]:
    names = [w.strip() for w in wanted.split(",") if w.strip()]
    known = set(FAMILIES) | {s.name for s in all_specs}
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"unknown server(s): {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    return [s for s in all_specs if s.family in names or s.name in names]


def select_scenarios(wanted: str) -> list[report.Scenario]:
    names = [w.strip() for w in wanted.split(",") if w.strip()]
    unknown = [n for n in names if n not in report.SCENARIOS]
    if unknown:
        sys.exit(
            f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(report.SCENARIOS)}"
        )
    return [report.SCENARIOS[n] for n in names]


def hypercorn_worker_class() -> str:
    try:
        import uvloop  # noqa: F401, PLC0415 - only asks whether it is installed
    except ImportError:
        return "asyncio"
    return "uvloop"


def publish(
    out_dir: Path,
    root: Path,
    results: Sequence[report.Result],
    meta: dict[str, Any],
    scenarios: Sequence[str],
) -> None:
    """Copy the results where the README links them: bench/results.md and docs/bench.png."""
    md_path = root / "bench" / "results.md"
    png_path = root / "docs" / "bench.png"
    md_path.write_text(
        report.markdown(results, meta, scenarios, image="../docs/bench.png"), encoding="utf-8"
    )
    png = out_dir / "results.png"
    if png.exists():
        png_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, png_path)
    print(f"published {md_path.relative_to(root)} and {png_path.relative_to(root)}")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark Portico against uvicorn, granian, hypercorn and gunicorn with wrk.",
    )
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run (10)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every server this many times, the order flipped each round, and report each "
        "row's median run: on a noisy machine, drift then falls on every server alike (1)",
    )
    p.add_argument("--connections", type=int, default=64, help="wrk keep-alive connections (64)")
    p.add_argument(
        "--servers",
        default=",".join(FAMILIES),
        help="comma list of families (%(default)s) or rows such as granian-wsgi",
    )
    p.add_argument("--scenarios", default=",".join(report.SCENARIOS), help="(%(default)s)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "out", help="output dir (bench/out)")
    p.add_argument(
        "--publish",
        action="store_true",
        help="also copy results.md/png to bench/results.md and docs/bench.png",
    )
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (0)")
    p.add_argument("--wrk-cpu", type=int, default=1, help="CPU wrk is pinned to (1)")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=20.0,
        help="seconds a server gets to answer its first GET / (20)",
    )
    p.add_argument(
        "--portico-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the portico command line (repeatable)",
    )
    p.add_argument("--reinstall", action="store_true", help="rebuild bench/.venv from scratch")
    p.add_argument("--skip-setup", action="store_true", help="use bench/.venv as it is")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not in_venv():
        if not args.skip_setup or not VENV_PYTHON.exists():
            ensure_venv(force=args.reinstall)
        reexec_in_venv()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    if not args.no_pin and shutil.which("taskset") is None:
        sys.exit("taskset is not installed (util-linux), or pass --no-pin")
    signal.signal(signal.SIGTERM, _raise_interrupt)

    all_specs = servers.specs(
        VENV_BIN,
        hypercorn_worker=hypercorn_worker_class(),
        portico_extra=args.portico_arg,
        pure_bin=PURE_DIR / "bin",
    )
    chosen = select_servers(args.servers, all_specs)
    if any(spec.family == "portico-pure" for spec in chosen):
        ensure_pure_venv()
    scenarios = select_scenarios(args.scenarios)
    out_dir: Path = args.out.resolve()
    for sub in ("logs", "wrk"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    echo_script = wrk.write_echo_script(out_dir)

    facts = machine()
    found = versions()
    pin = (
        "no CPU pinning"
        if args.no_pin
        else f"server pinned to CPU {args.server_cpu}, wrk to CPU {args.wrk_cpu} (taskset)"
    )
    method = (
        f"one worker per server, {pin}; wrk -t1 -c{args.connections} -d{args.duration}s "
        f"--latency after a {WARMUP_S} s warm-up; HTTP/1.1 keep-alive on 127.0.0.1"
    )
    command = shlex.join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    command = command.replace(" --skip-setup", "") if os.environ.get(REEXEC_FLAG) else command
    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": facts,
        "versions": found,
        "portico_revision": portico_revision(),
        "method": method,
        "command": command,
        "duration_s": args.duration,
        "connections": args.connections,
        "servers": [s.name for s in chosen],
        "scenarios": [s.name for s in scenarios],
    }
    print("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    print(f"machine: {facts['nproc']} CPUs, {facts['cpu_model']}; load average {facts['loadavg']}")
    if facts["loadavg_1m"] > 0.5:
        print("warning: the machine is busy (1-minute load > 0.5); numbers will be noisy")
    print(method)

    results: list[report.Result] = []
    started = time.monotonic()
    interrupted = False
    rounds: list[list[report.Result]] = []
    try:
        for number in range(args.rounds):
            if args.rounds > 1:
                print(f"round {number + 1} of {args.rounds}")
            order = chosen if number % 2 == 0 else chosen[::-1]
            rounds.append([])
            for spec in order:
                rounds[-1] += bench_server(spec, scenarios, args, echo_script, out_dir)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: servers stopped; writing what was measured")

    results = median_results(rounds, chosen)
    if args.rounds > 1:
        meta["method"] += f"; median of {len(rounds)} interleaved rounds"
        meta["rounds"] = len(rounds)
        meta["spread"] = spreads(rounds)
        print("\nreq/s of each round:")
        for key, values in meta["spread"].items():
            print(f"  {key:<28} " + "  ".join(f"{v:>9,.0f}" for v in values))
        meta["paired"] = paired = paired_ratios(rounds)
        if paired:
            print("\nPortico ÷ peer in each round, and the median of the rounds:")
            for key, ratios in paired.items():
                middle = sorted(ratios)[(len(ratios) - 1) // 2]
                print(
                    f"  {key:<40} "
                    + "  ".join(f"{v:>5.2f}" for v in ratios)
                    + f"   median {middle:.2f}x"
                )
    names = [s.name for s in scenarios]
    print()
    seen: set[tuple[str, str]] = set()
    for name in names:
        if any(r.scenario == name for r in results):
            print(report.console_table(results, name, seen))
            print()
    report.write_json(out_dir / "results.json", results, meta)
    (out_dir / "results.md").write_text(
        report.markdown(results, meta, names, image="results.png"), encoding="utf-8"
    )
    subtitle = (
        f"one worker pinned to one CPU, wrk -c{args.connections} -d{args.duration}s on another; "
        f"{facts['cpu_model']}"
    )
    drew = report.chart(out_dir / "results.png", results, names, subtitle)
    written = ["results.json", "results.md"] + (["results.png"] if drew else [])
    elapsed = time.monotonic() - started
    print(f"wrote {', '.join(str(out_dir / w) for w in written)} in {elapsed:.0f} s")
    if not drew:
        print("matplotlib is missing: no chart")
    if args.publish and not interrupted:
        publish(out_dir, REPO_ROOT, results, meta, names)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
