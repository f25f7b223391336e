"""The asyncio driver of one HTTP/2 connection: socket ↔ :class:`H2Connection` ↔ gateways.

A connection arrives here by ALPN ``h2`` under TLS (``runtime.tls_transport``) or, on a cleartext
bind, by the prior-knowledge preface (RFC 9113 §3.3) that the HTTP/1.1 driver recognises through
the context's ``prefaces``. Each request is an :class:`H2Stream`, admitted on its own through the
context (its own 503 over ``max_in_flight``, its own access-log line), so one connection's
streams run side by side and a slow one holds back only itself (``http2_stream``).

What the driver owns beside the protocol (the core does no I/O and keeps no time):

* writing: the frames every stream queues during a loop turn go out in one write at its end
  (the context's batching, as for HTTP/1.1), and reading stops while the transport cannot write,
  so a client that does not read cannot make the server queue replies without bound;
* timers, on the context's one-second ticker: the SETTINGS acknowledgement (``header_timeout``,
  then GOAWAY SETTINGS_TIMEOUT), the first request (``header_timeout``) and the idle connection
  (``keepalive_timeout``), the stalled response (``h2_write_timeout``, then RST_STREAM), and the
  graceful drain;
* the bounds HTTP/2 shares with HTTP/1.1: the header count and the body size (413 on the
  stream), checked here so that a request is held to one limit whatever its protocol;
* the graceful drain: GOAWAY, one round trip for requests already on their way, then the final
  GOAWAY; streams in flight finish (SIGTERM, SIGHUP and ``--max-requests`` all come here).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from portico.protocols.events import Body, EndOfBody, Request, StreamError
from portico.protocols.h2_errors import NO_ERROR, SETTINGS_TIMEOUT
from portico.protocols.h2_events import CloseConnection, StreamReset, WindowOpen
from portico.protocols.http2 import H2Connection
from portico.runtime.context import DEFER_LIMIT, WorkerContext
from portico.runtime.http2_stream import H2Owner, H2Stream, H2Tunnel

__all__ = ["PREFACE", "H2Driver"]

#: RFC 9113 §3.4: the first bytes of a prior-knowledge (h2c) connection
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# During a graceful drain, how long after the first GOAWAY the final one names the last stream
# accepted: requests the client sent before it saw the first still arrive meanwhile (Go's
# server waits 1 s too). The drain's PING must have come back as well, for at most
# DRAIN_PING_WAIT more: a client slower than that is taken for gone.
DRAIN_GRACE: Final = 1.0
DRAIN_PING_WAIT: Final = 4.0
# After the final GOAWAY, input is read and dropped for at most this long before closing.
LINGER_SECONDS: Final = 2.0
# Output of more parts than this and more bytes than this (a large body's DATA frames: a header
# and a 16 KiB piece each) goes out as a vectored write of memoryviews of the app's buffer; less
# is joined, which for a few small frames is cheaper than the writev.
VECTOR_PARTS: Final = 8
VECTOR_BYTES: Final = 64 * 1024
_ERROR_HEADERS: Final = [(b"content-type", b"text/plain; charset=utf-8")]


class H2Driver(H2Owner):
    """asyncio protocol for one HTTP/2 connection."""

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        limits = ctx.limits
        h2 = limits.h2
        self.proto = H2Connection(h2.protocol)
        self.streams: dict[int, H2Stream] = {}
        self.tunnels: set[H2Tunnel] = set()
        self._max_header_count = h2.max_header_count
        self._max_body_size = h2.max_body_size
        self._write_timeout = h2.write_timeout
        self.header_timeout = limits.header_timeout
        self.keepalive_timeout = limits.keepalive_timeout
        self._held = False
        self._read_paused = False
        self._eof = False
        self.lingering = False
        self._settings_deadline = 0.0
        self._idle_deadline = 0.0
        self._drain_deadline = 0.0
        self._drain_started = 0.0

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        plain = self.take_transport(transport)
        ctx = self.ctx
        proto = self.proto
        if not ctx.admit_connection(self):
            # our SETTINGS, then GOAWAY: no stream was accepted, the client may retry elsewhere
            proto.close(NO_ERROR, "too many connections")
            plain.write(proto.data_to_send())
            self.closed = True
            plain.close()
            return
        plain.write(proto.data_to_send())  # the server preface (§3.4)
        now = ctx.now
        self._settings_deadline = self._idle_deadline = now + self.header_timeout
        self.deadline = self._idle_deadline
        if ctx.closing:
            self.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.connection_closed(self)
        self._lose_streams()
        self.release_drain()

    def data_received(self, data: bytes) -> None:
        self.ctx.bytes_in += len(data)
        if self.closed:
            return  # lingering after the final GOAWAY: dropped
        proto = self.proto
        events = proto.receive_data(data)
        if events:
            self._handle(events)
        if self._settings_deadline and not proto.settings_ack_pending:
            self._settings_deadline = 0.0
        self._write_out()
        if proto.finished:
            self._close()

    def eof_received(self) -> bool:
        # A client that half-closes can send no more frames (not even WINDOW_UPDATE); what is
        # running may still be answered, then the connection closes.
        self._eof = True
        if self.lingering:
            self.transport.close()  # type: ignore[union-attr]
            return False
        for stream in list(self.streams.values()):
            if stream.body_done:
                continue  # a whole request: still answered
            if stream.tunnel is not None:
                stream.feed_end()  # the client's side of the tunnel is over
            else:
                self.streams.pop(stream.stream_id, None)
                stream.lost()  # its body can never end
        if not self.streams:
            self._close()
            return False
        return True

    def pause_writing(self) -> None:
        super().pause_writing()
        self._update_reading()
        for tunnel in list(self.tunnels):
            tunnel.check_writing()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._update_reading()
        for tunnel in list(self.tunnels):
            tunnel.check_writing()

    # --- events from the protocol ---------------------------------------------------

    def _handle(self, events: list[Any]) -> None:
        streams = self.streams
        event: Any
        for event in events:
            kind = type(event)
            if kind is Request:
                self._request(event)
            elif kind is Body:
                stream = streams.get(event.stream_id)
                if stream is None:  # refused before the app saw it: nobody will read this
                    self.proto.acknowledge_received_data(event.stream_id, len(event.data))
                    continue
                stream.feed(event.data)
                if stream.received > self._max_body_size > 0 and stream.tunnel is None:
                    self._too_large(stream)
            elif kind is EndOfBody:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.feed_end()
            elif kind is WindowOpen:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.window_open()
            elif kind is StreamReset:
                stream = streams.pop(event.stream_id, None)
                if stream is not None:
                    stream.lost()
            elif kind is StreamError:
                self._answer_error(event.stream_id, event.status, event.detail)
            elif kind is CloseConnection:
                self._connection_error(event)
            # GoAwayReceived: the client opens no more streams; the core says when it is over

    def _request(self, request: Request) -> None:
        stream = H2Stream(self, request)
        if len(request.headers) > self._max_header_count:
            self._answer_error(request.stream_id, 431, "too many header fields")
            return
        if request.has_body and self._max_body_size:
            declared = _declared_length(request)
            if declared > self._max_body_size:
                self._answer_error(request.stream_id, 413, "request body too large")
                return
        self.streams[request.stream_id] = stream
        self._idle_deadline = 0.0
        self.ctx.dispatch(stream)

    def _answer_error(self, stream_id: int, status: int, detail: str) -> None:
        """A request refused before any app saw it: ``status`` on its stream only."""
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        ctx = self.ctx
        ctx.log_client_error(client, status, detail)
        proto = self.proto
        body = b"%d %s\n" % (status, detail.encode("ascii"))
        headers = [*_ERROR_HEADERS, (b"content-length", b"%d" % len(body))]
        proto.send_headers(stream_id, status, headers, False, ctx.date, ctx.server_name)
        proto.send_data(stream_id, body, True)  # a short body: the initial window holds it
        if not self.streams:
            self._idle_deadline = ctx.now + self.keepalive_timeout

    def _too_large(self, stream: H2Stream) -> None:
        """A body past ``max_body_size``: 413 if the response has not started, else a reset;
        the app sees the client gone either way."""
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        if stream.response_started():
            self.ctx.log_client_error(client, 413, "request body too large")
            stream.abort()
            return
        self.streams.pop(stream.stream_id, None)
        stream.lost()
        self._answer_error(stream.stream_id, 413, "request body too large")
        stream.status = 413
        if self.ctx.access.enabled:
            self.ctx.log_response(stream, 413)

    def _connection_error(self, event: CloseConnection) -> None:
        if event.error_code != NO_ERROR:
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
            self.ctx.log_client_error(client, 400, f"HTTP/2: {event.detail}")
        self._close()

    # --- what the streams ask (H2Owner) ---------------------------------------------

    def output(self, size: int = 0) -> None:
        """Frames were queued: written now when this is the turn's last answer (or a large
        one), else with everything else at the end of the turn (``Driver.write``'s rule)."""
        if self.closed:
            return
        ctx = self.ctx
        if ctx.in_flight <= 1 or size > DEFER_LIMIT:
            ctx.flush()
            self._write_out()
        elif not self._held:
            self._held = True
            ctx.flush_later(self)

    def flush(self) -> None:
        self._held = False
        self._write_out()

    def response_done(self, stream: H2Stream) -> None:
        ctx = self.ctx
        if stream.tunnel is None and stream.response_complete() and ctx.access.enabled:
            ctx.log_response(stream, stream.status)
        streams = self.streams
        streams.pop(stream.stream_id, None)
        if self.proto.finished:
            self._close()
        elif not streams:
            if self._eof:
                self._close()
            elif not self._drain_deadline:
                self._idle_deadline = ctx.now + self.keepalive_timeout
                self._due(self._idle_deadline)

    def stalled(self, stream: H2Stream) -> None:
        self._due(stream.stalled_since + self._write_timeout)

    def add_tunnel(self, tunnel: H2Tunnel) -> None:
        self.tunnels.add(tunnel)

    def remove_tunnel(self, tunnel: H2Tunnel) -> None:
        self.tunnels.discard(tunnel)

    # --- the context's view (Connection) --------------------------------------------

    def on_timeout(self) -> None:
        """Called by the context's ticker when ``deadline`` has passed (perhaps early: each
        deadline is checked again here, and the next one set)."""
        if self.closed:
            if self.lingering and self.transport is not None:
                self.transport.close()
            return
        now = self.ctx.now
        proto = self.proto
        settings_due = self._settings_deadline
        if settings_due and proto.settings_ack_pending and now >= settings_due:
            proto.close(SETTINGS_TIMEOUT, "SETTINGS not acknowledged in time")
            self._close()
            return
        drain_due = self._drain_deadline
        acknowledged = proto.drain_acknowledged or now >= self._drain_started + DRAIN_PING_WAIT
        if drain_due and now >= drain_due and acknowledged and not proto.finished:
            proto.final_goaway()
            self._write_out()
        if proto.finished and not self.streams:
            self._close()
            return
        if not self.streams and self._idle_deadline and now >= self._idle_deadline:
            proto.close(NO_ERROR)
            self._close()
            return
        timeout = self._write_timeout
        for stream in [s for s in self.streams.values() if s.stalled_since]:
            if now - stream.stalled_since >= timeout:
                stream.abort()  # RST_STREAM CANCEL: the client does not read this response
        if self.closed:
            return  # the last reset ended a drained connection (the linger set the deadline)
        deadline = 0.0
        for due in (
            self._settings_deadline if proto.settings_ack_pending else 0.0,
            self._idle_deadline,
            self._drain_deadline,
            *[s.stalled_since + timeout for s in self.streams.values() if s.stalled_since],
        ):
            if due and (not deadline or due < deadline):
                deadline = due
        if self._drain_deadline and deadline <= now:
            deadline = now + DRAIN_GRACE  # streams still run: look again
        self.deadline = deadline

    def shutdown(self) -> None:
        """Graceful drain: GOAWAY; requests already sent are still served, then the close."""
        if self.closed:
            return
        self.proto.start_graceful_close(wait_for_driver=True)
        self._idle_deadline = 0.0
        self._drain_started = self.ctx.now
        self._drain_deadline = self.ctx.now + DRAIN_GRACE
        self._due(self._drain_deadline)
        self._write_out()

    def abort(self) -> None:
        """Drop the connection at once; every stream's app hears the client is gone."""
        self.flush()
        self.closed = True
        self._lose_streams()
        if self.transport is not None:
            self.transport.abort()

    # --- internals ------------------------------------------------------------------

    def _due(self, when: float) -> None:
        if not self.deadline or when < self.deadline:
            self.deadline = when

    def _write_out(self) -> None:
        parts = self.proto.take_output()
        if not parts:
            return
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return
        size = sum(map(len, parts))
        self.ctx.bytes_out += size
        if len(parts) == 1:
            transport.write(parts[0])
        elif len(parts) > VECTOR_PARTS and size > VECTOR_BYTES:
            # a large body: one vectored write of its frames, not a join that copies it all
            transport.writelines(parts)
        else:
            transport.write(b"".join(parts))  # a few small frames: one join beats a writev

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        pause = self._write_paused
        if pause != self._read_paused:
            self._read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _lose_streams(self) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream.lost()

    def _close(self) -> None:
        """Send what is queued (the GOAWAY last), then half-close and drop input for a moment
        before closing: closing with unread input makes the kernel send RST, and a client still
        sending (an attacker, or a client racing our GOAWAY) would lose the GOAWAY that says
        why (nginx's lingering close)."""
        if self.closed:
            return
        self._write_out()
        self.closed = True
        self._lose_streams()
        transport = self.transport
        if transport is None:
            return
        if self._eof or not transport.can_write_eof():
            transport.close()  # flushes what was written first
            return
        self.lingering = True
        transport.write_eof()
        self.deadline = self.ctx.now + LINGER_SECONDS
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()


def _declared_length(request: Request) -> int:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # the core checked it is digits
    return -1
