"""The master's metrics: its workers' reports added up, and what only the master sees.

Each worker reports its totals since it started with every heartbeat (``runtime.metrics``); the
master keeps each live worker's last report, and when a worker exits (stopped, recycled,
crashed, killed) adds its last report to the totals of the workers that are gone, so a counter
never goes back. A worker's final report goes out after its drain, and the master reads the pipe
to its end before it counts the exit, so a graceful stop or recycle loses nothing; a worker
killed outright loses at most its last second. The master itself counts worker starts, exits by
cause, heartbeat timeouts and reloads, and reads each worker's memory when it is scraped.

Counting costs the master nothing measurable, so it always counts; only ``--metrics-bind``
imports ``prometheus_client`` (``supervisor.exporter``) and serves the totals.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass, field

from portico.runtime.metrics import GAUGES
from portico.supervisor.process import Worker

__all__ = ["EXIT_CAUSES", "MasterMetrics", "Totals"]

#: Why workers leave: asked to (reload, recycling, scaling, shutdown), killed after their
#: stop deadline, silent past ``--timeout``, died before they were ready, or died unasked.
EXIT_CAUSES = ("stopped", "killed", "timeout", "boot_failure", "crash")


@dataclass(slots=True)
class Totals:
    """A scrape's view: every counter summed, the levels of the live workers."""

    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)


class MasterMetrics:
    def __init__(self) -> None:
        #: the counters of the workers that are gone, summed
        self.retired: dict[str, float] = {}
        self.starts = 0
        self.exits = dict.fromkeys(EXIT_CAUSES, 0)
        self.heartbeat_timeouts = 0
        self.reloads = 0

    def report(self, worker: Worker, line: str) -> None:
        """A worker's ``stats`` line: its totals replace the last ones it reported."""
        stats = worker.stats
        for token in line.split():
            key, _, value = token.partition("=")
            try:
                stats[key] = float(value)
            except ValueError:
                continue  # not ours to guess; the next report has it again

    def exited(self, worker: Worker, code: int) -> None:
        """Count the exit and keep the worker's counters (call once, after its last report)."""
        if worker.aborted:
            cause = "timeout"
        elif worker.stopping_at is not None:
            cause = "killed" if code == -signal.SIGKILL else "stopped"
        elif worker.ready_at is None:
            cause = "boot_failure"
        else:
            cause = "crash"
        self.exits[cause] += 1
        retired = self.retired
        for key, value in worker.stats.items():
            if key not in GAUGES:
                retired[key] = retired.get(key, 0.0) + value
        worker.stats = {}

    def totals(self, workers: Iterable[Worker]) -> Totals:
        totals = Totals(dict(self.retired))
        counters, gauges = totals.counters, totals.gauges
        for worker in workers:
            for key, value in worker.stats.items():
                into = gauges if key in GAUGES else counters
                into[key] = into.get(key, 0.0) + value
        return totals
