"""The WebSocket engine: one open WebSocket's queues, keepalive, flow control and close.

It is carrier-neutral: a WebSocket starts as a request on some protocol's :class:`Stream` (an
HTTP/1.1 ``Upgrade``; an HTTP/2 extended CONNECT, RFC 8441, later). While the app decides, the
request stays there (a refusal or a denial is an ordinary HTTP response); when the app accepts,
the stream's ``accept_upgrade`` answers the handshake and hands back the :class:`Tunnel` its
bytes now flow through, with this engine as the tunnel's protocol, and the engine speaks
:class:`WSConnection` on it.

Bounds, so that a client cannot grow the worker's memory:
* incoming: at most ``ws_max_queue`` messages (each at most ``ws_max_message_size``) wait for the
  app; when the queue is full the tunnel is not read, and TCP pushes back on the client;
* outgoing: above ``ws_write_limit`` unsent bytes the app's ``send`` waits, and the tunnel is not
  read either (otherwise automatic pongs could pile up for a client that never reads).

Timers ride on the worker context's one-second ticker (``deadline`` / :meth:`on_timeout`), as
for HTTP: the keepalive ping, the wait for its pong, and the wait for the client to finish
closing.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Awaitable
from typing import Any, cast

from portico.gateways.asgi import ASGIApp
from portico.gateways.stream import ClientDisconnected, Stream, Tunnel
from portico.gateways.websocket import WebSocketChannel, WebSocketCycle, websocket_scope
from portico.protocols.events import Headers
from portico.protocols.websocket import (
    Handshake,
    HandshakeError,
    WSConnection,
    accept_headers,
    check_handshake,
)
from portico.runtime.context import WorkerContext

__all__ = ["WSEngine", "serve_websocket"]


# RFC 6455 §7.4.1
GOING_AWAY = 1001
INTERNAL_ERROR = 1011
ABNORMAL_CLOSURE = 1006


def serve_websocket(  # noqa: PLR0917 -- the mount's four facts, passed through
    ctx: WorkerContext,
    stream: Stream,
    app: ASGIApp,
    root_path: str,
    state: dict[str, Any],
    mount_path: str = "",
) -> None:
    """Run an ASGI app on a WebSocket handshake (still a request of ``stream``'s protocol)."""
    settings = ctx.limits.websocket
    try:
        handshake = check_handshake(stream.request, settings.protocol)
    except HandshakeError as exc:
        client = f"{stream.client[0]}:{stream.client[1]}" if stream.client else "-"
        ctx.log_client_error(client, exc.status, exc.detail)
        body = b"%d %s\n" % (exc.status, exc.detail.encode("ascii"))
        stream.refuse_upgrade()
        stream.start(
            exc.status,
            [*exc.headers, (b"content-type", b"text/plain; charset=utf-8")],
            body,
            True,
        )
        stream.app_finished()
        return
    engine = WSEngine(ctx, stream, handshake)
    scope = websocket_scope(engine, root_path, state, mount_path)
    ctx.spawn(WebSocketCycle(engine).run(app, scope), stream)


class WSEngine(WebSocketChannel, asyncio.Protocol):
    """One WebSocket: the ASGI gateway's channel, and (once accepted) its tunnel's protocol."""

    def __init__(self, ctx: WorkerContext, stream: Stream, handshake: Handshake) -> None:
        self._ctx = ctx
        self._settings = ctx.limits.websocket
        self._stream = stream
        self._handshake = handshake
        self.request = stream.request
        self.client = stream.client
        self.server = stream.server
        self.scheme = "wss" if stream.scheme == "https" else "ws"
        self.tls = stream.tls
        self.subprotocols = handshake.subprotocols
        self.transport: Tunnel | None = None
        self.ws: WSConnection | None = None
        self.deadline = 0.0
        self._queue: deque[str | bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._read_paused = True  # the carrier stopped reading at the handshake
        self._write_paused = False
        self._awaiting_pong = False
        self._eof_sent = False
        self._lost = False
        #: count the socket's bytes here (metrics): the engine owns the socket after an
        #: HTTP/1.1 upgrade; under HTTP/2 the connection's driver counts them
        self._counts_bytes = not stream.tunnel_counted
        self._failed: tuple[int, str] | None = None

    # --- the gateway's channel: before accepting, the handshake is still a request --------

    @property
    def disconnected(self) -> bool:
        if self.ws is None:
            return self._stream.disconnected
        return self._lost or self.ws.closed

    def respond(
        self, status: int, headers: Headers, body: bytes, end: bool
    ) -> asyncio.Future[None] | None:
        self._stream.refuse_upgrade()
        return cast("asyncio.Future[None] | None", self._stream.start(status, headers, body, end))

    def respond_body(self, body: bytes, end: bool) -> asyncio.Future[None] | None:
        return cast("asyncio.Future[None] | None", self._stream.write(body, end))

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        fields = accept_headers(self._handshake, subprotocol, headers)
        settings = self._settings
        # before the switch: bytes that came with the handshake are fed to it below
        self.ws = WSConnection(settings.protocol, self._handshake.extension)
        try:
            tunnel, tail = self._stream.accept_upgrade(fields, self)
        except ClientDisconnected:
            self.ws = None
            raise
        self.transport = tunnel
        tunnel.set_write_buffer_limits(high=settings.write_limit)
        ctx = self._ctx
        ctx.connections.add(self)
        ctx.websockets += 1
        if settings.ping_interval:
            self.deadline = ctx.now + settings.ping_interval
        if tail:
            self.data_received(tail)
        if ctx.closing:
            self.shutdown()
        self._update_reading()

    def receive(self) -> str | bytes | None:
        queue = self._queue
        if not queue:
            ws = self.ws
            if ws is not None and ws.held:
                # the app took every message that came before a frame that fails the
                # connection, and answered them: now the failure
                queue.extend(ws.release())
                self._flush()
                if not ws.open:
                    self._closing()
                self._update_reading()
            if not queue:
                return None
        data = queue.popleft()
        if self._read_paused and len(queue) < self._settings.max_queue:
            self._update_reading()
        return data

    def wait(self) -> Awaitable[None]:
        fut = self._ctx.loop.create_future()
        ws = self.ws
        if ws is None:
            return self._stream.wait_disconnect()
        if self._queue or self._lost or not ws.open:
            fut.set_result(None)
        else:
            self._waiter = fut
        return fut

    def close_info(self) -> tuple[int, str]:
        ws = self.ws
        if ws is not None:
            if ws.close_received is not None:
                return ws.close_received
            if self._failed is not None:
                return self._failed
            if ws.close_sent is not None:
                return ws.close_sent
        return ABNORMAL_CLOSURE, ""

    def send(self, data: str | bytes) -> asyncio.Future[None] | None:
        ws = self.ws
        if ws is None or self._lost or not ws.open:
            raise ClientDisconnected("client disconnected")
        if type(data) is str:
            ws.send_text(data)
        else:
            ws.send_bytes(cast(bytes, data))
        self._flush()
        if not self._write_paused:
            return None
        if self._drain is None:
            self._drain = self._ctx.loop.create_future()
        return self._drain

    def close(self, code: int, reason: str) -> None:
        ws = self.ws
        if ws is None or self._lost:
            return
        ws.send_close(code, reason)
        self._flush()
        self._closing()

    def abort(self) -> None:
        if self.transport is None:
            self._stream.abort()
            return
        self._lost = True
        self.transport.abort()

    def app_finished(self) -> None:
        self._stream.app_finished()

    # --- asyncio.Protocol, once accepted ---------------------------------------------------

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        assert ws is not None
        if self._counts_bytes:
            self._ctx.bytes_in += len(data)
        messages = ws.receive_data(data)
        self._flush()
        if messages:
            queue = self._queue
            queue.extend(messages)
            self._wake()
            if len(queue) >= self._settings.max_queue or ws.held:
                self._update_reading()
        if ws.pong_received:
            ws.pong_received = False
            if self._awaiting_pong:
                self._awaiting_pong = False
                self.deadline = self._ctx.now + self._settings.ping_interval
        if not ws.open:
            self._closing()

    def eof_received(self) -> bool:
        ws = self.ws
        assert ws is not None
        ws.receive_eof()
        self._flush()
        self._wake()
        return False  # the transport closes itself once what was written is sent

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._ctx.websockets -= 1
        self._ctx.connection_closed(self)
        self._wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)
        self._update_reading()

    # --- the context's view (Connection: ticker, shutdown) ---------------------------------

    def on_timeout(self) -> None:
        """Called by the context's ticker when ``deadline`` has passed."""
        ws = self.ws
        transport = self.transport
        if ws is None or transport is None or self._lost:
            return
        now = self._ctx.now
        settings = self._settings
        if not ws.open or self._eof_sent:
            # the client did not finish the closing handshake in time (RFC 6455 §7.1.1)
            self.deadline = 0.0
            transport.abort()
        elif self._read_paused:
            # a pong cannot be read while the app is behind on its messages or the client on
            # ours; that is not the client vanishing: look again later
            self._awaiting_pong = False
            self.deadline = now + settings.ping_interval
        elif self._awaiting_pong:
            self._failed = (INTERNAL_ERROR, "keepalive ping timeout")
            ws.fail(INTERNAL_ERROR, "keepalive ping timeout")
            self._flush()
            self._closing()
        else:
            ws.send_ping(os.urandom(4))
            self._flush()
            self._awaiting_pong = True
            self.deadline = now + settings.ping_timeout

    def shutdown(self) -> None:
        """Graceful shutdown: close with 1001 after the messages already written."""
        ws = self.ws
        if ws is not None and ws.open and not self._lost:
            ws.send_close(GOING_AWAY, "server shutting down")
            self._flush()
            self._closing()

    # --- internals ---------------------------------------------------------------------------

    def _flush(self) -> None:
        ws = self.ws
        assert ws is not None
        out = ws.data_to_send()
        if not out:
            return
        transport = self.transport
        if transport is None or self._lost:
            return
        for data in out:
            if data:
                transport.write(data)
                if self._counts_bytes:
                    self._ctx.bytes_out += len(data)
            elif not self._eof_sent:
                # The library's "half-close now": the server closes TCP first (RFC 6455 §7.1.1)
                # and then waits for the client's FIN; closing outright could reset unread input
                # and destroy the close frame.
                self._eof_sent = True
                self.deadline = self._ctx.now + self._settings.ping_timeout
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()

    def _closing(self) -> None:
        """No more messages either way: the app gets its disconnect once the queue is empty."""
        if not self._eof_sent:
            self.deadline = self._ctx.now + self._settings.ping_timeout
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self._lost:
            return
        ws = self.ws
        pause = (
            self._write_paused
            or len(self._queue) >= self._settings.max_queue
            or (ws is not None and ws.held)
        )
        if pause != self._read_paused:
            self._read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()
