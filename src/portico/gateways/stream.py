"""The seam between the gateways and the runtime: one request/response exchange.

The runtime implements :class:`Stream` once per HTTP version (it owns the socket, flow control and
the protocol object); the gateways (ASGI, WSGI) are written once against it. Methods that may have
to wait for the client return an awaitable only when they really must wait, and ``None`` otherwise,
so the common case (the socket buffer has room, the body is already here) costs no suspension.
"""

from __future__ import annotations

from collections.abc import Awaitable

from portico.errors import ClientDisconnected
from portico.protocols.events import Headers, Request

__all__ = ["ClientDisconnected", "Stream"]


class Stream:
    """One request as the runtime serves it; each HTTP version's driver subclasses it.

    A base class rather than a ``typing.Protocol`` on purpose: the ASGI bridge and the drivers
    are compiled by mypyc, which turns calls through a known class into direct native calls but
    calls through a Protocol into generic attribute lookups (measured: a large share of the
    per-request cost of the bridge).
    """

    request: Request
    #: ``(host, port)`` of the peer, or ``None`` (a Unix socket)
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str  # "http" or "https"
    disconnected: bool = False
    #: bytes of response body written so far (for the access log)
    sent_bytes: int = 0

    # request body ---------------------------------------------------------
    def read(self) -> tuple[bytes, bool] | None:
        """Body bytes already here and whether more follow; ``None`` when none are buffered yet."""
        raise NotImplementedError

    def wait_readable(self) -> Awaitable[None]:
        """Resolves when :meth:`read` has something, the body ended, or the client left."""
        raise NotImplementedError

    def trailers(self) -> Headers:
        """The trailer fields of a chunked request body (empty until the body ended)."""
        raise NotImplementedError

    def wait_disconnect(self) -> Awaitable[None]:
        """Resolves when the client is gone or the response is complete."""
        raise NotImplementedError

    # response -------------------------------------------------------------
    def start(
        self, status: int, headers: Headers, body: bytes, end: bool
    ) -> Awaitable[None] | None:
        """Write the head (and the first body piece). Raises ``AppError`` for a bad response."""
        raise NotImplementedError

    def write(self, body: bytes, end: bool) -> Awaitable[None] | None:
        """Write a piece of the body; ``end`` completes the response."""
        raise NotImplementedError

    def end_with_trailers(self, trailers: Headers) -> Awaitable[None] | None:
        """Complete the response with a trailer section."""
        raise NotImplementedError

    async def send_file(self, path: str) -> None:
        """Write a file as the (rest of the) body and end the response."""
        raise NotImplementedError

    def response_started(self) -> bool:
        raise NotImplementedError

    def response_complete(self) -> bool:
        raise NotImplementedError

    def abort(self) -> None:
        """The app failed after the response started: close the connection."""
        raise NotImplementedError

    def app_finished(self) -> None:
        """The app's callable returned or raised; the runtime may recycle the exchange."""
        raise NotImplementedError
