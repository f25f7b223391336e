"""One exchange on an HTTP/2 connection: the gateways' :class:`Stream`, and an RFC 8441 tunnel.

The driver (``http2``) creates an :class:`H2Stream` per request and feeds it; what the stream
asks of its driver is :class:`H2Owner`, declared here so that this module does not depend on the
driver's (the driver subclasses it). Both are compiled together.

Flow control, both ways, per stream:

* request body: the bytes the app has not read are acknowledged to the core only when the app
  reads them (:meth:`H2Stream.read`), so the client's window closes while the app is slow and an
  upload costs at most the window of buffering;
* response body: what the client's windows do not take waits in the stream's backlog, and
  :meth:`H2Stream.write` returns a waiter that resolves when the backlog has gone out (a
  ``WindowOpen`` event) — a slow reader stalls its own stream only. A backlog that does not move
  for ``h2_write_timeout`` seconds gets its stream reset (the driver's ticker).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from portico.errors import AppError
from portico.gateways.stream import ClientDisconnected, Stream, Tunnel, TunnelOwner
from portico.protocols.events import Headers, Request
from portico.protocols.h2_errors import CANCEL
from portico.protocols.http2 import H2Connection
from portico.runtime.context import Driver
from portico.runtime.file_reads import send_file_by_reads

__all__ = ["H2Owner", "H2Stream", "H2Tunnel"]

#: A window that opens by less than this, without draining the backlog, is no progress: a client
#: that opens its window a byte at a time (CVE-2019-9517) does not hold off the write timeout.
PROGRESS_BYTES: Final = 1024
_NO_CONTENT: Final = frozenset({204, 304})


class H2Owner(Driver):
    """What an :class:`H2Stream` asks of its connection (``http2.H2Driver`` implements it)."""

    proto: H2Connection

    @property
    def write_paused(self) -> bool:
        """The transport asked us to stop writing (the client reads slowly)."""
        return self._write_paused

    def output(self, size: int = 0) -> None:
        """Frames were queued on ``proto``: write them (at the end of the loop turn)."""
        raise NotImplementedError

    def response_done(self, stream: H2Stream) -> None:
        """The stream is over on our side: complete, or reset."""
        raise NotImplementedError

    def stalled(self, stream: H2Stream) -> None:
        """A response waits for the client's window: the write timeout runs from now."""
        raise NotImplementedError

    def add_tunnel(self, tunnel: H2Tunnel) -> None:
        raise NotImplementedError

    def remove_tunnel(self, tunnel: H2Tunnel) -> None:
        raise NotImplementedError


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class H2Stream(Stream):
    """One request/response exchange on an HTTP/2 connection (implements ``gateways.Stream``)."""

    tunnel_counted = True  # a WebSocket's frames are this connection's DATA: counted there

    # Defaults live on the class: creating a stream (once per request) sets only what differs.
    status = 0
    received = 0
    #: when the response started waiting for the client's window (0: it is not waiting)
    stalled_since = 0.0
    tunnel: H2Tunnel | None = None
    _reader: asyncio.Future[None] | None = None
    _disconnect_waiter: asyncio.Future[None] | None = None
    _send_waiter: asyncio.Future[None] | None = None
    _headers: Headers | None = None
    _started = False
    _complete = False
    _over = False  # the driver is done with the stream (complete, reset, or lost)
    _backlog: list[bytes] | None = None
    _offset = 0  # bytes of _backlog[0] already sent
    _end_pending = False
    _trailers_pending: Headers | None = None

    def __init__(self, conn: H2Owner, request: Request) -> None:
        self.conn = conn
        self.request = request
        self.stream_id = request.stream_id
        self.client = conn.client
        self.server = conn.sockname
        self.scheme = conn.scheme
        self.tls = conn.tls
        if conn.proxied:
            self.proxied = True  # its forwarded headers may say who the client is
        self._chunks: list[bytes] = []
        self.body_done = not request.has_body

    # --- fed by the driver -----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.feed(data)
            return
        self.received += len(data)
        self._chunks.append(data)
        self.buffered += len(data)
        _wake(self._reader)

    def feed_end(self) -> None:
        self.body_done = True
        tunnel = self.tunnel
        if tunnel is None:
            _wake(self._reader)
        elif self._complete:
            self._finish()  # both sides have ended the tunnel
        else:
            tunnel.feed_eof()

    def lost(self) -> None:
        """The stream was reset or the connection is gone: wake everything that waits on it."""
        self.disconnected = True
        self._over = True
        self._backlog = None
        self.stalled_since = 0.0
        _wake(self._reader)
        _wake(self._disconnect_waiter)
        _wake(self._send_waiter)
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.lost()

    def window_open(self) -> None:
        """The client's windows have room again: send what waits."""
        backlog = self._backlog
        if backlog is None:
            return
        conn = self.conn
        proto = conn.proto
        stream_id = self.stream_id
        sent = 0
        while backlog:
            room = proto.send_window(stream_id)
            if room <= 0:
                break
            data = backlog[0]
            offset = self._offset
            rest = len(data) - offset
            last = rest <= room and len(backlog) == 1
            # a byte more than the window takes: the core then marks the stream blocked and
            # says when the window opens again, and only what can go is copied
            piece = data if not offset and rest <= room else data[offset : offset + room + 1]
            taken = proto.send_data(stream_id, piece, last and self._end_pending)
            sent += taken
            if taken < len(piece):
                self._offset = offset + taken
                break
            backlog.pop(0)
            self._offset = 0
        if backlog:
            if sent >= PROGRESS_BYTES:
                self.stalled_since = conn.ctx.now
        else:
            self._backlog = None
            self.stalled_since = 0.0
            trailers = self._trailers_pending
            if trailers is not None:
                self._trailers_pending = None
                proto.send_trailers(stream_id, trailers)
            waiter = self._send_waiter
            self._send_waiter = None
            _wake(waiter)
            if self._end_pending:
                self._finish()
        conn.output(sent)
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.check_writing()

    @property
    def backlog_size(self) -> int:
        backlog = self._backlog
        if backlog is None:
            return 0
        return sum(map(len, backlog)) - self._offset

    # --- the Stream seam -------------------------------------------------------------

    def read(self) -> tuple[bytes, bool] | None:
        chunks = self._chunks
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            size = self.buffered
            self.buffered = 0
            if not self._over:
                conn = self.conn
                conn.proto.acknowledge_received_data(self.stream_id, size)
                conn.output()
            return data, not self.body_done
        if self.body_done:
            return b"", False
        return None  # the client left, or the response ended the exchange before the body

    def wait_readable(self) -> asyncio.Future[None]:
        fut = self.conn.loop.create_future()
        if self._chunks or self.body_done or self._over:
            fut.set_result(None)
        else:
            self._reader = fut
        return fut

    def wait_disconnect(self) -> asyncio.Future[None]:
        fut = self.conn.loop.create_future()
        if self.disconnected or self._complete:
            fut.set_result(None)
        else:
            self._disconnect_waiter = fut
        return fut

    def start(
        self, status: int, headers: Headers, body: bytes, end: bool, reason: bytes = b""
    ) -> Any:
        # ``reason``: HTTP/2 has no reason phrase (RFC 9113 §8.3.2), so an app's own is dropped
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        ctx = conn.ctx
        if ctx.extra_headers or self.request_id:  # --header, --request-id
            headers = ctx.response_fields(self, headers)
        self.response_headers = headers
        conn.proto.send_headers(
            self.stream_id,
            status,
            headers,
            end and not body,
            ctx.date,
            ctx.server_name,
            len(body) if end and body else -1,
        )
        self._started = True
        self.status = status
        self._headers = headers
        if body:
            self._send(body, end)
        elif end:
            conn.output()
            self._finish()
            return conn.drain_waiter()
        else:
            conn.output()
        return self._waiter()

    def write(self, body: bytes, end: bool) -> Any:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        if body or end:
            self._send(body, end)
        return self._waiter()

    def end_with_trailers(self, trailers: Headers) -> Any:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        if self._backlog is not None:
            self._trailers_pending = trailers
            self._end_pending = True
            return self._waiter()
        try:
            self.conn.proto.send_trailers(self.stream_id, trailers)
        except AppError:
            self.abort()  # the head is out
            raise
        self.conn.output()
        self._finish()
        return self.conn.drain_waiter()

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        declared = _content_length(self._headers)
        if declared >= 0 and declared != count:
            self.abort()  # the head is out: a body of another length must not look whole
            raise AppError(f"file of {count} bytes for a content-length of {declared}")
        if self.request.method == "HEAD" or self.status in _NO_CONTENT or not count:
            waiter = self.write(b"", True)
            if waiter is not None:
                await waiter
            return
        await send_file_by_reads(self, self.conn, fd, offset, count)

    def response_started(self) -> bool:
        return self._started

    def response_complete(self) -> bool:
        return self._complete

    def abort(self) -> None:
        """RST_STREAM for this exchange only; the connection and its other streams go on."""
        if self._over:
            return
        conn = self.conn
        conn.proto.reset_stream(self.stream_id, CANCEL)
        conn.output()
        self.lost()
        conn.response_done(self)

    def app_finished(self) -> None:
        self.conn.ctx.request_done(self)

    def upgrade_requested(self) -> bool:
        return self.request.upgrade is not None and not self._started

    def accept_upgrade(self, headers: Headers, owner: TunnelOwner) -> tuple[Tunnel, bytes]:
        """RFC 8441 §5: a 200 with ``headers``; the stream's DATA frames are the tunnel."""
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        ctx = conn.ctx
        proto = conn.proto
        if self.request_id:
            headers = ctx.response_fields(self, headers, defaults=False)
        self.response_headers = headers
        proto.send_headers(self.stream_id, 200, headers, False, ctx.date, ctx.server_name)
        proto.open_tunnel(self.stream_id)
        self._started = True
        self.status = 200
        chunks = self._chunks
        tail = b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if tail:
            proto.acknowledge_received_data(self.stream_id, len(tail))
        conn.output()
        self.tunnel = tunnel = H2Tunnel(self, owner)
        conn.add_tunnel(tunnel)
        if ctx.access.enabled:
            ctx.log_response(self, 200)
        if self.body_done:  # the client ended its side with the handshake
            conn.loop.call_soon(tunnel.feed_eof)
        return tunnel, tail

    # --- internals -------------------------------------------------------------------

    def _send(self, data: bytes, end: bool) -> None:
        """Queue body bytes; what the windows do not take waits in the backlog, in order."""
        conn = self.conn
        self.sent_bytes += len(data)
        backlog = self._backlog
        if backlog is not None:
            backlog.append(data)
            if end:
                self._end_pending = True
            return
        try:
            taken = conn.proto.send_data(self.stream_id, data, end)
        except AppError:
            self.abort()  # the head may be out: a body of the wrong length must not look whole
            raise
        if taken < len(data):
            self._backlog = [data]
            self._offset = taken
            self._end_pending = end
            self.stalled_since = conn.ctx.now
            conn.stalled(self)
        conn.output(taken)
        if end and taken == len(data):
            self._finish()

    def _waiter(self) -> Any:
        if self._backlog is not None:
            waiter = self._send_waiter
            if waiter is None:
                self._send_waiter = waiter = self.conn.loop.create_future()
            return waiter
        return self.conn.drain_waiter()

    def _finish(self) -> None:
        self._complete = True
        tunnel = self.tunnel
        if tunnel is not None and not self.body_done:
            return  # a tunnel half-closed by us: the client's bytes still come (RFC 8441 §4)
        self._over = True
        _wake(self._disconnect_waiter)
        _wake(self._reader)  # a body the response cut short will not come
        self.conn.response_done(self)
        if tunnel is not None:
            tunnel.lost()


def _content_length(headers: Headers | None) -> int:
    for name, value in headers or ():
        if name.lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return -1


class H2Tunnel:
    """The byte pipe of an accepted extended CONNECT (RFC 8441): the stream's DATA frames.

    It is the :class:`Tunnel` a WebSocket engine writes to, and it calls the engine (an
    ``asyncio.Protocol``) as a transport calls its protocol: ``data_received`` with the client's
    DATA (acknowledged to the client's window as delivered, so a paused reader closes the
    window), ``eof_received`` on the client's END_STREAM, ``pause_writing``/``resume_writing``
    from the stream's backlog and the connection's transport, ``connection_lost`` once the
    stream is over both ways, reset, or the connection is gone.
    """

    def __init__(self, stream: H2Stream, owner: TunnelOwner) -> None:
        self._stream = stream
        self._owner = owner
        self._high = 64 * 1024
        self._low = 16 * 1024
        self._owner_paused = False
        self._reading = True
        self._held: list[bytes] = []
        self._eof_held = False
        self._eof_sent = False
        self._lost = False

    # --- from the stream ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._lost:
            return
        if not self._reading:
            self._held.append(data)
            return
        self._deliver(data)

    def feed_eof(self) -> None:
        if self._lost:
            return
        if not self._reading or self._held:
            self._eof_held = True
            return
        if not self._owner.eof_received():
            self.close()

    def lost(self) -> None:
        if self._lost:
            return
        self._lost = True
        stream = self._stream
        stream.conn.remove_tunnel(self)
        self._owner.connection_lost(None)

    def check_writing(self) -> None:
        """Tell the owner to pause or resume writing, by the backlog and the connection."""
        if self._lost:
            return
        stream = self._stream
        busy = stream.backlog_size > (self._low if self._owner_paused else self._high)
        blocked = busy or stream.conn.write_paused
        if blocked != self._owner_paused:
            self._owner_paused = blocked
            if blocked:
                self._owner.pause_writing()
            else:
                self._owner.resume_writing()

    def _deliver(self, data: bytes) -> None:
        stream = self._stream
        conn = stream.conn
        conn.proto.acknowledge_received_data(stream.stream_id, len(data))
        conn.output()
        self._owner.data_received(data)

    # --- the Tunnel (asyncio.Transport subset) -----------------------------------------

    def write(self, data: bytes) -> None:
        if self._lost or self._eof_sent or not data:
            return
        self._stream._send(data, False)
        self.check_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._lost or self._eof_sent:
            return
        self._eof_sent = True
        self._stream._send(b"", True)

    def close(self) -> None:
        self.write_eof()

    def abort(self) -> None:
        if not self._lost:
            self._stream.abort()

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading:
            return
        self._reading = True
        held = self._held
        while held and self._reading and not self._lost:
            self._deliver(held.pop(0))
        if self._eof_held and not held and self._reading:
            self._eof_held = False
            self.feed_eof()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is not None:
            self._high = high
            self._low = low if low is not None else high // 4
        self.check_writing()

    def is_closing(self) -> bool:
        return self._lost or self._eof_sent

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self._stream.conn.transport
        return transport.get_extra_info(name, default) if transport is not None else default
