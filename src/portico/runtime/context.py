"""The worker context: what every connection of a worker shares, whatever its protocol.

One :class:`WorkerContext` per worker owns the loop and the clock (refreshed by one ticker for
all connections), the limits, admission (the connection and in-flight bounds and their 503),
the counters, the access log, the tasks of running apps, end-of-turn write batching and the
graceful drain. Every connection driver subclasses :class:`Driver` and asks the context; a driver
never reaches into another driver, and the context knows drivers only through :class:`Connection`
(the ticker's and the drain's view) and :class:`Driver` (the batching's view). The apps are
behind :class:`Dispatcher`, so this module knows no gateway but the stream seam. The idea is
hypercorn's ``WorkerContext``, with the write batching and admission that every protocol needs
moved in as well.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from time import perf_counter_ns
from typing import Any, Final, Protocol, cast

from portico.config import Config
from portico.gateways.stream import IO_UNIT, Stream, with_defaults
from portico.logs import error_log as log
from portico.protocols.events import Headers
from portico.protocols.forwarded import OriginResolver, TrustedProxies
from portico.runtime.access import Observer
from portico.runtime.limits import Limits, build_limits
from portico.runtime.origin import apply_origin
from portico.runtime.request_id import HEADER as REQUEST_ID
from portico.runtime.request_id import RequestIds

__all__ = [
    "DEFER_LIMIT",
    "Connection",
    "Dispatcher",
    "Driver",
    "WorkerContext",
]


# Request tasks are made directly, with a fixed name: on Python 3.11, loop.create_task() and an
# unnamed Task format a "Task-N" name for every request (about 0.5 us of a ~20 us request).
_Task: Final = asyncio.Task
_TASK_NAME: Final = "portico-request"
# Responses are held until the end of the event-loop turn and written together (see
# Driver.write); output above this size is written at once, as the app gives it.
DEFER_LIMIT: Final = 64 * 1024
# Threads reading files for TLS connections: reads of the page cache are short, so a few
# threads keep many slow clients fed; more would only contend for the GIL.
_FILE_THREADS: Final = 4
_BUSY_BODY: Final = b"Service Unavailable\n"
_BUSY_HEADERS: Final[Headers] = [(b"retry-after", b"1"), (b"content-type", b"text/plain")]
_HEALTH_BODY: Final = b"OK\n"
_HEALTH_HEADERS: Final[Headers] = [
    (b"content-type", b"text/plain"),
    (b"cache-control", b"no-store"),
]
_DRAINING_BODY: Final = b"Draining\n"
_DRAINING_HEADERS: Final[Headers] = [*_HEALTH_HEADERS, (b"connection", b"close")]


class Connection(Protocol):
    """What the context asks of a live connection: a driver, a WebSocket, a TLS handshake."""

    #: when the ticker calls :meth:`on_timeout` (0: never)
    deadline: float

    def on_timeout(self) -> None: ...

    def shutdown(self) -> None:
        """Graceful drain: finish what is in flight, then close."""
        ...

    def abort(self) -> None: ...


class Dispatcher:
    """Where admitted requests go: the apps (``runtime.router``)."""

    def dispatch(self, stream: Stream) -> None:
        raise NotImplementedError


class WorkerContext:
    """Everything one worker's connections share (see the module docstring)."""

    def __init__(
        self, config: Config, loop: asyncio.AbstractEventLoop, limits: Limits | None = None
    ) -> None:
        self.config = config
        self.loop = loop
        self.limits = limits = limits if limits is not None else build_limits(config)
        self.max_connections = limits.max_connections
        self.max_in_flight = limits.max_in_flight
        self.dispatcher: Dispatcher = Dispatcher()
        proxies = limits.proxies
        #: the peers that may say who the client is (None: neither proxy headers nor PROXY)
        self.trusted_proxies: TrustedProxies | None = (
            TrustedProxies(proxies.allow_ips) if proxies.headers or proxies.protocol else None
        )
        #: reads trusted proxies' headers (None: ``--no-proxy-headers``)
        self.resolver: OriginResolver | None = (
            OriginResolver(self.trusted_proxies, proxies.source)
            if proxies.headers and self.trusted_proxies is not None
            else None
        )
        #: protocols a cleartext connection may start with instead of HTTP/1.1, told apart by
        #: their first bytes (HTTP/2's ``PRI * HTTP/2.0`` preface, RFC 9113 §3.3): each preface
        #: and the factory of the driver the connection is handed to
        self.prefaces: tuple[tuple[bytes, Callable[[WorkerContext], asyncio.Protocol]], ...] = ()
        #: the access log and the metrics: drivers call :meth:`log_response` when it is enabled
        self.access = Observer(config, loop)
        #: ``--request-id``: gives each admitted request its ``X-Request-ID``
        self.request_ids = RequestIds() if config.request_id else None
        #: bytes received and sent by the drivers, WebSockets open (``--metrics-bind``)
        self.bytes_in = 0
        self.bytes_out = 0
        self.websockets = 0
        #: the ``Server`` and ``Date`` values added to responses that have none (empty: not added)
        self.server_name = b"portico" if config.server_header else b""
        #: ``--header``: added by each protocol's ``Stream.start`` (``with_defaults``)
        self.extra_headers = self.limits.headers
        # --no-sendfile: files go out as reads and writes, as under TLS (gunicorn's --no-sendfile)
        self.sendfile = config.sendfile
        self.date = b""
        self._date_header = config.date_header
        self.connections: set[Connection] = set()
        #: our end of the connections, one tuple per address (``Driver.take_transport``)
        self.socknames: dict[tuple[str, int | None], tuple[str, int | None]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.in_flight = 0
        #: requests handed to the app so far (``--max-requests`` recycles the worker)
        self.requests_served = 0
        self.closing = False
        #: SIGTERM came (``--shutdown-delay`` may keep serving a while): health checks fail
        self.draining = False
        self._health_path = limits.health_path
        self.now = loop.time()
        self._ticker: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None
        self._warned: dict[str, float] = {}
        #: connections holding response bytes until the end of this loop turn
        self._unflushed: list[Driver] = []
        self._flush_scheduled = False
        self._files: ThreadPoolExecutor | None = None
        self._tick()

    # --- admission ------------------------------------------------------------------

    def admit_connection(self, conn: Connection) -> bool:
        """Count a new connection in, unless the worker is at ``max_connections``."""
        connections = self.connections
        if len(connections) >= self.max_connections:
            self.warn_limited(
                "connections",
                "connection limit reached (%d); refusing connections",
                len(connections),
            )
            return False
        connections.add(conn)
        return True

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if self.closing:
            self._check_drained()

    def dispatch(self, stream: Stream) -> None:
        """Admit a request (503 over ``max_in_flight``) and hand it to the apps, once what its
        trusted proxy says about it is applied (``runtime.origin``). The ``--health-path`` is
        answered here, before admission and without an app (and logged like any response)."""
        if self.access.enabled:
            stream.start_ns = perf_counter_ns()
        health = self._health_path
        if health is not None and stream.request.raw_path == health:
            if self.draining or self.closing:
                stream.start(503, list(_DRAINING_HEADERS), _DRAINING_BODY, True)
            else:
                stream.start(200, list(_HEALTH_HEADERS), _HEALTH_BODY, True)
            return
        if stream.proxied and stream.request.proxy_fields is not False:
            resolver = self.resolver
            if resolver is not None:
                apply_origin(stream, resolver)
        ids = self.request_ids
        if ids is not None:
            ids.assign(stream)
        if self.in_flight >= self.max_in_flight:
            self.warn_limited(
                "in_flight", "too many requests in flight (%d); answering 503", self.in_flight
            )
            stream.start(503, list(_BUSY_HEADERS), _BUSY_BODY, True)
            return
        self.in_flight += 1
        self.requests_served += 1
        self.dispatcher.dispatch(stream)

    def spawn(self, coro: Coroutine[Any, Any, object], stream: Stream) -> None:
        """Run an app in a task of its own, held until the app returns (asyncio keeps only
        weak references to tasks)."""
        task: asyncio.Task[Any] = _Task(coro, loop=self.loop, name=_TASK_NAME)
        self.tasks.add(task)
        stream.task = task

    def request_done(self, stream: Stream) -> None:
        """The app of an admitted request returned (called from its gateway)."""
        self.in_flight -= 1
        task = stream.task
        if task is not None:
            self.tasks.discard(task)
        if self.closing:
            self._check_drained()

    def file_reader(self) -> ThreadPoolExecutor:
        """The threads that read files for connections that cannot ``sendfile`` (TLS), so that
        the event loop never waits for a disk; started on first use."""
        files = self._files
        if files is None:
            self._files = files = ThreadPoolExecutor(
                max_workers=_FILE_THREADS, thread_name_prefix="portico-file"
            )
        return files

    def log_client_error(self, client: str, status: int, detail: str) -> None:
        """A client broke its protocol: logged once, at info (its fault, not the server's).

        ``detail`` is Portico's own words (the protocol errors guarantee it), never client bytes.
        """
        log.info("%s: %d %s", client, status, detail)
        metrics = self.access.metrics
        if metrics is not None:
            metrics.protocol_errors += 1

    def warn_limited(self, key: str, message: str, *args: object) -> None:
        """Log an overload warning at most once a second per kind, not once per request."""
        last = self._warned.get(key)
        if last is None or self.now - last >= 1.0:
            self._warned[key] = self.now
            log.warning(message, *args)

    # --- the access log and the metrics ------------------------------------------------

    def log_response(self, stream: Stream, status: int) -> None:
        """A response is complete: its access-log line and its metrics, with the time since its
        admission measured now (callers check ``access.enabled`` first)."""
        self.access.response(stream, status, perf_counter_ns())

    def response_fields(self, stream: Stream, headers: Headers, defaults: bool = True) -> Headers:
        """The fields a driver writes for an app's ``headers``: ``--header``'s (unless not
        ``defaults``: a 101 carries none) and the request id (``--request-id``), each added
        where the app set no field of that name. Drivers call it when ``extra_headers`` or
        ``stream.request_id`` is set."""
        if defaults and self.extra_headers:
            headers = with_defaults(headers, self.extra_headers)
        request_id = stream.request_id
        if request_id:
            headers = with_defaults(headers, [(REQUEST_ID, request_id)])
        return headers

    def metrics_report(self) -> list[str]:
        """The worker's metrics for its master (``--metrics-bind``), or nothing."""
        metrics = self.access.metrics
        if metrics is None:
            return []
        return metrics.report(
            self.in_flight, len(self.connections), self.websockets, self.bytes_in, self.bytes_out
        )

    # --- end-of-turn write batching ---------------------------------------------------

    def flush_later(self, conn: Driver) -> None:
        """Have ``conn`` write its held responses once the apps of this loop turn have run.

        The turn's last answer flushes them (see ``Driver.write``); if other requests are still
        running then, the flush scheduled here writes them at the start of the next turn, before
        the tasks that turn's reads create.
        """
        unflushed = self._unflushed
        if not unflushed and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)
        unflushed.append(conn)

    def flush(self) -> None:
        """Write every response held back in this turn."""
        unflushed = self._unflushed
        if unflushed:
            self._unflushed = []
            for conn in unflushed:
                try:
                    conn.flush()
                except Exception:
                    # one connection's broken transport must not cost the others their answers
                    # (nor fail the app whose answer triggered the flush)
                    log.warning("could not write to a connection; dropping it", exc_info=True)
                    conn.abort()

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    # --- the clock ------------------------------------------------------------------

    def _tick(self) -> None:
        """Once a second: refresh the clock and the Date value, and enforce timeouts.

        One timer for the whole worker instead of one per connection keeps timers off the hot
        path; the timeouts it enforces are seconds long, so a one-second grain is enough.
        """
        self.now = now = self.loop.time()
        self.access.tick()
        if self._date_header:
            self.date = formatdate(usegmt=True).encode("ascii")
        for conn in [c for c in self.connections if c.deadline and c.deadline <= now]:
            conn.on_timeout()
        self._ticker = self.loop.call_later(1.0, self._tick)

    # --- the graceful drain ---------------------------------------------------------

    def _check_drained(self) -> None:
        drained = self._drained
        if (
            drained is not None
            and not drained.done()
            and not self.connections
            and not self.tasks
            and not self.in_flight  # a WSGI app may still run after its client left
        ):
            drained.set_result(None)

    async def drain(self, timeout: float) -> None:
        """Let requests in flight finish and close idle connections, within ``timeout``.

        Busy connections answer their current request with ``Connection: close``; whatever is
        still running after ``timeout`` seconds is cut off.
        """
        self.closing = True
        self._drained = self.loop.create_future()
        for conn in list(self.connections):
            conn.shutdown()
        self._check_drained()
        try:
            await asyncio.wait_for(asyncio.shield(self._drained), timeout)
        except TimeoutError:
            log.warning(
                "graceful timeout (%.1fs): closing %d connection(s), cancelling %d request(s)",
                timeout,
                len(self.connections),
                len(self.tasks),
            )
            self.abort_all()
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=1.0)

    def abort_all(self) -> None:
        """Drop every connection at once (the drain's deadline, a second Ctrl-C)."""
        for conn in list(self.connections):
            conn.abort()

    def stop(self) -> None:
        self.access.close()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._files is not None:
            self._files.shutdown(wait=False, cancel_futures=True)
            self._files = None


class Driver(asyncio.Protocol):
    """What every connection driver does the same way: its transport and where it came from,
    the end-of-turn write batching, and waiting while the client reads slowly.

    Subclasses implement the protocol (``data_received`` and the rest) and :class:`Connection`.
    """

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.transport: asyncio.Transport | None = None
        #: ``(host, port)`` of the peer and of our end, ``None`` for unix sockets
        self.client: tuple[str, int] | None = None
        self.sockname: tuple[str, int | None] | None = None
        self.scheme = "http"
        #: the connection's TLS facts (the ASGI TLS extension), ``None`` without TLS
        self.tls: dict[str, Any] | None = None
        #: the socket a file may be ``sendfile``d to (-1: not a plain socket, e.g. TLS)
        self.sendfile_fd = -1
        #: the peer is a trusted proxy whose headers may say who the client is
        self.proxied = False
        #: what a PROXY protocol header said (client, our address, TLS to the proxy), set by
        #: ``runtime.proxy_protocol`` before ``connection_made``; it wins over the socket's
        self.proxy_origin: tuple[tuple[str, int] | None, tuple[str, int] | None, bool] | None = None
        self.deadline = 0.0
        self.closed = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        #: response bytes held for the flush at the end of this loop turn (None: nothing held)
        self._out: list[bytes] | None = None
        self._out_size = 0

    def take_transport(self, transport: asyncio.BaseTransport) -> asyncio.Transport:
        """Record the transport and where the connection comes from (``connection_made``)."""
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = plain = cast(asyncio.Transport, transport)
        peer = plain.get_extra_info("peername")
        local = plain.get_extra_info("sockname")
        if isinstance(peer, tuple):
            # interned: thousands of connections from one proxy or client share one string
            self.client = (sys.intern(str(peer[0])), int(peer[1]))
        if isinstance(local, tuple):
            # the same few listening addresses for every connection: share one tuple each
            sockname = (str(local[0]), int(local[1]))
            self.sockname = self.ctx.socknames.setdefault(sockname, sockname)
        elif isinstance(local, str):  # a unix socket's path
            self.sockname = (local, None)
        origin = self.proxy_origin
        if origin is not None:
            client, server, via_tls = origin
            self.client = client
            if server is not None:
                self.sockname = server
            if via_tls:
                self.scheme = "https"
        trusted = self.ctx.trusted_proxies
        if trusted is not None and self.ctx.resolver is not None:
            self.proxied = trusted.trusts(self.client[0] if self.client is not None else None)
        tls = plain.get_extra_info("portico.tls")
        sock = plain.get_extra_info("socket")
        if tls is not None:
            self.tls = tls
            self.scheme = "https"
        elif sock is not None and self.ctx.sendfile:
            self.sendfile_fd = sock.fileno()
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # responses are written whole (end-of-turn batching); Nagle would only delay them
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - the peer may already be gone
                pass
        plain.set_write_buffer_limits(high=IO_UNIT)
        return plain

    # --- asyncio.Protocol: write flow control ------------------------------------------

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    def drain_waiter(self) -> asyncio.Future[None] | None:
        """A future to await while the client reads slowly, or ``None`` when there is room."""
        if not self._write_paused or self.closed:
            return None
        if self._drain is None:
            self._drain = self.loop.create_future()
        return self._drain

    def release_drain(self) -> None:
        """The connection is gone: wake whoever waits for the client to read."""
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- writing ------------------------------------------------------------------------

    def write(self, chunks: list[bytes]) -> None:
        """Queue response bytes; small ones wait until the apps of this loop turn have run.

        A loop turn runs the apps of every connection that became readable together. Writing
        their responses one after another at the end, instead of one at a time between the
        apps, lets the client side take them in one wake-up instead of one each: on loopback
        this saved 40% of the kernel time per request (the idea of TCP_CORK, per turn).
        The turn's last app to answer (no other request in flight) writes everything held at
        once, so a lone request pays no delay; output held while other requests run longer
        goes out at the start of the next turn. Output over ``DEFER_LIMIT`` is written at once,
        so large bodies are neither delayed nor copied, and the transport's flow control sees
        them.
        """
        size = len(chunks[0]) if len(chunks) == 1 else sum(map(len, chunks))
        ctx = self.ctx
        ctx.bytes_out += size
        out = self._out
        if out is None:
            if ctx.in_flight <= 1:
                ctx.flush()  # the last answer of the turn: everything goes now
            elif size <= DEFER_LIMIT:
                self._out = chunks
                self._out_size = size
                ctx.flush_later(self)
                return
            self._write_now(chunks)
            return
        out += chunks
        self._out_size += size
        if ctx.in_flight <= 1:
            ctx.flush()
        elif self._out_size > DEFER_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Write what :meth:`write` held back (the context calls this at the end of a turn).

        Another connection's app may be the one flushing, so a transport that is already going
        away (uvloop refuses writes between a reset and ``connection_lost``) is skipped here
        instead of failing that app.
        """
        out = self._out
        if out is not None:
            self._out = None
            transport = self.transport
            if not self.closed and transport is not None and not transport.is_closing():
                self._write_now(out)

    def _write_now(self, chunks: list[bytes]) -> None:
        transport = self.transport
        assert transport is not None
        if len(chunks) == 1:
            transport.write(chunks[0])
        else:
            transport.writelines(chunks)

    def abort(self) -> None:
        """Drop the connection at once; subclasses also wake what waits on it."""
        raise NotImplementedError
