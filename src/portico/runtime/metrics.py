"""A worker's request metrics, and the words of the report it sends its master.

With ``--metrics-bind`` each worker counts its responses here (compiled: a few list increments
per response) and, with every heartbeat, reports its totals since it started to the master as
``key=value`` lines (``worker.link``); the master adds up the workers and keeps the last report
of every worker that is gone, so a total never goes back (``supervisor.metrics``). Totals, not
deltas: a report lost on a full pipe costs nothing, the next one carries it.

This module imports nothing of HTTP, so the master reads the vocabulary from it.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BOUNDS_NS",
    "GAUGES",
    "METHODS",
    "PROTOCOLS",
    "REQUEST_KEY",
    "STATUS_CLASSES",
    "WorkerMetrics",
]

#: Upper bounds of the request-duration histogram's buckets, in nanoseconds (a response's
#: duration is counted without a float; the exposition shows seconds); a last one is +Inf.
#: Prometheus' defaults start at 5 ms; a response from this server often takes 50 µs.
BOUNDS_NS: Final = (
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
)
#: The method label: the standard methods (RFC 9110 §9, PATCH), anything else is "other", so a
#: client cannot make the master keep a series per word it invents.
METHODS: Final = (
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "CONNECT",
    "TRACE",
    "other",
)
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
#: ``Request.http_version`` -> the protocol label
PROTOCOLS: Final = ("HTTP/1.0", "HTTP/1.1", "HTTP/2", "other")
_VERSIONS: Final[dict[str, int]] = {"1.0": 0, "1.1": 1, "2": 2}
_METHOD_INDEX: Final[dict[str, int]] = {name: i for i, name in enumerate(METHODS[:-1])}
_OTHER_METHOD: Final = len(METHODS) - 1
_OTHER_PROTOCOL: Final = len(PROTOCOLS) - 1
_CELLS: Final = len(METHODS) * len(STATUS_CLASSES) * len(PROTOCOLS)
#: above every bound: the +Inf bucket's top (73 years in nanoseconds; still a native int)
_NO_BOUND: Final = 1 << 61

#: A report's keys that are levels now, not totals (the master does not keep a dead worker's).
GAUGES: Final = frozenset({"in_flight", "connections", "websockets"})
#: ``r:METHOD:STATUS:PROTOCOL`` keys count responses
REQUEST_KEY: Final = "r"
#: A report line stays under PIPE_BUF (4096), so that its write to the pipe is atomic.
_LINE: Final = 3800


class WorkerMetrics:
    """Totals of one worker since it started; :meth:`report` turns them into lines."""

    def __init__(self) -> None:
        self.requests = [0] * _CELLS
        #: responses per histogram bucket (not cumulative; the exposition adds them up)
        self.buckets = [0] * (len(BOUNDS_NS) + 1)
        # Held by the instance: compiled code would box a Final tuple of 16 ints on every use.
        self.bounds: tuple[int, ...] = BOUNDS_NS
        #: nanoseconds, summed exactly (the exposition shows seconds)
        self.duration_sum = 0
        self.protocol_errors = 0
        # Runs of responses in the same cell and bucket (a busy worker's usual case) are counted
        # in native ints and moved into the lists when the run ends or a report is made: a
        # list item is a boxed int, and every increment of one allocates a new int.
        self._cell = 0
        self._cell_run = 0
        self._bucket = 0
        self._bucket_run = 0
        # the current bucket's range, ``low < duration <= high``, in native ints: a response
        # in the same bucket as the last (most of them) costs two comparisons, no scan
        self._low = -1
        self._high = BOUNDS_NS[0]

    def count(self, method: str, status: int, version: str, duration: int) -> None:
        """One finished response, ``duration`` nanoseconds after its request was admitted."""
        # GET over HTTP/1.1 compared first: equal strings, no hash and no dict probe
        cell = 0 if method == "GET" else _METHOD_INDEX.get(method, _OTHER_METHOD)
        klass = status // 100 - 1
        if klass < 0 or klass > 4:
            klass = 4
        protocol = 1 if version == "1.1" else _VERSIONS.get(version, _OTHER_PROTOCOL)
        index = (cell * 5 + klass) * 4 + protocol
        if index == self._cell:
            self._cell_run += 1
        else:
            self.requests[self._cell] += self._cell_run
            self._cell = index
            self._cell_run = 1
        if self._low < duration <= self._high:
            self._bucket_run += 1
        else:
            # A scan from the smallest bound, not a bisection: most responses fall in the
            # first buckets, and this loop costs less than a call to bisect.
            bounds = self.bounds
            bucket = 0
            for bound in bounds:
                if duration <= bound:
                    break
                bucket += 1
            self.buckets[self._bucket] += self._bucket_run
            self._bucket = bucket
            self._bucket_run = 1
            self._low = bounds[bucket - 1] if bucket else -1
            self._high = bounds[bucket] if bucket < len(bounds) else _NO_BOUND
        self.duration_sum += duration

    def _settle(self) -> None:
        """Move the current runs into the lists."""
        self.requests[self._cell] += self._cell_run
        self._cell_run = 0
        self.buckets[self._bucket] += self._bucket_run
        self._bucket_run = 0

    def report(
        self, in_flight: int, connections: int, websockets: int, received: int, sent: int
    ) -> list[str]:
        """The totals and levels as ``key=value`` lines, each shorter than PIPE_BUF."""
        self._settle()
        tokens = [
            f"in_flight={in_flight}",
            f"connections={connections}",
            f"websockets={websockets}",
            f"received={received}",
            f"sent={sent}",
            f"protocol_errors={self.protocol_errors}",
            f"duration_ns={self.duration_sum}",
        ]
        for index, count in enumerate(self.buckets):
            if count:
                tokens.append(f"d{index}={count}")
        for index, count in enumerate(self.requests):
            if count:
                cell, protocol = divmod(index, 4)
                method, klass = divmod(cell, 5)
                tokens.append(
                    f"{REQUEST_KEY}:{METHODS[method]}:{STATUS_CLASSES[klass]}:"
                    f"{PROTOCOLS[protocol]}={count}"
                )
        lines: list[str] = []
        line: list[str] = []
        size = 0
        for token in tokens:
            if size + len(token) > _LINE:
                lines.append(" ".join(line))
                line, size = [], 0
            line.append(token)
            size += len(token) + 1
        lines.append(" ".join(line))
        return lines
