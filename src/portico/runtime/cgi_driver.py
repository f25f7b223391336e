"""What the uwsgi and FastCGI drivers share: nginx on one side, the stream seam on the other.

Both protocols describe a request as CGI variables (``protocols.cgi_vars``) and answer with an
HTTP-like head, so one driver shape serves both (``runtime.uwsgi`` and ``runtime.fastcgi`` add
their core and what differs: one request per connection, or keep-alive with aborts and
management records). What every protocol shares (admission, the access log, write batching, the
clock) is the worker context's.

The bind is the trust boundary: the client, scheme, server and prefix come from the ``Origin``
event, i.e. from nginx's variables, never from a request header. There is no TLS on these binds
(nginx terminated it and says so in ``HTTPS``), no WebSocket (nginx's uwsgi and FastCGI modules
cannot carry one), and no PROXY header (nginx cannot send one to these upstreams).

Input is read with backpressure: reading stops while more than ``IO_UNIT`` bytes of body
wait for the app. Bad input is logged once and ends the connection: with the error response
when none has started, else with a reset, as after an app that fails mid-response, so that
nginx never passes a truncated body on as a complete one.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any, Final

from portico.errors import AppError
from portico.gateways.stream import IO_UNIT, ClientDisconnected, Stream
from portico.protocols.cgi_vars import Origin
from portico.protocols.events import Body, EndOfBody, Headers, Request, StreamError
from portico.protocols.fastcgi import FastCGIConnection
from portico.protocols.uwsgi import UwsgiConnection
from portico.runtime.context import DEFER_LIMIT, Driver, WorkerContext
from portico.runtime.file_reads import INLINE_FILE, read_cached, send_file_by_reads

__all__ = ["BODY_LOW_WATER", "CGIDriver", "CGIStream"]

# Request body flow control, as for HTTP/1.1: stop reading when IO_UNIT of body waits for the
# app, read again once the app has consumed down to the low mark.
BODY_LOW_WATER: Final = 64 * 1024
# During a graceful shutdown a connection without a request waits this long for the one nginx
# may already be sending (the ticker's one-second grain adds up to a second).
IDLE_SHUTDOWN_GRACE: Final = 1.0
# After an error response, input is read and dropped for at most this long before closing:
# closing with unread input makes the kernel send a reset, and nginx could lose the response.
LINGER_SECONDS: Final = 2.0
# SO_LINGER on, timeout 0: close() sends RST instead of FIN.
_RESET: Final = struct.pack("ii", 1, 0)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class CGIDriver(Driver):
    """The driver of one uwsgi or FastCGI connection; subclasses bring the protocol core."""

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        limits = ctx.limits
        self.header_timeout = limits.header_timeout
        self.keepalive_timeout = limits.keepalive_timeout
        #: the protocol core; the subclass sets it
        self.proto: UwsgiConnection | FastCGIConnection
        self.stream: CGIStream | None = None
        self.origin: Origin | None = None
        #: bytes of a request arrived and its Request not yet dispatched (the head timer runs)
        self.head_started = False
        self.lingering = False
        self.refused = False
        self.eof = False
        self._read_paused = False

    # --- the protocol core (``proto``, set by the subclass) ---------------------------

    def receive(self, data: bytes) -> list[Any]:
        return self.proto.receive_data(data)

    def receive_eof(self) -> list[Any]:
        return self.proto.receive_eof()

    def response_start(
        self, status: int, headers: Headers, body: bytes, end: bool, reason: bytes
    ) -> list[Any]:
        """The head (without Date and Server: nginx adds its own) and the first piece."""
        return self.proto.response_start(status, headers, body, end=end, reason=reason)

    def response_body(self, data: bytes, end: bool) -> list[Any]:
        return self.proto.response_body(data, end=end)

    def other_event(self, event: Any) -> None:
        """An event only this protocol has (FastCGI's ``Aborted`` and ``Reply``)."""
        raise NotImplementedError

    def next_request(self) -> None:
        """A response ended and the connection is still usable: serve the next or close."""
        raise NotImplementedError

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.take_transport(transport)
        ctx = self.ctx
        if not ctx.admit_connection(self):
            # answered once the request is read (FastCGI needs its request id): see _handle
            self.refused = True
            self.loop.call_later(self.header_timeout + LINGER_SECONDS, self._close)
            return
        self.deadline = ctx.now + self.header_timeout
        if ctx.closing:
            self.shutdown()  # accepted in the turn that began the drain: serve its request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._out = None
        if not self.refused:
            self.ctx.connection_closed(self)
        stream = self.stream
        if stream is not None:
            stream.lost()
        self.release_drain()

    def data_received(self, data: bytes) -> None:
        self.ctx.bytes_in += len(data)
        if self.lingering:
            return  # after an error response: drain and drop
        if self.stream is None and not self.head_started:
            self.head_started = True
            self.deadline = self.ctx.now + self.header_timeout
        events = self.receive(data)
        if events:
            self._handle(events)

    def eof_received(self) -> bool:
        self.eof = True
        if self.lingering:
            self._close()
            return False
        events = self.receive_eof()
        if events:
            self._handle(events)
        stream = self.stream
        if stream is None:
            self._close()
            return False
        stream.client_eof()  # nginx gave the request up; a response may still be written
        return True

    # --- events from the protocol -------------------------------------------------

    def _handle(self, events: list[Any]) -> None:
        event: Any
        for event in events:
            kind = type(event)
            if kind is Origin:
                self.origin = event
            elif kind is Request:
                self._request(event)
            elif kind is Body:
                stream = self.stream
                if stream is not None:
                    stream.feed(event.data)
            elif kind is EndOfBody:
                stream = self.stream
                if stream is not None:
                    stream.feed_end()
            elif kind is StreamError:
                self._protocol_error(event)
            else:
                self.other_event(event)
            if self.closed or self.lingering:
                return
        stream = self.stream
        if stream is not None and stream.buffered > IO_UNIT and not self._read_paused:
            self._read_paused = True
            transport = self.transport
            if transport is not None:
                transport.pause_reading()

    def _request(self, request: Request) -> None:
        origin = self.origin
        assert origin is not None  # the cores send Origin first
        self.origin = None
        stream = CGIStream(self, request, origin)
        self.stream = stream
        self.head_started = False
        self.deadline = 0.0
        if self.refused:
            self._fail(503, "too many connections")
            return
        self.ctx.dispatch(stream)

    def _peer(self) -> str:
        """nginx's address (the client's is not known until the variables are read)."""
        return f"{self.client[0]}:{self.client[1]}" if self.client else "-"

    def _protocol_error(self, error: StreamError) -> None:
        self.ctx.log_client_error(self._peer(), error.status, error.detail)
        stream = self.stream
        if stream is not None and stream.response_started() and not stream.response_complete():
            self.abort()  # a head is out: the response must not look whole
            return
        self._fail(error.status, error.detail)

    def _fail(self, status: int, detail: str) -> None:
        """Answer ``status`` if a response can still be written, and end the connection."""
        stream = self.stream
        if stream is not None:
            stream.lost()  # the app (if any) is told its client is gone
            self.stream = None
        data = self.proto.error_response(status, detail)
        if data:
            self.write([data])
        self._linger()

    # --- what the stream asks -----------------------------------------------------------

    def send(self, chunks: list[Any]) -> None:
        """Write a response's bytes: small ones batched (``Driver.write``), large ones at once.

        FastCGI hands a large body on as ``memoryview`` slices; they are always larger than
        ``DEFER_LIMIT``, which ``Driver.write`` would write at once too.
        """
        if len(chunks) == 1 or sum(map(len, chunks)) <= DEFER_LIMIT:
            self.write(chunks)
            return
        self.flush()
        transport = self.transport
        if transport is not None and not self.closed:
            transport.writelines(chunks)
            self.ctx.bytes_out += sum(map(len, chunks))

    def body_consumed(self) -> None:
        if self._read_paused:
            stream = self.stream
            if stream is None or stream.buffered <= BODY_LOW_WATER:
                self._resume()

    def _resume(self) -> None:
        if self._read_paused:
            self._read_paused = False
            transport = self.transport
            if transport is not None and not self.closed:
                transport.resume_reading()

    def response_done(self, stream: CGIStream) -> None:
        ctx = self.ctx
        if ctx.access.enabled:
            ctx.log_response(stream, stream.status)
        if stream is not self.stream:
            return
        self.stream = None
        if not stream.body_done:
            self._linger()  # nginx may still be sending a body the app did not read
        elif ctx.closing or self.eof:
            self._close()
        else:
            self.next_request()

    # --- the context's view (Connection) --------------------------------------------

    def on_timeout(self) -> None:
        if self.closed:
            return
        if self.head_started and not self.lingering:
            self.ctx.log_client_error(self._peer(), 408, "request not received in time")
            self._fail(408, "request not received in time")
            return
        self._close()

    def shutdown(self) -> None:
        """Graceful drain: finish the request in flight, then close; a connection without one
        waits briefly for the request nginx may already be sending."""
        if self.stream is None and not self.head_started and not self.lingering:
            self.deadline = self.ctx.now + IDLE_SHUTDOWN_GRACE

    def abort(self) -> None:
        """End the connection with a reset (an app failed mid-response, or the drain's deadline):
        nginx then ends the client's response incomplete instead of passing it on as whole.

        What was given to the connection before still goes out first.
        """
        self.flush()
        self.closed = True
        stream = self.stream
        if stream is not None:
            stream.lost()
        transport = self.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                except OSError:  # pragma: no cover - already gone
                    pass
            transport.abort()

    def _linger(self) -> None:
        """Half-close after the last response; drop input until nginx closes or time is up."""
        transport = self.transport
        if transport is None or self.closed or self.lingering:
            return
        self.lingering = True
        if not transport.can_write_eof():
            self._close()
            return
        self.flush()
        transport.write_eof()
        self.deadline = self.ctx.now + LINGER_SECONDS
        self._resume()

    def _close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True
            if self.transport is not None:
                self.transport.close()  # flushes what was written first


class CGIStream(Stream):
    """One request on a uwsgi or FastCGI connection (implements ``gateways.Stream``)."""

    # Defaults live on the class: creating a stream (once per request) sets only what differs.
    status = 0
    _reader: asyncio.Future[None] | None = None
    _disconnect_waiter: asyncio.Future[None] | None = None
    _started = False
    _complete = False
    _eof = False

    def __init__(self, conn: CGIDriver, request: Request, origin: Origin) -> None:
        self.conn = conn
        self.request = request
        self.client = origin.client
        self.server = origin.server
        self.scheme = origin.scheme
        if origin.root_path:
            self.prefix = origin.root_path
        self._chunks: list[bytes] = []
        self.body_done = not request.has_body

    # --- fed by the driver ---------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.buffered += len(data)
        _wake(self._reader)

    def feed_end(self) -> None:
        self.body_done = True
        _wake(self._reader)

    def client_eof(self) -> None:
        """nginx closed its side: it no longer wants the response."""
        self._eof = True
        _wake(self._reader)
        _wake(self._disconnect_waiter)

    def lost(self) -> None:
        """The exchange is over for the app (connection gone, aborted, failed)."""
        self.disconnected = True
        _wake(self._reader)
        _wake(self._disconnect_waiter)

    # --- the Stream seam -------------------------------------------------------

    def read(self) -> tuple[bytes, bool] | None:
        chunks = self._chunks
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self.buffered = 0
            self.conn.body_consumed()
            return data, not self.body_done
        if self.body_done:
            return b"", False
        return None

    def wait_readable(self) -> asyncio.Future[None]:
        fut = self.conn.loop.create_future()
        if self._chunks or self.body_done or self.disconnected or self._eof:
            fut.set_result(None)
        else:
            self._reader = fut
        return fut

    def wait_disconnect(self) -> asyncio.Future[None]:
        fut = self.conn.loop.create_future()
        if self.disconnected or self._complete or self._eof:
            fut.set_result(None)
        else:
            self._disconnect_waiter = fut
        return fut

    def start(
        self, status: int, headers: Headers, body: bytes, end: bool, reason: bytes = b""
    ) -> Any:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        ctx = conn.ctx
        if ctx.extra_headers or self.request_id:  # --header, --request-id
            headers = ctx.response_fields(self, headers)
        self.response_headers = headers
        # no Date or Server: nginx adds its own (and would pass ours on as a second pair)
        chunks = conn.response_start(status, headers, body, end, reason)
        self._started = True
        self.status = status
        self.sent_bytes += len(body)
        conn.send(chunks)
        if end:
            self._finish()
        return conn.drain_waiter()

    def write(self, body: bytes, end: bool) -> Any:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        try:
            chunks = conn.response_body(body, end)
        except AppError:
            conn.abort()  # the head is out: a truncated or overlong body must not look whole
            raise
        self.sent_bytes += len(body)
        if chunks:
            conn.send(chunks)
        if end:
            self._finish()
        return conn.drain_waiter()

    def end_with_trailers(self, trailers: Headers) -> Any:
        return self.write(b"", True)  # neither protocol (nor nginx) carries trailers

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        if count <= INLINE_FILE:
            data = read_cached(fd, offset, count)
            if data is not None:  # a small cached file: one write with the head
                waiter = self.write(data, True)
                if waiter is not None:
                    await waiter
                return
        await send_file_by_reads(self, self.conn, fd, offset, count)

    def response_started(self) -> bool:
        return self._started

    def response_complete(self) -> bool:
        return self._complete

    def abort(self) -> None:
        self.conn.abort()

    def app_finished(self) -> None:
        self.conn.ctx.request_done(self)

    def _finish(self) -> None:
        self._complete = True
        _wake(self._disconnect_waiter)
        self.conn.response_done(self)
