"""One request/response exchange on an HTTP/1.1 connection: the gateways' :class:`Stream`.

Split from ``http1`` (the connection's driver, which creates one per request and feeds it) and
compiled with it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from portico.errors import AppError
from portico.gateways.stream import ClientDisconnected, Stream
from portico.protocols.events import Headers, Request, StreamError

if TYPE_CHECKING:
    from portico.runtime.http1 import H1Driver

__all__ = ["FILE_CHUNK", "H1Stream"]

FILE_CHUNK: Final = 256 * 1024


class H1Stream(Stream):
    """One request/response exchange on an HTTP/1.1 connection (implements ``gateways.Stream``)."""

    # Defaults live on the class: creating a stream (once per request) sets only what differs.
    status = 0
    buffered = 0
    start_time = 0.0
    body_error: StreamError | None = None
    _reader: asyncio.Future[None] | None = None
    _disconnect_waiter: asyncio.Future[None] | None = None
    _started = False
    _complete = False
    _eof = False
    task: asyncio.Task[None] | None = None

    def __init__(self, conn: H1Driver, request: Request) -> None:
        self.conn = conn
        self.request = request
        self.client = conn.client
        self.server = conn.sockname
        self.scheme = conn.scheme
        self._chunks: list[bytes] = []
        self._trailers: Headers = []
        self._body_done = not request.has_body

    # --- fed by the driver ---------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.buffered += len(data)
        self._wake_reader()

    def feed_end(self, trailers: Headers) -> None:
        self._body_done = True
        self._trailers = trailers
        self._wake_reader()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)

    def client_eof(self) -> None:
        """The client stopped sending. It may still read (a half-close), so responses can still
        be written, but an app waiting for ``http.disconnect`` is told now: for most clients EOF
        means they are gone, and long-polling apps must not wait forever."""
        self._eof = True
        self._wake_reader()
        waiter = self._disconnect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def lost(self) -> None:
        """The connection is gone (or unusable): wake everything that waits on it."""
        self.disconnected = True
        self._wake_reader()
        waiter = self._disconnect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the Stream seam -------------------------------------------------------

    def read(self) -> tuple[bytes, bool] | None:
        chunks = self._chunks
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self.buffered = 0
            self.conn.body_consumed()
            return data, not self._body_done
        if self._body_done and not self.body_error:
            return b"", False
        if not self.disconnected and not self._eof:
            self.conn.send_continue(self)
        return None

    def wait_readable(self) -> asyncio.Future[None]:
        fut = self.conn.loop.create_future()
        if self._chunks or self._body_done or self.disconnected or self._eof:
            fut.set_result(None)
        else:
            self._reader = fut
        return fut

    def trailers(self) -> Headers:
        return self._trailers

    def wait_disconnect(self) -> asyncio.Future[None]:
        fut = self.conn.loop.create_future()
        if self.disconnected or self._complete or self._eof:
            fut.set_result(None)
        else:
            self._disconnect_waiter = fut
        return fut

    def start(self, status: int, headers: Headers, body: bytes, end: bool) -> Any:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        server = conn.server
        chunks = conn.proto.response_start(
            status,
            headers,
            body,
            end=end,
            date_line=server.date_line,
            server_line=server.server_line,
        )
        self._started = True
        self.status = status
        self.sent_bytes += len(body)
        conn.write(chunks)
        if end:
            self._finish()
        return conn.drain_waiter()

    def write(self, body: bytes, end: bool) -> Any:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        try:
            chunks = conn.proto.response_body(body, end=end)
        except AppError:
            conn.abort()  # the head is out: a truncated or overlong body must not look whole
            raise
        self.sent_bytes += len(body)
        if chunks:
            conn.write(chunks)
        if end:
            self._finish()
        return conn.drain_waiter()

    def end_with_trailers(self, trailers: Headers) -> Any:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        conn.write(conn.proto.response_end(trailers))
        self._finish()
        return conn.drain_waiter()

    async def send_file(self, path: str) -> None:
        # Files are read here in pieces and written with flow control; the response framing
        # (Content-Length accounting or chunks) stays the protocol's job.
        with open(path, "rb") as file:
            while True:
                data = file.read(FILE_CHUNK)
                if not data:
                    break
                waiter = self.write(data, False)
                if waiter is not None:
                    await waiter
        waiter = self.write(b"", True)
        if waiter is not None:
            await waiter

    def response_started(self) -> bool:
        return self._started

    def response_complete(self) -> bool:
        return self._complete

    def abort(self) -> None:
        self.conn.abort()

    def app_finished(self) -> None:
        self.conn.server.app_finished(self)

    def _finish(self) -> None:
        self._complete = True
        waiter = self._disconnect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.conn.response_done(self)
