"""Steady HTTP/2 load from ``h2load`` in the background, and what it counted as failed.

h2load counts as failed a request it queued but never sent: nghttp2 refuses to write the HEADERS
of a new stream once a GOAWAY has arrived (RFC 9113 §6.8), and h2load refills its streams the
moment a response completes, so a GOAWAY read in the same chunk as a response strands the
refill. Such a request never reached the server (its log line has no start time); real clients
retry it on a new connection. :attr:`H2LoadResult.bad` counts only the requests that were sent.
"""

from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass
class H2LoadResult:
    succeeded: int
    failed: int
    errored: int
    timeout: int
    non_2xx: int
    #: failed requests h2load never sent (refused by its own library after a GOAWAY)
    never_sent: int
    output: str

    @property
    def bad(self) -> int:
        """Requests that were sent and did not succeed ("errored" are among "failed")."""
        return self.failed - self.never_sent + self.timeout + self.non_2xx


def parse(output: str, log: str = "") -> H2LoadResult:
    counts = re.search(
        r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        output,
    )
    codes = re.search(r"status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    succeeded, failed, errored, timeout = (int(n) for n in counts.groups()) if counts else (0,) * 4
    return H2LoadResult(
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        non_2xx=sum(int(n) for n in codes.groups()) if codes else 0,
        # --log-file lines: start time (us, 0 if never sent), status (-1: failed), duration
        never_sent=sum(1 for line in log.splitlines() if line.startswith("0\t-1\t")),
        output=output,
    )


class H2Load:
    """``h2load`` against ``url`` for ``seconds`` in a thread; ``result()`` waits for it."""

    def __init__(
        self, url: str, seconds: int, log: Path, connections: int = 16, streams: int = 10
    ) -> None:
        self._output = ""
        self._log = log
        argv = ["h2load", f"-c{connections}", f"-m{streams}", f"-D{seconds}", f"--log-file={log}"]
        argv.append(url)
        self._thread = threading.Thread(target=self._run, args=(argv,), daemon=True)
        self._thread.start()

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        self._output = done.stdout + done.stderr

    def result(self) -> H2LoadResult:
        self._thread.join(120)
        result = parse(self._output, self._log.read_text() if self._log.exists() else "")
        assert result.succeeded > 0, self._output
        return result
