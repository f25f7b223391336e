"""The seam between the gateways and the runtime: one request/response exchange.

The runtime implements :class:`Stream` once per HTTP version (it owns the socket, flow control and
the protocol object); the gateways (ASGI, WSGI) are written once against it. Methods that may have
to wait for the client return an awaitable only when they really must wait, and ``None`` otherwise,
so the common case (the socket buffer has room, the body is already here) costs no suspension.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from portico.protocols.events import Headers, Request


class ClientDisconnected(OSError):
    """Raised by ``send`` when the client has gone (ASGI spec 2.4: an ``OSError`` subclass)."""


class Stream(Protocol):
    """One request as the runtime serves it."""

    request: Request
    #: ``(host, port)`` of the peer, or ``None`` (a Unix socket)
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str  # "http" or "https"
    disconnected: bool
    #: bytes of response body written so far (for the access log)
    sent_bytes: int

    # request body ---------------------------------------------------------
    def read(self) -> tuple[bytes, bool] | None:
        """Body bytes already here and whether more follow; ``None`` when none are buffered yet."""
        ...

    def wait_readable(self) -> Awaitable[None]:
        """Resolves when :meth:`read` has something, the body ended, or the client left."""
        ...

    @property
    def trailers(self) -> Headers: ...

    def wait_disconnect(self) -> Awaitable[None]:
        """Resolves when the client is gone or the response is complete."""
        ...

    # response -------------------------------------------------------------
    def start(
        self, status: int, headers: Headers, body: bytes, end: bool
    ) -> Awaitable[None] | None:
        """Write the head (and the first body piece). Raises ``AppError`` for a bad response."""
        ...

    def write(self, body: bytes, end: bool) -> Awaitable[None] | None: ...

    def end_with_trailers(self, trailers: Headers) -> Awaitable[None] | None: ...

    def send_file(self, path: str) -> Awaitable[None]:
        """Write a file as the (rest of the) body and end the response."""
        ...

    @property
    def response_started(self) -> bool: ...

    @property
    def response_complete(self) -> bool: ...

    def abort(self) -> None:
        """The app failed after the response started: close the connection."""
        ...

    def app_finished(self) -> None:
        """The app's callable returned or raised; the runtime may recycle the exchange."""
        ...


#: What every gateway may need from the server for its scopes.
class ServerContext(Protocol):
    root_path: str
    state: dict[str, Any]
