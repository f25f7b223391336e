"""The asyncio driver of one WebSocket: the handshake hand-over, flow control, keepalive, close.

A WebSocket starts as an HTTP/1.1 request on an :class:`H1Driver`. While the app decides, the
request stays there (a refusal or denial is an ordinary HTTP response); when the app accepts,
:class:`WSSession` writes the 101 response, takes the transport over with ``set_protocol``, and
speaks :class:`WSConnection` on it.

Bounds, so that a client cannot grow the worker's memory:
* incoming: at most ``ws_max_queue`` messages (each at most ``ws_max_message_size``) wait for the
  app; when the queue is full the socket is not read, and TCP pushes back on the client;
* outgoing: above ``ws_write_limit`` unsent bytes the app's ``send`` waits, and the socket is not
  read either (otherwise automatic pongs could pile up for a client that never reads).

Timers ride on the server's one-second ticker (``deadline`` / :meth:`on_timeout`), as for HTTP:
the keepalive ping, the wait for its pong, and the wait for the client to finish closing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from portico.config import Config
from portico.gateways.asgi import ASGIApp
from portico.gateways.stream import ClientDisconnected
from portico.gateways.websocket import WebSocketChannel, WebSocketCycle, websocket_scope
from portico.protocols.events import Headers
from portico.protocols.websocket import (
    Handshake,
    HandshakeError,
    WSConnection,
    WSOptions,
    accept_response,
    check_handshake,
)

if TYPE_CHECKING:
    from portico.runtime.http1 import H1Driver
    from portico.runtime.http1_stream import H1Stream
    from portico.runtime.server import Server

log = logging.getLogger("portico.error")

# RFC 6455 §7.4.1
GOING_AWAY = 1001
INTERNAL_ERROR = 1011
ABNORMAL_CLOSURE = 1006


@dataclass(frozen=True, slots=True)
class WSSettings:
    """The WebSocket settings of one server, read once from its ``Config``."""

    protocol: WSOptions
    max_queue: int
    ping_interval: float
    ping_timeout: float
    write_limit: int

    @classmethod
    def from_config(cls, config: Config) -> WSSettings:
        return cls(
            WSOptions(
                max_message_size=config.ws_max_message_size,
                per_message_deflate=config.ws_per_message_deflate,
                deflate_window_bits=config.ws_deflate_window_bits,
                deflate_memory_level=config.ws_deflate_memory_level,
            ),
            config.ws_max_queue,
            config.ws_ping_interval,
            config.ws_ping_timeout,
            config.ws_write_limit,
        )


def serve_websocket(
    server: Server, stream: H1Stream, app: ASGIApp, root_path: str, state: dict[str, Any]
) -> None:
    """Run an ASGI app on a WebSocket upgrade request (the handshake is still HTTP/1.1 here)."""
    settings = server.websocket
    try:
        handshake = check_handshake(stream.request, settings.protocol)
    except HandshakeError as exc:
        client = f"{stream.client[0]}:{stream.client[1]}" if stream.client else "-"
        log.info("%s: %d %s", client, exc.status, exc.detail)
        body = b"%d %s\n" % (exc.status, exc.detail.encode("ascii"))
        stream.conn.proto.close_after_response()  # what follows the head is not HTTP
        stream.start(
            exc.status,
            [*exc.headers, (b"content-type", b"text/plain; charset=utf-8")],
            body,
            True,
        )
        server.app_finished(stream)
        return
    session = WSSession(server, stream, handshake)
    scope = websocket_scope(session, root_path, state)
    task = server.loop.create_task(WebSocketCycle(session).run(app, scope))
    server.tasks.add(task)  # asyncio keeps only weak references to tasks
    stream.task = task


class WSSession(WebSocketChannel, asyncio.Protocol):
    """One WebSocket: the ASGI gateway's channel, and (once accepted) the transport's protocol."""

    def __init__(self, server: Server, stream: H1Stream, handshake: Handshake) -> None:
        self._server = server
        self._settings = server.websocket
        self._stream = stream
        self._h1: H1Driver = stream.conn
        self._handshake = handshake
        self.request = stream.request
        self.client = stream.client
        self.server = stream.server
        self.scheme = "wss" if stream.scheme == "https" else "ws"
        self.subprotocols = handshake.subprotocols
        self.transport: asyncio.Transport | None = None
        self.ws: WSConnection | None = None
        self.deadline = 0.0
        self._queue: deque[str | bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._read_paused = True  # the HTTP/1.1 driver stopped reading at the upgrade
        self._write_paused = False
        self._awaiting_pong = False
        self._eof_sent = False
        self._lost = False
        self._failed: tuple[int, str] | None = None

    # --- the gateway's channel: before accepting, the connection is still HTTP/1.1 --------

    @property
    def disconnected(self) -> bool:
        if self.ws is None:
            return self._stream.disconnected
        return self._lost or self.ws.closed

    def respond(
        self, status: int, headers: Headers, body: bytes, end: bool
    ) -> asyncio.Future[None] | None:
        self._h1.proto.close_after_response()  # bytes after the head were never HTTP
        return cast("asyncio.Future[None] | None", self._stream.start(status, headers, body, end))

    def respond_body(self, body: bytes, end: bool) -> asyncio.Future[None] | None:
        return cast("asyncio.Future[None] | None", self._stream.write(body, end))

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        server = self._server
        response = accept_response(
            self._handshake, subprotocol, headers, server.date_line + server.server_line
        )
        h1 = self._h1
        transport = h1.transport
        if transport is None or self._stream.disconnected or h1.closed:
            raise ClientDisconnected("client disconnected")
        tail = h1.detach()
        settings = self._settings
        self.ws = WSConnection(settings.protocol, self._handshake.extension)
        self.transport = transport
        transport.set_protocol(self)  # first: the new limits may pause or resume writing
        transport.set_write_buffer_limits(high=settings.write_limit)
        transport.write(response)
        server.connections.add(self)
        if server.access.enabled:
            request = self.request
            server.access.log(
                f"{self.client[0]}:{self.client[1]}" if self.client else "-",
                b"GET",
                request.raw_path + (b"?" + request.query_string if request.query_string else b""),
                request.http_version,
                101,
                0,
                server.now - self._stream.start_time,
            )
        if settings.ping_interval:
            self.deadline = server.now + settings.ping_interval
        if tail:
            self.data_received(tail)
        if server.closing:
            self.shutdown()
        self._update_reading()

    def receive(self) -> str | bytes | None:
        queue = self._queue
        if not queue:
            return None
        data = queue.popleft()
        if self._read_paused and len(queue) < self._settings.max_queue:
            self._update_reading()
        return data

    def wait(self) -> asyncio.Future[None]:
        fut = self._server.loop.create_future()
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
            self._drain = self._server.loop.create_future()
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
            self._h1.abort()
            return
        self._lost = True
        self.transport.abort()

    def app_finished(self) -> None:
        self._server.app_finished(self._stream)

    # --- asyncio.Protocol, once accepted ---------------------------------------------------

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        assert ws is not None
        messages = ws.receive_data(data)
        self._flush()
        if messages:
            queue = self._queue
            queue.extend(messages)
            self._wake()
            if len(queue) >= self._settings.max_queue:
                self._update_reading()
        if ws.pong_received:
            ws.pong_received = False
            if self._awaiting_pong:
                self._awaiting_pong = False
                self.deadline = self._server.now + self._settings.ping_interval
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
        self._server.connection_closed(self)
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

    # --- the server's connection interface (ticker, shutdown) ------------------------------

    def on_timeout(self) -> None:
        """Called by the server's ticker when ``deadline`` has passed."""
        ws = self.ws
        transport = self.transport
        if ws is None or transport is None or self._lost:
            return
        now = self._server.now
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
            elif not self._eof_sent:
                # The library's "half-close now": the server closes TCP first (RFC 6455 §7.1.1)
                # and then waits for the client's FIN; closing outright could reset unread input
                # and destroy the close frame.
                self._eof_sent = True
                self.deadline = self._server.now + self._settings.ping_timeout
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()

    def _closing(self) -> None:
        """No more messages either way: the app gets its disconnect once the queue is empty."""
        if not self._eof_sent:
            self.deadline = self._server.now + self._settings.ping_timeout
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
        pause = self._write_paused or len(self._queue) >= self._settings.max_queue
        if pause != self._read_paused:
            self._read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()
