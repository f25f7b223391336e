"""The line a worker keeps to its master: one pipe, one short line per message.

The worker writes; the master reads. A worker proves it is alive with ``beat`` lines written from
its event loop's own timer, so a loop stuck in a blocking call falls silent and the master notices
(a thread answering pings would prove nothing about the loop). The pipe also tells the master that
the worker is ready to serve, that it wants to retire (``--max-requests``), its metrics with each
beat (``--metrics-bind``: ``stats key=value ...``, totals since it started), and, by its end of
file, that the worker is gone.

This module is shared by both sides and imports nothing of HTTP, so the master can use it.
"""

from __future__ import annotations

import os

__all__ = ["BEAT", "READY", "RETIRE", "STATS", "MasterLink", "parse"]

READY = "ready"
BEAT = "beat"
RETIRE = "retire"
STATS = "stats"

# A message is one line; the master drops a longer one rather than buffer without bound.
MAX_LINE = 4096


class MasterLink:
    """The worker's end of the pipe to its master."""

    __slots__ = ("fd", "master_pid")

    def __init__(self, fd: int, master_pid: int) -> None:
        self.fd = fd
        self.master_pid = master_pid
        os.set_blocking(fd, False)

    def ready(self, description: str) -> None:
        """Listening, and the app has started: this worker can take traffic."""
        # the description is our own text (the app's import path), kept to one line
        self._send(f"{READY} {description}".replace("\n", " ")[: MAX_LINE - 1])

    def beat(self) -> bool:
        """One heartbeat; False when the master is gone (the pipe is broken)."""
        return self._send(BEAT)

    def retire(self) -> None:
        """Ask to be replaced: the master starts a successor, then stops this worker."""
        self._send(RETIRE)

    def stats(self, lines: list[str]) -> None:
        """The worker's metrics, each line shorter than PIPE_BUF: one atomic write each."""
        for line in lines:
            self._send(f"{STATS} {line}")

    def orphaned(self) -> bool:
        """True when the master died and the worker was re-parented."""
        return os.getppid() != self.master_pid

    def _send(self, line: str) -> bool:
        try:
            os.write(self.fd, line.encode("utf-8", "replace") + b"\n")
        except BlockingIOError:
            return True  # the master is busy reading; a missed beat is not an error
        except OSError:
            return False
        return True


def parse(buffer: bytearray) -> list[tuple[str, str]]:
    """Take the complete lines out of ``buffer`` as ``(message, argument)`` pairs."""
    messages: list[tuple[str, str]] = []
    while True:
        end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > MAX_LINE:
                del buffer[:]
            return messages
        line = bytes(buffer[:end]).decode("utf-8", "replace")
        del buffer[: end + 1]
        message, _, argument = line.partition(" ")
        messages.append((message, argument))
