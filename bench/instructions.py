#!/usr/bin/env python3
"""Instructions per request of Portico's in-process request path, counted by valgrind.

    python bench/instructions.py [--python PY …] [--scenarios plaintext,echo]
                                 [--interfaces asgi,wsgi] [--portico-arg ARG …]

Runs ``bench/hotpath.py`` (the real driver, protocol and gateway on an in-memory transport) under
``valgrind --tool=callgrind`` twice, with a small and a larger number of requests, and divides the
difference in instructions by the difference in requests, so start-up and import costs cancel.
Instruction counts do not move with what else the machine is doing, which makes this the A/B to
trust on a busy machine (wall-clock A/Bs are ``bench/ab.py``). Give ``--python`` once per build
to compare, e.g. an old build's venv and the current one; ``--portico-arg`` passes settings to
``hotpath.py`` (the access log, the metrics: compare a run with and one without).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HOTPATH = Path(__file__).resolve().parent / "hotpath.py"
_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(
    python: str, scenario: str, interface: str, requests: int, extra: list[str]
) -> int:
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python]
    argv += [str(HOTPATH), "--requests", str(requests), "--connections", "64"]
    argv += ["--scenario", scenario, "--interface", interface]
    argv += [f"--portico-arg={arg}" for arg in extra]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
    match = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{python}: {done.stderr.strip().splitlines()[-1:]}")
    return int(match.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", action="append", default=[], help="a build's python (repeatable)")
    p.add_argument("--scenarios", default="plaintext,echo")
    p.add_argument("--interfaces", default="asgi,wsgi")
    p.add_argument("--requests", type=int, default=3200, help="the larger run (3200)")
    p.add_argument("--portico-arg", action="append", default=[], metavar="ARG")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install -y valgrind")
    pythons = args.python or [sys.executable]
    small = args.requests // 5
    print("| build | interface | scenario | instructions/request |")
    print("|---|---|---|---:|")
    for interface in args.interfaces.split(","):
        for scenario in args.scenarios.split(","):
            for python in pythons:
                low = instructions(python, scenario, interface, small, args.portico_arg)
                high = instructions(python, scenario, interface, args.requests, args.portico_arg)
                per = (high - low) / (args.requests - small)
                print(f"| {python} | {interface} | {scenario} | {per:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
