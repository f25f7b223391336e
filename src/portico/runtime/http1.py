"""The asyncio driver of one HTTP/1.1 connection: socket ↔ :class:`H1Connection` ↔ gateway.

It owns what the sans-I/O protocol cannot: the transport, flow control both ways, timeouts, and
the order in which pipelined requests reach the app (one at a time, strictly in order; reading
pauses while a request waits, so a client cannot make the server buffer without bound).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, Any, Final, cast

from portico.protocols.events import Body, EndOfBody, Event, Request, StreamError
from portico.protocols.http11 import H1Connection
from portico.runtime.http1_stream import H1Stream

if TYPE_CHECKING:
    from portico.runtime.server import Server

log = logging.getLogger("portico.error")

# Request body flow control: stop reading the socket when this much body waits for the app, and
# start again when the app has consumed down to the low mark.
BODY_HIGH_WATER: Final = 256 * 1024
BODY_LOW_WATER: Final = 64 * 1024
# During a graceful shutdown an idle keep-alive connection waits this long for a request already
# on its way before it is closed (the ticker's one-second grain adds up to a second).
IDLE_SHUTDOWN_GRACE: Final = 1.0
# After an error response, input is read and dropped for at most this long before closing: closing
# with unread input makes the kernel send RST, and the client may lose the response (nginx calls
# this "lingering close").
LINGER_SECONDS: Final = 2.0
# Response flow control: the transport calls pause_writing() above this many unsent bytes.
WRITE_HIGH_WATER: Final = 256 * 1024
# Responses are held until the end of the event-loop turn and written together (see
# H1Driver.write); output above this size is written at once, as the app gives it.
DEFER_LIMIT: Final = 64 * 1024


class H1Driver(asyncio.Protocol):
    """asyncio protocol for one HTTP/1.1 connection."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server.loop
        self.proto = H1Connection(server.limits)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.sockname: tuple[str, int | None] | None = None
        self.scheme = "http"
        self.current: H1Stream | None = None
        self.last: H1Stream | None = None
        self.queue: deque[H1Stream] = deque()
        self.pending_error: StreamError | None = None
        self.deadline = 0.0
        self.head_started = False
        self.closed = False
        self.lingering = False
        self.eof = False
        self._read_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        #: response bytes held for the flush at the end of this loop turn (None: nothing held)
        self._out: list[bytes] | None = None
        self._out_size = 0
        self.header_timeout = server.config.header_timeout
        self.keepalive_timeout = server.config.keepalive_timeout

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = transport = cast(asyncio.Transport, transport)
        server = self.server
        sock = transport.get_extra_info("socket")
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.client = (str(peer[0]), int(peer[1]))
        if isinstance(local, tuple):
            self.sockname = (str(local[0]), int(local[1]))
        elif isinstance(local, str):
            self.sockname = (local, None)
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - the peer may already be gone
                pass
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if len(server.connections) >= server.config.max_connections:
            server.warn_limited(
                "connections",
                "connection limit reached (%d); refusing connections",
                len(server.connections),
            )
            transport.write(self.proto.error_response(503, "too many connections"))
            self.lingering = True
            if transport.can_write_eof():
                transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self._close)
            return
        server.connections.add(self)
        self.deadline = server.now + self.header_timeout
        if server.closing:
            # accepted in the same loop turn that began the shutdown: the client already has
            # it, so answer its request (with Connection: close) rather than refuse it
            self.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._out = None
        self.server.connection_closed(self)
        for stream in (self.current, *self.queue):
            if stream is not None:
                stream.lost()
        self.queue.clear()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # after an error response: drain and drop
        if self.current is None and not self.head_started:
            # first bytes of a new request: the idle timer becomes the head timer (slowloris)
            self.head_started = True
            self.deadline = self.server.now + self.header_timeout
        events = self.proto.receive_data(data)
        if events:
            self._handle(events)

    def eof_received(self) -> bool:
        self.eof = True
        if self.lingering:
            self._close()
            return False
        events = self.proto.receive_eof()
        if events:
            self._handle(events)
        if self.current is not None:
            self.current.client_eof()
        if self.current is None and not self.closed:
            self._close()
            return False
        return True  # keep the write side open to answer what was asked before the EOF

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    # --- events from the protocol -------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        event: Any
        for event in events:
            kind = type(event)
            if kind is Request:
                stream = H1Stream(self, event)
                self.last = stream
                if self.current is None and self.pending_error is None:
                    self._dispatch(stream)
                else:
                    self.queue.append(stream)
            elif kind is Body:
                self.last.feed(event.data)  # type: ignore[union-attr]
            elif kind is EndOfBody:
                self.last.feed_end(event.trailers)  # type: ignore[union-attr]
            else:
                self._protocol_error(event)
        last = self.last
        if (
            self.queue
            or self._read_paused
            or self.pending_error is not None
            or self.proto.upgrade_held
            or (last is not None and last.buffered > BODY_HIGH_WATER)
        ):
            self._update_reading()

    def _dispatch(self, stream: H1Stream) -> None:
        server = self.server
        self.current = stream
        self.head_started = False
        self.deadline = 0.0
        if server.in_flight >= server.config.max_in_flight:
            server.warn_limited(
                "in_flight", "too many requests in flight (%d); answering 503", server.in_flight
            )
            stream.start(
                503,
                [(b"retry-after", b"1"), (b"content-type", b"text/plain")],
                b"Service Unavailable\n",
                True,
            )
            return
        server.in_flight += 1
        server.requests_served += 1
        stream.start_time = server.now
        server.dispatch(stream)

    def _protocol_error(self, error: StreamError) -> None:
        last = self.last
        if last is not None and not last._body_done and not last.disconnected:
            # The error is in the body of a request already parsed.
            last.body_error = error
            if last is self.current:
                last.lost()
                if not last.response_started():
                    self._log_protocol_error(error)
                    self._write_error(error)
                    self._linger()
                else:
                    self._close()
                return
            self.queue.pop()  # a queued request with a broken body never reaches the app
        if self.current is None:
            self._log_protocol_error(error)
            self._write_error(error)
            self._linger()
        else:
            # answer what came before in order, then the error (RFC 9112 §9.3.2)
            self.pending_error = error

    def _log_protocol_error(self, error: StreamError) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        log.info("%s: %d %s", client, error.status, error.detail)

    def _write_error(self, error: StreamError) -> None:
        if self.transport is not None and not self.closed:
            self.write([self.proto.error_response(error.status, error.detail)])

    # --- flow control -------------------------------------------------------------

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        last = self.last
        pause = (
            bool(self.queue)
            or self.pending_error is not None
            or bool(self.proto.upgrade_held)  # the app's answer decides what the rest is
            or (last is not None and last.buffered > BODY_HIGH_WATER)
        )
        if pause != self._read_paused:
            self._read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def body_consumed(self) -> None:
        if self._read_paused:
            last = self.last
            if last is None or last.buffered <= BODY_LOW_WATER:
                self._update_reading()

    def send_continue(self, stream: H1Stream) -> None:
        if stream is self.current and self.transport is not None:
            line = self.proto.continue_response()
            if line:
                self.write([line])

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
        server = self.server
        out = self._out
        if out is None:
            if server.in_flight <= 1:
                server.flush()  # the last answer of the turn: everything goes now
            elif size <= DEFER_LIMIT:
                self._out = chunks
                self._out_size = size
                server.flush_later(self)
                return
            self._write_now(chunks)
            return
        out += chunks
        self._out_size += size
        if server.in_flight <= 1:
            server.flush()
        elif self._out_size > DEFER_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Write what :meth:`write` held back (the server calls this at the end of a turn).

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

    def drain_waiter(self) -> asyncio.Future[None] | None:
        if not self._write_paused or self.closed:
            return None
        if self._drain is None:
            self._drain = self.loop.create_future()
        return self._drain

    def response_done(self, stream: H1Stream) -> None:
        server = self.server
        if server.access.enabled:
            request = stream.request
            server.access.log(
                f"{self.client[0]}:{self.client[1]}" if self.client else "-",
                request.method.encode("ascii"),
                request.raw_path + (b"?" + request.query_string if request.query_string else b""),
                request.http_version,
                stream.status,
                stream.sent_bytes,
                server.now - stream.start_time,
            )
        proto = self.proto
        if proto.upgrade_held and proto.keep_alive:
            # a WebSocket handshake answered without switching (a 503): what followed it is
            # the next request (RFC 9110 §7.8)
            events = proto.release_upgrade()
            if events:
                self._handle(events)
        self.current = None
        if not self.proto.keep_alive:
            self._close()
            return
        if self.queue:
            self._dispatch(self.queue.popleft())
        elif self.pending_error is not None:
            self._log_protocol_error(self.pending_error)
            self._write_error(self.pending_error)
            self._linger()
            return
        elif self.eof:
            self._close()
            return
        elif server.closing:
            # the response promised keep-alive before the shutdown began: wait briefly for the
            # request its client may already be sending, and answer it with Connection: close
            self.deadline = server.now + IDLE_SHUTDOWN_GRACE
        else:
            self.deadline = server.now + self.keepalive_timeout
        if self._read_paused:
            self._update_reading()

    def websocket_upgrade(self, stream: H1Stream) -> bool:
        """Whether ``stream`` is a WebSocket handshake held for the app to answer."""
        return self.proto.upgrade_held == stream.request.stream_id

    def decline_upgrade(self) -> None:
        """Serve a held WebSocket handshake as an ordinary request: parse what followed it."""
        events = self.proto.release_upgrade()
        if events:
            self._handle(events)
        else:
            self._update_reading()

    def detach(self) -> bytes:
        """The app accepted a WebSocket: let go of the transport; return the bytes after the head.

        The caller makes itself the transport's protocol; this driver is done with it.
        """
        self.flush()
        self.closed = True
        self.current = None
        self.queue.clear()
        self.server.connection_closed(self)
        return self.proto.take_upgrade()

    def on_timeout(self) -> None:
        """Called by the server's ticker when ``deadline`` has passed."""
        if self.closed:
            return
        if self.head_started and not self.lingering:
            self._write_error(StreamError(0, 408, "request head not received in time"))
            self._linger()
            return
        self._close()

    def shutdown(self) -> None:
        """Graceful shutdown: answer at most one more request, with ``Connection: close``.

        An idle keep-alive connection is not closed at once: its client may have sent a request
        that is still in flight, and closing would fail it (the race behind gunicorn#1236 and
        the resets load balancers see during deploys). It stays open for a short grace; a
        request that arrives is answered with ``Connection: close``, silence ends it.
        """
        self.proto.close_after_response()
        if self.current is None and not self.head_started:
            self.deadline = self.server.now + IDLE_SHUTDOWN_GRACE

    def abort(self) -> None:
        """Drop the connection at once (an app failed mid-response).

        What was already given to the connection still goes out first, as it would have
        without the end-of-turn batching: the client sees where the response broke off.
        """
        self.flush()
        self.closed = True
        for stream in (self.current, *self.queue):
            if stream is not None:
                stream.lost()
        if self.transport is not None:
            self.transport.abort()

    def _linger(self) -> None:
        """Half-close after an error response; drop input until the client closes or time is up."""
        transport = self.transport
        if transport is None or self.closed or self.lingering:
            return
        self.lingering = True
        self.current = None
        self.queue.clear()
        if not transport.can_write_eof():
            self._close()
            return
        self.flush()
        transport.write_eof()
        self.deadline = self.server.now + LINGER_SECONDS
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    def _close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True
            if self.transport is not None:
                self.transport.close()  # flushes what was written first
