"""Running wrk and reading its report.

wrk prints a human report; we read the lines we need from it (``--latency`` adds the percentile
table that holds p99). Units follow wrk's own formatting: times in us/ms/s/m/h, sizes in
B/KB/MB/GB/TB with 1024 steps.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ECHO_BODY_SIZE = 16 * 1024

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_SIZE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}

_RE_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_RE_TRANSFER = re.compile(r"^Transfer/sec:\s+([\d.]+)([KMGT]?B)", re.M)
_RE_P99 = re.compile(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RE_P50 = re.compile(r"^\s*50(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RE_TOTAL = re.compile(
    r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)([KMGT]?B) read", re.M
)
_RE_SOCKET = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.M
)
_RE_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)", re.M)


@dataclass(slots=True)
class WrkResult:
    """The numbers taken from one wrk run."""

    requests: int = 0
    duration_s: float = 0.0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    transfer_bytes_per_s: float = 0.0
    non2xx: int = 0
    socket_errors: dict[str, int] = field(
        default_factory=lambda: {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )

    @property
    def errors(self) -> int:
        return self.non2xx + sum(self.socket_errors.values())


class WrkError(RuntimeError):
    """wrk did not run, or printed nothing we could read."""


def _time_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def parse(output: str) -> WrkResult:
    """Read a wrk report; raise WrkError if it has no Requests/sec line."""
    rps = _RE_RPS.search(output)
    if rps is None:
        raise WrkError("no 'Requests/sec' line in wrk output")
    result = WrkResult(rps=float(rps.group(1)))
    if (m := _RE_TRANSFER.search(output)) is not None:
        result.transfer_bytes_per_s = float(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if (m := _RE_P99.search(output)) is not None:
        result.p99_ms = _time_ms(m.group(1), m.group(2))
    if (m := _RE_P50.search(output)) is not None:
        result.p50_ms = _time_ms(m.group(1), m.group(2))
    if (m := _RE_TOTAL.search(output)) is not None:
        result.requests = int(m.group(1))
        result.duration_s = _time_ms(m.group(2), m.group(3)) / 1000.0
    if (m := _RE_SOCKET.search(output)) is not None:
        keys = ("connect", "read", "write", "timeout")
        result.socket_errors = {k: int(v) for k, v in zip(keys, m.groups(), strict=True)}
    if (m := _RE_NON2XX.search(output)) is not None:
        result.non2xx = int(m.group(1))
    return result


def write_echo_script(out_dir: Path) -> Path:
    """The Lua script that turns wrk's GET into a POST of 16 KiB."""
    path = out_dir / "echo.lua"
    path.write_text(
        "-- written by bench/run.py: POST a 16 KiB body to /echo\n"
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("x", {ECHO_BODY_SIZE})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n',
        encoding="utf-8",
    )
    return path


def command(
    url: str,
    *,
    duration_s: int,
    connections: int,
    script: Path | None,
    cpu: int | None,
) -> list[str]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    return argv


def run(argv: list[str], *, duration_s: int) -> str:
    """Run wrk and return its report; raise WrkError if it fails or hangs."""
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=duration_s + 30,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration_s + 30} s") from exc
    except OSError as exc:
        raise WrkError(f"cannot run wrk: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise WrkError(f"wrk exited {proc.returncode}: {detail[-1] if detail else ''}")
    return proc.stdout


def version() -> str:
    try:
        proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    except OSError:
        return "missing"
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0].removeprefix("wrk ").split(" [")[0] if text else "unknown"
