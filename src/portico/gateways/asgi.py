"""The ASGI 3.0 HTTP bridge, written once for every HTTP version over :class:`Stream`.

Spec: https://asgi.readthedocs.io/en/latest/specs/www.html (HTTP connection scope, spec 2.4),
with the ``http.response.trailers``, ``http.response.pathsend`` and (under TLS) ``tls``
extensions.

Rules kept here, not in the protocols:
* ``http.response.start`` is held until the first body message, so a small response is written
  with one system call;
* an exception before the response started becomes a 500 and a logged traceback; after it started,
  the connection is closed (the client must not take a truncated body for a whole one);
* an app that returns without responding gets a 500;
* a message out of order is an error, logged once, and raised to the app.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from portico.errors import AppError
from portico.gateways.stream import ClientDisconnected, Stream
from portico.logs import error_log as log
from portico.protocols.events import Headers
from portico.protocols.headers import check_status

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ERROR_BODY = b"Internal Server Error\n"
_ERROR_HEADERS: Headers = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"%d" % len(_ERROR_BODY)),
]
_DISCONNECT: Final[dict[str, str]] = {"type": "http.disconnect"}

# Response states
_WAITING: Final = 0
_STARTED: Final = 1
_STREAMING: Final = 2
_TRAILERS: Final = 3
_DONE: Final = 4


# Server-provided, read-only descriptions: shared by every scope instead of three new dicts per
# request. (``state`` is not shared: frameworks write request state into it.)
_ASGI_VERSION: Final[dict[str, str]] = {"version": "3.0", "spec_version": "2.4"}
_EXTENSIONS: Final[dict[str, dict[str, object]]] = {
    "http.response.trailers": {},
    "http.response.pathsend": {},
}

_OPEN_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC

_decoded_paths: Final[dict[bytes, str]] = {}
#: Client-chosen keys longer than this are not remembered (a path of 8 KiB each time is rare)
_CACHED_KEY_LIMIT: Final = 256


def extensions(tls: dict[str, Any] | None) -> dict[str, dict[str, object]]:
    """The scope's ``extensions``: shared by every plain request, and with the connection's
    TLS facts (the ASGI TLS extension) under TLS."""
    if tls is None:
        return _EXTENSIONS
    return {**_EXTENSIONS, "tls": tls}


def decode_path(raw_path: bytes) -> str:
    """ASGI ``path``: percent-decoding and UTF-8 decoding applied (invalid UTF-8 replaced).

    Clients ask for the same few paths over and over, so decoded paths are remembered (bounded).
    """
    path = _decoded_paths.get(raw_path)
    if path is None:
        path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        if len(raw_path) <= _CACHED_KEY_LIMIT:  # a client must not fill the cache with 8 KiB keys
            if len(_decoded_paths) >= 2048:
                _decoded_paths.clear()
            _decoded_paths[raw_path] = path
    return path


def scope_path(raw_path: bytes, root_path: str, mount_path: str = "") -> str:
    """ASGI ``path`` of a request: decoded, and including ``root_path``.

    ``root_path`` is the proxy's prefix (``--root-path`` or a trusted ``X-Forwarded-Prefix``)
    followed by ``mount_path`` (``--mount``'s, which the request's path still holds).
    """
    path = decode_path(raw_path)
    if root_path and not path.startswith(root_path):
        # ASGI: path includes root_path; a proxy that strips its prefix leaves it to us to add
        # it back (the mount's part is in the path already)
        path = root_path[: len(root_path) - len(mount_path)] + path
    return path


def http_scope(
    stream: Stream, root_path: str, state: dict[str, Any], mount_path: str = ""
) -> Scope:
    """Build the ``http`` scope of one request."""
    request = stream.request
    raw_path = request.raw_path
    path = scope_path(raw_path, root_path, mount_path)
    return {
        "type": "http",
        "asgi": _ASGI_VERSION,
        "http_version": request.http_version,
        "method": request.method,
        "scheme": request.scheme or stream.scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": request.query_string,
        "root_path": root_path,
        "headers": request.headers,
        "client": stream.client,
        "server": stream.server,
        "state": state.copy() if state else {},
        "extensions": _EXTENSIONS if stream.tls is None else extensions(stream.tls),
    }


class HTTPCycle:
    """One request served to an ASGI 3 app: its ``receive`` and ``send`` callables."""

    __slots__ = (
        "_body_done",
        "_error_reported",
        "_headers",
        "_state",
        "_status",
        "_trailers",
        "stream",
    )

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._state = _WAITING
        self._status = 200
        self._headers: Headers = []
        self._trailers = False
        self._body_done = False  # becomes True once the last http.request was delivered
        self._error_reported: BaseException | None = None

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        stream = self.stream
        try:
            await app(scope, self.receive, self.send)
        except ClientDisconnected:
            pass  # the client left; nothing to answer and nothing the app did wrong
        except Exception as exc:
            if exc is not self._error_reported:
                log.error("Exception in ASGI application", exc_info=exc)
            self._fail()
        else:
            if self._state != _DONE and not stream.disconnected:
                if self._state == _WAITING:
                    log.error("ASGI callable returned without starting a response")
                else:
                    log.error("ASGI callable returned without completing the response")
                self._fail()
        finally:
            stream.app_finished()

    def _fail(self) -> None:
        stream = self.stream
        if stream.disconnected or stream.response_complete():
            return
        if stream.response_started():
            stream.abort()
        else:
            self._state = _DONE
            stream.start(500, list(_ERROR_HEADERS), _ERROR_BODY, True)

    async def receive(self) -> Message:
        stream = self.stream
        if not self._body_done:
            chunk = stream.read()
            if chunk is None:
                await stream.wait_readable()
                chunk = stream.read()
            if chunk is not None:
                body, more = chunk
                if not more:
                    self._body_done = True
                return {"type": "http.request", "body": body, "more_body": more}
            # no body and none coming: the client left
            return _DISCONNECT.copy()
        if self._state != _DONE and not stream.disconnected:
            await stream.wait_disconnect()
        return _DISCONNECT.copy()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        state = self._state
        stream = self.stream
        if stream.disconnected:
            raise ClientDisconnected("client disconnected")
        if kind == "http.response.body" and state == _STARTED:
            body = message.get("body", b"")
            more = message.get("more_body", False)
            end = not (more or self._trailers)
            waiter = stream.start(self._status, self._headers, body, end)
            self._state = _DONE if end else _STREAMING
        elif kind == "http.response.body" and state == _STREAMING:
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if not more and not self._trailers:
                self._state = _DONE
                waiter = stream.write(body, True)
            else:
                if not more:
                    self._state = _TRAILERS
                waiter = stream.write(body, False) if body else None
        elif kind == "http.response.start" and state == _WAITING:
            self._status = check_status(message["status"])
            headers = message.get("headers", ())
            self._headers = headers if type(headers) is list else list(headers)
            self._trailers = bool(message.get("trailers", False))
            self._state = _STARTED
            return
        elif kind == "http.response.trailers" and state in (_TRAILERS, _STREAMING, _STARTED):
            if not self._trailers:
                raise self._reported(AppError("http.response.trailers without trailers=True"))
            if message.get("more_trailers", False):
                raise self._reported(AppError("more_trailers is not supported; send them at once"))
            if state == _STARTED:
                stream.start(self._status, self._headers, b"", False)
            trailers = message.get("headers", ())
            waiter = stream.end_with_trailers(list(trailers))
            self._state = _DONE
        elif kind == "http.response.pathsend" and state == _STARTED:
            # opened before the head goes out, so that a missing file is still a clean 500
            fd = os.open(message["path"], _OPEN_FLAGS)
            try:
                size = os.fstat(fd).st_size
                stream.start(self._status, self._headers, b"", False)
                self._state = _DONE
                await stream.send_file(fd, 0, size)
            finally:
                os.close(fd)
            return
        else:
            raise self._reported(
                AppError(f"unexpected ASGI message {kind!r} in state {_STATE_NAMES[state]}")
            )
        if waiter is not None:
            await waiter

    def _reported(self, exc: AppError) -> AppError:
        """Log an app error once, here, where it is found; ``run`` will not log it again."""
        log.error("%s", exc)
        self._error_reported = exc
        return exc


_STATE_NAMES = (
    "before http.response.start",
    "after http.response.start",
    "while streaming",
    "while waiting for trailers",
    "after the response completed",
)
