"""The seam between the gateways and the runtime: one request/response exchange.

The runtime implements :class:`Stream` once per protocol (HTTP/1.1 now; HTTP/2, uwsgi and FastCGI
plug in the same way): it owns the connection, flow control and the protocol object. The gateways
(ASGI, WSGI, the WebSocket engine, static files) are written once against it, so nothing here
names a protocol version:

* response headers are ``(name, value)`` pairs, never wire lines; ``Date`` and ``Server`` are
  added by the protocol when the app did not set them, ``X-Request-ID`` by the driver;
* a file is sent with :meth:`Stream.send_file` from a descriptor (``sendfile`` where the
  connection allows it, reads off the event loop where it cannot, as under TLS);
* :meth:`Stream.abort` ends this exchange abnormally (HTTP/1.1 must close the connection for
  that; HTTP/2 resets one stream);
* an upgrade (a WebSocket handshake) is accepted with :meth:`Stream.accept_upgrade`, which hands
  back a :class:`Tunnel`: the bytes of the switched protocol, whatever carries them.

Methods that may have to wait for the client return an awaitable only when they really must wait,
and ``None`` otherwise, so the common case (the socket buffer has room, the body is already here)
costs no suspension.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Final, Protocol

from portico.errors import ClientDisconnected
from portico.protocols.events import Headers, Request

__all__ = [
    "IO_UNIT",
    "ClientDisconnected",
    "Stream",
    "Tunnel",
    "TunnelOwner",
    "Waiter",
    "with_defaults",
]

#: The one unit of buffering between an app and its connection, in both directions: request body
#: waiting for the app before the socket stops being read, response bytes waiting in the transport
#: before the app is paused, and a file's bytes read per hand-off when it cannot be ``sendfile``d.
#: Large enough that a fast client costs few pauses and hand-offs (asyncio's own default high-water
#: mark of 64 KiB pauses a 1 MiB response 16 times), small enough that 10,000 slow clients hold
#: bounded memory.
IO_UNIT: Final = 256 * 1024


def with_defaults(headers: Headers, defaults: Headers) -> Headers:
    """``headers`` and those of ``defaults`` (``--header``, lower-case names) whose name the
    response lacks: a response's own field wins."""
    names = {name.lower() for name, _ in headers}
    return [*headers, *(field for field in defaults if field[0] not in names)]


class Waiter(Protocol):
    """What the stream's waits return: the runtime's ``asyncio.Future``, seen through the few
    things a gateway does with it (await it, or be called back when it is done)."""

    def done(self) -> bool: ...

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...

    def __await__(self) -> Generator[Any, None, Any]: ...


class TunnelOwner(Protocol):
    """Who receives a switched protocol's bytes: the ``asyncio.Protocol`` methods the streams
    call on it."""

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> bool | None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


class Tunnel(Protocol):
    """The byte pipe of a switched protocol, as the upgrade's new owner sees it.

    It is the subset of ``asyncio.Transport`` a WebSocket needs, so that over HTTP/1.1 it is the
    connection's transport itself (no copy, no extra call per read) and over HTTP/2 (RFC 8441) a
    stream's DATA frames. The owner is an ``asyncio.Protocol``: it receives ``data_received``,
    ``eof_received``, ``connection_lost``, ``pause_writing`` and ``resume_writing``.
    """

    def write(self, data: bytes) -> None: ...

    def can_write_eof(self) -> bool: ...

    def write_eof(self) -> None:
        """Half-close: no more bytes from us (TCP FIN, TLS close_notify, HTTP/2 END_STREAM)."""
        ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...

    def is_closing(self) -> bool: ...


class Stream:
    """One request as the runtime serves it; each protocol's driver subclasses it.

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
    #: the connection's TLS facts, shaped as the ASGI TLS extension (``None``: not TLS)
    tls: dict[str, Any] | None = None
    disconnected: bool = False
    #: bytes of request body received and not read by the app yet
    buffered: int = 0
    #: bytes of response body written so far (for the access log)
    sent_bytes: int = 0
    #: ``time.perf_counter_ns()`` when the request was admitted (set only when the access log or
    #: the metrics are on: they measure the request time from it, in integer nanoseconds, so
    #: that a 40 µs response is not rounded to the worker's one-second clock)
    start_ns: int = 0
    #: the ``X-Request-ID`` the worker context gave the request (``--request-id``; empty: none);
    #: the driver adds it to the response head it builds (``runtime.request_id``)
    request_id: bytes = b""
    #: the response's header pairs as the driver wrote them (for the access log)
    response_headers: Headers | None = None
    #: an upgrade's tunnel is carried inside a connection whose driver counts the bytes
    #: (HTTP/2's DATA frames), so the tunnel's owner must not count them again (metrics)
    tunnel_counted = False
    #: the peer is a trusted proxy: its headers may say who the client is (``runtime.origin``)
    proxied: bool = False
    #: the path prefix a trusted proxy removed (``X-Forwarded-Prefix``): it replaces the
    #: configured ``root_path`` for this request; ``None``: none was given
    prefix: str | None = None
    #: the task running an ASGI app for this exchange (held so asyncio keeps it alive); the
    #: runtime's ``asyncio.Task``, typed ``Any`` since this layer does not import asyncio
    task: Any = None

    # request body ---------------------------------------------------------
    def read(self) -> tuple[bytes, bool] | None:
        """Body bytes already here and whether more follow; ``None`` when none are buffered yet."""
        raise NotImplementedError

    def wait_readable(self) -> Waiter:
        """Resolves when :meth:`read` has something, the body ended, or the client left."""
        raise NotImplementedError

    def wait_disconnect(self) -> Waiter:
        """Resolves when the client is gone or the response is complete."""
        raise NotImplementedError

    # response -------------------------------------------------------------
    def start(
        self, status: int, headers: Headers, body: bytes, end: bool, reason: bytes = b""
    ) -> Awaitable[None] | None:
        """Write the head (and the first body piece). Raises ``AppError`` for a bad response.

        ``reason`` is an app's own reason phrase (a WSGI status "200 Fine"); empty: the
        standard one. Protocols without reason phrases (HTTP/2) ignore it.
        """
        raise NotImplementedError

    def write(self, body: bytes, end: bool) -> Awaitable[None] | None:
        """Write a piece of the body; ``end`` completes the response."""
        raise NotImplementedError

    def end_with_trailers(self, trailers: Headers) -> Awaitable[None] | None:
        """Complete the response with a trailer section."""
        raise NotImplementedError

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        """After :meth:`start` with ``end=False``: send ``count`` bytes of the open file ``fd``
        from ``offset`` as the rest of the body, and end the response.

        The caller keeps the descriptor and closes it. Raises ``AppError`` when ``count``
        disagrees with the response's Content-Length (before anything is sent) or the file
        turns out shorter (then the exchange is aborted), ``ClientDisconnected`` when the
        client leaves.
        """
        raise NotImplementedError

    def response_started(self) -> bool:
        raise NotImplementedError

    def response_complete(self) -> bool:
        raise NotImplementedError

    def abort(self) -> None:
        """End this exchange abnormally (the app failed after the response started): the client
        must not take what it received for a whole response."""
        raise NotImplementedError

    def app_finished(self) -> None:
        """The app's callable returned or raised; the runtime may recycle the exchange."""
        raise NotImplementedError

    # upgrade (WebSocket) ----------------------------------------------------
    def upgrade_requested(self) -> bool:
        """Whether this request is a WebSocket handshake the protocol holds for an app to answer
        (HTTP/1.1 ``Upgrade: websocket``; HTTP/2 extended CONNECT, RFC 8441)."""
        return False

    def decline_upgrade(self) -> None:
        """Serve a held handshake as an ordinary request (an app without WebSockets)."""

    def refuse_upgrade(self) -> None:
        """The held handshake gets an HTTP response instead (an invalid handshake, or the app
        said no): the exchange ends with it, and so does an HTTP/1.1 connection, since what
        follows the handshake on it may already be the other protocol's bytes."""

    def accept_upgrade(self, headers: Headers, owner: TunnelOwner) -> tuple[Tunnel, bytes]:
        """Answer the handshake (HTTP/1.1: ``101``) with ``headers`` and switch protocols.

        From now on ``owner`` receives the connection's bytes; returns the tunnel to write to and
        the bytes that already arrived after the handshake (the owner processes them). Raises
        ``ClientDisconnected`` when the client is gone.
        """
        raise NotImplementedError
