"""One worker's HTTP server: listeners, live connections, the ticker, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import socket
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Final, Protocol

from portico.gateways.asgi import ASGIApp, HTTPCycle, http_scope
from portico.logs import AccessLog
from portico.protocols.http11 import H1Limits
from portico.runtime.http1 import H1Driver
from portico.runtime.http1_stream import H1Stream
from portico.runtime.websocket import WSSettings, serve_websocket

if TYPE_CHECKING:
    from portico.config import Config
    from portico.runtime.wsgi_pool import WSGIPool

log = logging.getLogger("portico.error")

SERVER_LINE: Final = b"server: portico\r\n"
# Request tasks are made directly, with a fixed name: on Python 3.11, loop.create_task() and an
# unnamed Task format a "Task-N" name for every request (about 0.5 us of a ~20 us request).
_Task: Final = asyncio.Task
_TASK_NAME: Final = "portico-request"
_NOT_FOUND_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]


class Connection(Protocol):
    """What the server asks of a live connection: an HTTP/1.1 driver or a WebSocket."""

    #: when the ticker calls :meth:`on_timeout` (0: never)
    deadline: float

    def on_timeout(self) -> None: ...

    def shutdown(self) -> None: ...

    def abort(self) -> None: ...


class Mount:
    """One app served under a URL prefix (``--mount``): ASGI (``app``) or WSGI (``wsgi``)."""

    def __init__(
        self,
        prefix: str,
        app: ASGIApp | None,
        wsgi: Any,
        root_path: str,
        state: dict[str, Any],
    ) -> None:
        self.prefix = b"" if prefix == "/" else prefix.encode("ascii")
        # "/api" serves "/api" and "/api/...", never "/apix"
        self.prefix_dir = self.prefix + b"/"
        self.app = app
        self.wsgi = wsgi
        self.root_path = root_path
        self.state = state

    def matches(self, path: bytes) -> bool:
        prefix = self.prefix
        return not prefix or path == prefix or path.startswith(self.prefix_dir)


class Server:
    """Serves one app on a set of listening sockets inside one event loop."""

    def __init__(
        self,
        config: Config,
        app: ASGIApp,
        loop: asyncio.AbstractEventLoop,
        state: dict[str, Any] | None = None,
        *,
        wsgi: WSGIPool | None = None,
        mounts: list[Mount] | None = None,
    ) -> None:
        self.config = config
        self.app = app
        #: set with --mount: requests go to the app of the longest matching prefix
        self.mounts = sorted(mounts, key=lambda m: -len(m.prefix)) if mounts else None
        #: set when the app is a WSGI app: requests go to its thread pool instead of a task
        self.wsgi = wsgi
        self.loop = loop
        self.state: dict[str, Any] = state if state is not None else {}
        self.root_path = config.root_path
        self.limits = H1Limits(
            max_request_line=config.max_request_line,
            max_header_count=config.max_header_count,
            max_header_bytes=config.max_header_bytes,
            max_body_size=config.max_body_size,
        )
        self.websocket = WSSettings.from_config(config)
        self.access = AccessLog(enabled=config.access_log or config.access_log_file is not None)
        self.server_line = SERVER_LINE if config.server_header else b""
        self.date_line = b""
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        #: requests handed to the app so far (``--max-requests`` recycles the worker)
        self.requests_served = 0
        self.closing = False
        self.now = loop.time()
        self._listeners: list[asyncio.base_events.Server] = []
        self._ticker: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None
        self._warned: dict[str, float] = {}
        #: connections holding response bytes until the end of this loop turn
        self._unflushed: list[H1Driver] = []
        self._flush_scheduled = False
        self._tick()

    # --- hot path -----------------------------------------------------------------

    def dispatch(self, stream: H1Stream) -> None:
        """Hand a request to the app in a task of its own (a WSGI app: to its thread pool)."""
        if self.mounts is not None:
            self._dispatch_mounted(stream, self.mounts)
            return
        wsgi = self.wsgi
        if stream.request.upgrade is not None and stream.conn.websocket_upgrade(stream):
            if wsgi is None:
                serve_websocket(self, stream, self.app, self.root_path, self.state)
                return
            stream.conn.decline_upgrade()  # WSGI has no WebSocket: an ordinary request
        if wsgi is not None:
            wsgi.dispatch(stream)
            return
        cycle = HTTPCycle(stream)
        task = _Task(
            cycle.run(self.app, http_scope(stream, self.root_path, self.state)),
            loop=self.loop,
            name=_TASK_NAME,
        )
        # asyncio keeps only weak references to tasks; hold it until the app returns
        self.tasks.add(task)
        stream.task = task

    def _dispatch_mounted(self, stream: H1Stream, mounts: list[Mount]) -> None:
        path = stream.request.raw_path
        upgrade = stream.request.upgrade is not None and stream.conn.websocket_upgrade(stream)
        for mount in mounts:  # longest prefix first
            if mount.matches(path):
                if upgrade and mount.app is not None:
                    serve_websocket(self, stream, mount.app, mount.root_path, mount.state)
                    return
                if upgrade:
                    stream.conn.decline_upgrade()
                if mount.wsgi is not None:
                    mount.wsgi.dispatch(stream)
                    return
                assert mount.app is not None
                scope = http_scope(stream, mount.root_path, mount.state)
                task = _Task(
                    HTTPCycle(stream).run(mount.app, scope), loop=self.loop, name=_TASK_NAME
                )
                self.tasks.add(task)
                stream.task = task
                return
        if upgrade:
            stream.conn.decline_upgrade()
        stream.start(404, list(_NOT_FOUND_HEADERS), b"Not Found\n", True)
        self.app_finished(stream)

    def flush_later(self, conn: H1Driver) -> None:
        """Have ``conn`` write its held responses once the apps of this loop turn have run.

        The turn's last answer flushes them (see ``H1Driver.write``); if other requests are
        still running then, the flush scheduled here writes them at the start of the next turn,
        before the tasks that turn's reads create.
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

    def app_finished(self, stream: H1Stream) -> None:
        """Called by the gateway, inside the request's task, when the app has returned."""
        self.in_flight -= 1
        if stream.task is not None:
            self.tasks.discard(stream.task)
        if self.closing:
            self._check_drained()

    def warn_limited(self, key: str, message: str, *args: object) -> None:
        """Log an overload warning at most once a second per kind, not once per request."""
        last = self._warned.get(key)
        if last is None or self.now - last >= 1.0:
            self._warned[key] = self.now
            log.warning(message, *args)

    # --- lifecycle ----------------------------------------------------------------

    async def start(self, sockets: list[socket.socket]) -> None:
        for sock in sockets:
            listener = await self.loop.create_server(
                lambda: H1Driver(self), sock=sock, backlog=self.config.backlog
            )
            self._listeners.append(listener)

    def _tick(self) -> None:
        """Once a second: refresh the clock and the Date header, and enforce timeouts.

        One timer for the whole worker instead of one per connection keeps timers off the hot
        path; the timeouts it enforces are seconds long, so a one-second grain is enough.
        """
        self.now = now = self.loop.time()
        if self.config.date_header:
            self.date_line = b"date: %s\r\n" % formatdate(usegmt=True).encode("ascii")
        for conn in [c for c in self.connections if c.deadline and c.deadline <= now]:
            conn.on_timeout()
        self._ticker = self.loop.call_later(1.0, self._tick)

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if self.closing:
            self._check_drained()

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

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, let requests in flight finish, close idle connections.

        Busy connections answer their current request with ``Connection: close``; whatever is
        still running after ``timeout`` seconds is cut off.
        """
        self.closing = True
        self._drained = self.loop.create_future()
        for listener in self._listeners:
            listener.close()
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
            for conn in list(self.connections):
                conn.abort()
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=1.0)
        if self._ticker is not None:
            self._ticker.cancel()
        for listener in self._listeners:
            await listener.wait_closed()
