"""The ASGI 3.0 WebSocket bridge over :class:`WebSocketChannel`.

Spec: https://asgi.readthedocs.io/en/latest/specs/www.html (WebSocket connection scope, spec 2.4),
with the ``websocket.http.response`` denial extension.

Rules kept here, not in the runtime:
* the first ``receive`` is ``websocket.connect``; the handshake is answered by the app's
  ``websocket.accept`` (101), ``websocket.close`` (403, RFC 6455 leaves the refusal to HTTP), or a
  ``websocket.http.response.start``/``body`` pair (the app's own HTTP response);
* an exception (or a return) before the handshake was answered is a 500; during a denial response
  the connection is dropped; after accepting, the WebSocket closes with 1011 for an exception
  and 1000 for a return (RFC 6455 §7.4.1);
* ``websocket.disconnect`` carries the peer's close code and reason, 1006 when the connection was
  lost without a close frame; it comes after every message that arrived before the close;
* a message out of order is an error, logged once, and raised to the app.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from portico.errors import AppError
from portico.gateways.asgi import ASGIApp, Message, Scope, scope_path
from portico.gateways.stream import ClientDisconnected
from portico.logs import error_log as log
from portico.protocols.events import Headers, Request
from portico.protocols.headers import check_status

__all__ = ["WebSocketChannel", "WebSocketCycle", "websocket_scope"]

_ASGI_VERSION: dict[str, str] = {"version": "3.0", "spec_version": "2.4"}
_EXTENSIONS: dict[str, dict[str, object]] = {"websocket.http.response": {}}
_ERROR_BODY = b"Internal Server Error\n"
_ERROR_HEADERS: Headers = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"%d" % len(_ERROR_BODY)),
]
_FORBIDDEN_BODY = b"Forbidden\n"
_FORBIDDEN_HEADERS: Headers = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"%d" % len(_FORBIDDEN_BODY)),
]
# RFC 6455 §7.4.1
NORMAL_CLOSURE = 1000
ABNORMAL_CLOSURE = 1006
INTERNAL_ERROR = 1011

# States of the handshake, then of the connection
_CONNECTING, _HANDSHAKE, _RESPONDING, _CONNECTED, _CLOSED = range(5)
_STATE_NAMES = (
    "before websocket.connect was received",
    "before the handshake was answered",
    "during the denial response",
    "while connected",
    "after the connection closed",
)


class WebSocketChannel:
    """One WebSocket handshake and connection as the runtime serves it (the gateway's seam).

    Before :meth:`accept` the handshake is still an HTTP request and :meth:`respond` writes an HTTP
    response instead. Methods that may have to wait return an awaitable only when they must.
    """

    request: Request
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str  # "ws" or "wss"
    #: the connection's TLS facts (the ASGI TLS extension), ``None`` without TLS
    tls: dict[str, Any] | None
    #: the subprotocols the client offered, in its order
    subprotocols: list[str]

    @property
    def disconnected(self) -> bool:
        """The client is gone, or the closing handshake is over."""
        raise NotImplementedError

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        """Accept the handshake (HTTP/1.1: 101). Raises ``AppError`` for a bad subprotocol or
        header."""
        raise NotImplementedError

    def respond(
        self, status: int, headers: Headers, body: bytes, end: bool
    ) -> Awaitable[None] | None:
        """Answer the handshake with an HTTP response instead; the connection closes after it.

        Raises ``AppError`` for an invalid response, before anything was written.
        """
        raise NotImplementedError

    def respond_body(self, body: bytes, end: bool) -> Awaitable[None] | None:
        """Go on with the body of the response started by :meth:`respond`."""
        raise NotImplementedError

    def receive(self) -> str | bytes | None:
        """The next message that arrived (``str`` or ``bytes``), or ``None``; see :meth:`wait`."""
        raise NotImplementedError

    def wait(self) -> Awaitable[None]:
        """Resolves when :meth:`receive` has a message or the connection is closing or gone."""
        raise NotImplementedError

    def close_info(self) -> tuple[int, str]:
        """The close code and reason for ``websocket.disconnect``."""
        raise NotImplementedError

    def send(self, data: str | bytes) -> Awaitable[None] | None:
        """Send a message; the awaitable waits while the client reads slowly."""
        raise NotImplementedError

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake. Raises ``AppError`` for a code apps may not send."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the connection at once."""
        raise NotImplementedError

    def app_finished(self) -> None:
        """The app's callable returned or raised."""
        raise NotImplementedError


def websocket_scope(
    channel: WebSocketChannel, root_path: str, state: dict[str, Any], mount_path: str = ""
) -> Scope:
    """Build the ``websocket`` scope of one handshake."""
    request = channel.request
    raw_path = request.raw_path
    path = scope_path(raw_path, root_path, mount_path)
    return {
        "type": "websocket",
        "asgi": _ASGI_VERSION,
        "http_version": request.http_version,
        "scheme": channel.scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": request.query_string,
        "root_path": root_path,
        "headers": request.headers,
        "client": channel.client,
        "server": channel.server,
        "subprotocols": channel.subprotocols,
        "state": state.copy() if state else {},
        "extensions": _EXTENSIONS if channel.tls is None else {**_EXTENSIONS, "tls": channel.tls},
    }


class WebSocketCycle:
    """One WebSocket served to an ASGI 3 app: its ``receive`` and ``send`` callables."""

    __slots__ = ("_error_reported", "_pending", "_state", "channel")

    def __init__(self, channel: WebSocketChannel) -> None:
        self.channel = channel
        self._state = _CONNECTING
        self._error_reported: BaseException | None = None
        #: a denial response's status and headers, held until its first body message
        self._pending: tuple[int, Headers] | None = None

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        channel = self.channel
        try:
            await app(scope, self.receive, self.send)
        except ClientDisconnected:
            pass  # the client left; nothing the app did wrong
        except Exception as exc:
            if exc is not self._error_reported:
                log.error("Exception in ASGI application", exc_info=exc)
            self._fail()
        else:
            state = self._state
            if state == _CONNECTED:
                channel.close(NORMAL_CLOSURE, "")
            elif state != _CLOSED and not channel.disconnected:
                log.error("ASGI callable returned without answering the WebSocket handshake")
                self._fail()
        finally:
            self._state = _CLOSED
            channel.app_finished()

    def _fail(self) -> None:
        channel = self.channel
        state = self._state
        if state == _CONNECTED:
            channel.close(INTERNAL_ERROR, "")
        elif state == _RESPONDING and self._pending is None:
            channel.abort()  # a truncated response must not look whole
        elif state != _CLOSED and not channel.disconnected:  # nothing written yet
            channel.respond(500, list(_ERROR_HEADERS), _ERROR_BODY, True)
        self._state = _CLOSED

    async def receive(self) -> Message:
        channel = self.channel
        if self._state == _CONNECTING:
            self._state = _HANDSHAKE
            return {"type": "websocket.connect"}
        data = channel.receive()
        if data is None and self._state == _CONNECTED:
            await channel.wait()
            data = channel.receive()
        elif data is None and not channel.disconnected and self._state != _CLOSED:
            await channel.wait()  # before the handshake is answered nothing arrives
        if type(data) is str:
            return {"type": "websocket.receive", "text": data}
        if data is not None:
            return {"type": "websocket.receive", "bytes": data}
        code, reason = channel.close_info()
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        state = self._state
        channel = self.channel
        if kind == "websocket.send" and state == _CONNECTED:
            text = message.get("text")
            data = message.get("bytes")
            payload: str | bytes
            if type(text) is str and data is None:
                payload = text
            elif text is None and isinstance(data, bytes | bytearray | memoryview):
                payload = bytes(data)  # no copy for bytes, the common case
            else:
                raise self._reported(
                    AppError("websocket.send needs exactly one of 'bytes' (bytes) and 'text' (str)")
                )
            if channel.disconnected:
                raise ClientDisconnected("client disconnected")
            waiter = channel.send(payload)
            if waiter is not None:
                await waiter
        elif kind == "websocket.accept" and state == _HANDSHAKE:
            headers = message.get("headers") or []
            try:
                channel.accept(message.get("subprotocol"), [(n, v) for n, v in headers])
            except AppError as exc:
                raise self._reported(exc) from None
            self._state = _CONNECTED
        elif kind == "websocket.close" and state in (_HANDSHAKE, _CONNECTED):
            if state == _HANDSHAKE:
                # ASGI: closing before accepting refuses the handshake with 403
                self._state = _CLOSED
                waiter = channel.respond(403, list(_FORBIDDEN_HEADERS), _FORBIDDEN_BODY, True)
                if waiter is not None:
                    await waiter
                return
            code = message.get("code")
            reason = message.get("reason")
            try:
                channel.close(NORMAL_CLOSURE if code is None else code, reason or "")
            except AppError as exc:
                raise self._reported(exc) from None
            self._state = _CLOSED
        elif kind == "websocket.http.response.start" and state == _HANDSHAKE:
            status = check_status(message["status"])
            headers = message.get("headers") or []
            self._state = _RESPONDING
            self._pending = (status, [(n, v) for n, v in headers])
        elif kind == "websocket.http.response.body" and state == _RESPONDING:
            await self._respond_body(message)
        else:
            raise self._reported(
                AppError(f"unexpected ASGI message {kind!r} {_STATE_NAMES[state]}")
            )

    async def _respond_body(self, message: Message) -> None:
        body = message.get("body", b"")
        more = bool(message.get("more_body", False))
        pending = self._pending
        if pending is not None:
            self._pending = None
            status, headers = pending
            try:
                waiter = self.channel.respond(status, headers, body, not more)
            except AppError as exc:
                self._state = _HANDSHAKE  # nothing was written: a 500 can still be sent
                raise self._reported(exc) from None
        else:
            waiter = self.channel.respond_body(body, not more)
        if not more:
            self._state = _CLOSED
        if waiter is not None:
            await waiter

    def _reported(self, exc: AppError) -> AppError:
        """Log an app error once, here, where it is found; ``run`` will not log it again."""
        log.error("%s", exc)
        self._error_reported = exc
        return exc
