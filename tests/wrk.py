"""Steady load from ``wrk`` in the background, and what it counted as failed."""

from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import dataclass


@dataclass
class WrkResult:
    requests: int
    socket_errors: int
    non_2xx: int
    output: str

    @property
    def failed(self) -> int:
        return self.socket_errors + self.non_2xx


def parse(output: str) -> WrkResult:
    requests = re.search(r"(\d+) requests in", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(requests.group(1)) if requests else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        output=output,
    )


class Load:
    """``wrk`` against ``url`` for ``seconds`` in a thread; ``result()`` waits for it."""

    def __init__(self, url: str, seconds: int, connections: int = 16) -> None:
        self._output = ""
        self._thread = threading.Thread(
            target=self._run,
            args=(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", url],),
            daemon=True,
        )
        self._thread.start()

    def _run(self, argv: list[str]) -> None:
        self._output = subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    def result(self) -> WrkResult:
        self._thread.join(120)
        result = parse(self._output)
        assert result.requests > 0, self._output
        return result
