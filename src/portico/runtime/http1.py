"""The asyncio driver of one HTTP/1.1 connection: socket ↔ :class:`H1Connection` ↔ gateway.

It owns what the sans-I/O protocol cannot: the transport, flow control both ways, timeouts, and
the order in which pipelined requests reach the app (one at a time, strictly in order; reading
pauses while a request waits, so a client cannot make the server buffer without bound). What
every protocol shares (admission, the access log, write batching, the clock) is the worker
context's (``runtime.context``).

On a cleartext connection the first bytes may name another protocol by its preface (HTTP/2's
``PRI * HTTP/2.0``, RFC 9113 §3.3): the context lists those protocols, and the connection is
handed over before any HTTP/1.1 is parsed.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from portico.gateways.stream import IO_UNIT
from portico.protocols.events import Body, EndOfBody, Event, Request, StreamError
from portico.protocols.http11 import H1Connection
from portico.runtime.context import WorkerContext
from portico.runtime.http1_stream import H1Owner, H1Stream

__all__ = ["H1Driver"]

# Request body flow control: stop reading the socket when IO_UNIT of body waits for the app, and
# start again when the app has consumed down to the low mark.
BODY_LOW_WATER: Final = 64 * 1024
# During a graceful shutdown an idle keep-alive connection waits this long for a request already
# on its way before it is closed (the ticker's one-second grain adds up to a second).
IDLE_SHUTDOWN_GRACE: Final = 1.0
# After an error response, input is read and dropped for at most this long before closing: closing
# with unread input makes the kernel send RST, and the client may lose the response (nginx calls
# this "lingering close").
LINGER_SECONDS: Final = 2.0


class H1Driver(H1Owner):
    """asyncio protocol for one HTTP/1.1 connection."""

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        limits = ctx.limits
        self.proto = H1Connection(limits.h1)
        self.current: H1Stream | None = None
        self.last: H1Stream | None = None
        #: requests parsed while another is answered (pipelining); a list, since reading
        #: pauses while one waits, and an empty deque costs ~600 bytes per idle connection
        self.queue: list[H1Stream] = []
        self.pending_error: StreamError | None = None
        self.head_started = False
        self.lingering = False
        self.eof = False
        self._read_paused = False
        #: bytes kept while they could still be the start of another protocol's preface
        self._sniffed: bytes | None = b"" if ctx.prefaces else None
        self.header_timeout = limits.header_timeout
        self.keepalive_timeout = limits.keepalive_timeout

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        plain = self.take_transport(transport)
        ctx = self.ctx
        if self.tls is not None:
            self._sniffed = None  # over TLS, ALPN chose the protocol (RFC 9113 §3.2)
        if not ctx.admit_connection(self):
            plain.write(self.proto.error_response(503, "too many connections"))
            self.lingering = True
            if plain.can_write_eof():
                plain.write_eof()
            self.loop.call_later(LINGER_SECONDS, self._close)
            return
        self.deadline = ctx.now + self.header_timeout
        if ctx.closing:
            # accepted in the same loop turn that began the shutdown: the client already has
            # it, so answer its request (with Connection: close) rather than refuse it
            self.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._out = None
        self.ctx.connection_closed(self)
        for stream in (self.current, *self.queue):
            if stream is not None:
                stream.lost()
        self.queue.clear()
        self.release_drain()

    def data_received(self, data: bytes) -> None:
        self.ctx.bytes_in += len(data)
        if self.lingering:
            return  # after an error response: drain and drop
        if self._sniffed is not None:
            data = self._sniff(data)
            if not data:
                return
        if self.current is None and not self.head_started:
            # first bytes of a new request: the idle timer becomes the head timer (slowloris)
            self.head_started = True
            self.deadline = self.ctx.now + self.header_timeout
        events = self.proto.receive_data(data)
        if events:
            self._handle(events)

    def eof_received(self) -> bool:
        self.eof = True
        if self.lingering:
            self._close()
            return False
        if self._sniffed:  # a partial preface, then nothing: parse it as HTTP/1.1 after all
            data, self._sniffed = self._sniffed, None
            self.data_received(data)
        events = self.proto.receive_eof()
        if events:
            self._handle(events)
        if self.current is not None:
            self.current.client_eof()
        if self.current is None and not self.closed:
            self._close()
            return False
        return True  # keep the write side open to answer what was asked before the EOF

    # --- another protocol's preface -------------------------------------------------

    def _sniff(self, data: bytes) -> bytes:
        """The bytes to parse as HTTP/1.1, or ``b""`` while they may still be a preface (or
        once the connection was handed to the protocol whose preface they are)."""
        seen = self._sniffed + data if self._sniffed else data
        prefaces = self.ctx.prefaces
        for preface, factory in prefaces:
            if seen.startswith(preface):
                self._sniffed = None
                self._hand_over(factory(self.ctx), seen)
                return b""
        if any(preface.startswith(seen) for preface, _ in prefaces):
            self._sniffed = seen  # too short to tell yet
            return b""
        self._sniffed = None
        return seen

    def _hand_over(self, driver: asyncio.Protocol, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self.closed = True
        self.deadline = 0.0
        self.ctx.connection_closed(self)
        transport.set_protocol(driver)
        driver.connection_made(transport)
        driver.data_received(data)

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
                self.last.feed_end()  # type: ignore[union-attr]
            else:
                self._protocol_error(event)
        last = self.last
        if (
            self.queue
            or self._read_paused
            or self.pending_error is not None
            or self.proto.upgrade_held
            or (last is not None and last.buffered > IO_UNIT)
        ):
            self._update_reading()

    def _dispatch(self, stream: H1Stream) -> None:
        self.current = stream
        self.head_started = False
        self.deadline = 0.0
        self.ctx.dispatch(stream)

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
        self.ctx.log_client_error(client, error.status, error.detail)

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
            or (last is not None and last.buffered > IO_UNIT)
        )
        if pause != self._read_paused:
            self._read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    # --- what the streams ask (H1Owner) ---------------------------------------------

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

    def response_done(self, stream: H1Stream) -> None:
        ctx = self.ctx
        if ctx.access.enabled:
            ctx.log_response(stream, stream.status)
        proto = self.proto
        if proto.upgrade_held and proto.keep_alive:
            # a WebSocket handshake answered without switching (a 503): what followed it is
            # the next request (RFC 9110 §7.8)
            events = proto.release_upgrade()
            if events:
                self._handle(events)
        self.current = None
        if stream is self.last and stream._body_done:
            # nothing more will be fed to it: an idle keep-alive connection should not keep
            # the last request (its headers, its stream) alive until the next one comes
            self.last = None
        if not self.proto.keep_alive:
            self._close()
            return
        if self.queue:
            self._dispatch(self.queue.pop(0))
        elif self.pending_error is not None:
            self._log_protocol_error(self.pending_error)
            self._write_error(self.pending_error)
            self._linger()
            return
        elif self.eof:
            self._close()
            return
        elif ctx.closing:
            # the response promised keep-alive before the shutdown began: wait briefly for the
            # request its client may already be sending, and answer it with Connection: close
            self.deadline = ctx.now + IDLE_SHUTDOWN_GRACE
        else:
            self.deadline = ctx.now + self.keepalive_timeout
        if self._read_paused:
            self._update_reading()

    def decline_upgrade(self) -> None:
        """Serve a held WebSocket handshake as an ordinary request: parse what followed it."""
        events = self.proto.release_upgrade()
        if events:
            self._handle(events)
        else:
            self._update_reading()

    def detach(self) -> bytes:
        """An upgrade was accepted: let go of the transport; return the bytes after the head.

        The stream makes the upgrade's owner the transport's protocol; this driver is done.
        """
        self.flush()
        self.closed = True
        self.current = None
        self.queue.clear()
        self.ctx.connection_closed(self)
        return self.proto.take_upgrade()

    # --- the context's view (Connection) --------------------------------------------

    def on_timeout(self) -> None:
        """Called by the context's ticker when ``deadline`` has passed."""
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
            self.deadline = self.ctx.now + IDLE_SHUTDOWN_GRACE

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
        self.deadline = self.ctx.now + LINGER_SECONDS
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    def _close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True
            if self.transport is not None:
                self.transport.close()  # flushes what was written first
