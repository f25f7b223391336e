"""The WSGI thread's view of one request: the synchronous seam the WSGI bridge is written against.

Its own module so that the bridge (``wsgi``) and the environ (``wsgi_environ``) both depend on it
without depending on each other. The runtime implements it by handing each call to the event loop
and blocking the app's thread until the loop is done (see ``runtime.wsgi_pool``).
"""

from __future__ import annotations

from typing import IO, Any, Protocol

from portico.protocols.events import Headers, Request

__all__ = ["BlockingStream"]


class BlockingStream(Protocol):
    """One request as the runtime serves it to a blocking app (the WSGI thread's view).

    Every method may block the calling thread; none may be called from the event loop.
    """

    request: Request
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str
    #: the connection's TLS facts (the ASGI TLS extension's shape), ``None`` without TLS
    tls: dict[str, Any] | None

    @property
    def disconnected(self) -> bool: ...

    def read_body(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` (> 0) of the request body; ``b""`` once it has all been read.

        Blocks until some bytes are here. Raises ``ClientDisconnected`` if the client left before
        the body ended.
        """
        ...

    def start(
        self, status: int, headers: Headers, body: bytes, end: bool, reason: bytes = b""
    ) -> None:
        """Write the head and the first body piece; returns when the client may take more.

        ``reason``: the app's own reason phrase, when it is not the standard one.

        With ``end`` the response is complete and the runtime may send it after this returns.
        Raises ``AppError`` (bad response) or ``ClientDisconnected``.
        """
        ...

    def write(self, body: bytes, end: bool) -> None: ...

    def send_file(
        self,
        status: int,
        headers: Headers,
        file: IO[bytes],
        length: int | None,
        reason: bytes = b"",
    ) -> bool:
        """Write the head, then ``length`` bytes (``None``: the rest) of ``file`` from its current
        position as the whole body, the fast way (the runtime's ``Stream.send_file``); the
        response is complete when this returns ``True``. ``False``: not possible for this file
        (no descriptor, not a regular file), and nothing was written.
        """
        ...

    def abort(self) -> None:
        """The app failed after the response started: end the exchange abnormally."""
        ...
