"""One worker's listening sockets: the driver each new connection gets, and the graceful stop.

A connection's protocol is chosen once (the idea of hypercorn's ``ProtocolWrapper``):

1. by its bind: a ``uwsgi:`` or ``fastcgi:`` bind gets that driver (``runtime.uwsgi``,
   ``runtime.fastcgi``: nginx is the peer, never TLS nor PROXY); a plain bind starts every
   connection as HTTP/1.1 (``runtime.http1``), which hands a connection over when its first
   bytes are another protocol's preface (the context's ``prefaces``: HTTP/2 prior knowledge,
   RFC 9113 §3.3, ``runtime.http2``); with ``--http-protocols h2`` alone, every connection is
   HTTP/2;
2. under TLS, by ALPN once the handshake is done (``runtime.tls_transport``), from
   :attr:`Server.alpn` (``h2``, then ``http/1.1``, as ``--http-protocols`` allows).

With ``--proxy-protocol`` a PROXY header is read before either (``runtime.proxy_protocol``).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass

from portico.runtime.context import WorkerContext
from portico.runtime.fastcgi import FastCGIDriver
from portico.runtime.http1 import H1Driver
from portico.runtime.http2 import PREFACE, H2Driver
from portico.runtime.proxy_protocol import ProxyProtocolReader
from portico.runtime.tls import ServerTLS
from portico.runtime.tls_transport import TLSConnection
from portico.runtime.uwsgi import UwsgiDriver

__all__ = ["Listener", "Server"]

DriverFactory = Callable[[WorkerContext], asyncio.Protocol]


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening socket and how its connections are served."""

    sock: socket.socket
    #: TLS on this bind (``certfile`` set, not an ``insecure_bind``)
    tls: bool
    #: what the bind speaks: ``http``, ``uwsgi`` or ``fastcgi`` (``config.kinds.bind_protocol``)
    protocol: str = "http"


class Server:
    """Serves connections on a worker's listening sockets, through one :class:`WorkerContext`."""

    def __init__(self, ctx: WorkerContext, tls: ServerTLS | None = None) -> None:
        self.ctx = ctx
        self.tls = tls
        protocols = ctx.limits.h2.protocols
        #: the driver for each ALPN protocol name a TLS client may choose (RFC 7301), in our
        #: order of preference; the first also serves a client that offers no ALPN
        self.alpn: dict[str, DriverFactory] = {}
        if "h2" in protocols:
            self.alpn["h2"] = H2Driver
            ctx.prefaces = ((PREFACE, H2Driver),)
        if "h1" in protocols:
            self.alpn["http/1.1"] = H1Driver
        self._plain: DriverFactory = H1Driver if "h1" in protocols else H2Driver
        #: the driver of each bind protocol that is not HTTP
        self.gateways: dict[str, DriverFactory] = {"uwsgi": UwsgiDriver, "fastcgi": FastCGIDriver}
        self._listeners: list[asyncio.base_events.Server] = []

    def _factory(self, listener: Listener) -> Callable[[], asyncio.Protocol]:
        ctx = self.ctx
        factory: Callable[[], asyncio.Protocol]
        gateway = self.gateways.get(listener.protocol)
        if gateway is not None:
            return lambda: gateway(ctx)
        if listener.tls:
            tls = self.tls
            if tls is None:
                raise ValueError("a TLS listener needs the server's TLS configuration")
            alpn = self.alpn
            factory = lambda: TLSConnection(ctx, tls, alpn)  # noqa: E731
        else:
            plain = self._plain
            factory = lambda: plain(ctx)  # noqa: E731
        if ctx.limits.proxies.protocol:
            # the PROXY header comes first, before TLS too
            inner = factory
            return lambda: ProxyProtocolReader(ctx, inner)
        return factory

    async def start(self, listeners: list[Listener]) -> None:
        loop = self.ctx.loop
        backlog = self.ctx.config.backlog
        for listener in listeners:
            server = await loop.create_server(
                self._factory(listener), sock=listener.sock, backlog=backlog
            )
            self._listeners.append(server)

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, let requests in flight finish, close idle connections.

        Busy connections answer their current request with ``Connection: close``; whatever is
        still running after ``timeout`` seconds is cut off.
        """
        for listener in self._listeners:
            listener.close()
        await self.ctx.drain(timeout)
        self.ctx.stop()
        for listener in self._listeners:
            await listener.wait_closed()
