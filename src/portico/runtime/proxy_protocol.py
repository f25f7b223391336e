"""The PROXY protocol (v1 and v2) in front of a connection: who the client really is, read before
anything else, TLS included.

With ``--proxy-protocol`` every connection is first a :class:`ProxyProtocolReader`. It accepts
the header only from a peer in ``--forwarded-allow-ips`` (HAProxy's ``doc/proxy-protocol.txt``
§5: a receiver must not accept the header from anyone), within ``--header-timeout``; then it
hands the connection to the bind's next protocol (the HTTP/1.1 driver, or the TLS layer), with
the header's addresses in place of the socket's, and the bytes that followed the header. A peer
that is not trusted, a header that is not valid, or silence ends the connection, logged once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final, cast

from portico.logs import error_log as log
from portico.protocols.proxy_header import ProxyHeaderError, ProxyHeaderReader
from portico.runtime.context import WorkerContext

__all__ = ["ProxyProtocolReader"]


_SHUTDOWN_GRACE: Final = 1.0


class ProxyProtocolReader(asyncio.Protocol):
    """The first protocol of a connection on a PROXY protocol bind (see the module)."""

    def __init__(self, ctx: WorkerContext, next_protocol: Callable[[], asyncio.Protocol]) -> None:
        self._ctx = ctx
        self._next = next_protocol
        self._raw: asyncio.Transport | None = None
        self._reader = ProxyHeaderReader()
        self._peer = "-"
        self._done = False
        self.deadline = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = raw = cast(asyncio.Transport, transport)
        ctx = self._ctx
        peer = raw.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) else None
        if isinstance(peer, tuple):
            self._peer = f"{peer[0]}:{peer[1]}"
        trusted = ctx.trusted_proxies
        if trusted is None or not trusted.trusts(host):
            ctx.log_client_error(self._peer, 400, "PROXY header from an untrusted peer refused")
            self._done = True
            raw.abort()
            return
        if not ctx.admit_connection(self):
            self._done = True
            raw.close()
            return
        self.deadline = ctx.now + ctx.limits.header_timeout
        if ctx.closing:
            self.shutdown()

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        try:
            header = self._reader.feed(data)
        except ProxyHeaderError as exc:
            self._ctx.log_client_error(self._peer, 400, f"bad PROXY header: {exc.detail}")
            self._close()
            return
        if header is None:
            return  # not all of it yet
        self._done = True
        raw = self._raw
        assert raw is not None
        ctx = self._ctx
        ctx.connections.discard(self)
        protocol = self._next()
        if header.command == "PROXY" and header.client is not None:
            # the driver (or the TLS layer) takes these instead of the socket's addresses
            origin: Any = (header.client, header.server, header.tls)
            protocol.proxy_origin = origin  # type: ignore[attr-defined]
        raw.set_protocol(protocol)
        protocol.connection_made(raw)
        rest = self._reader.rest
        if rest and not raw.is_closing():
            protocol.data_received(rest)

    def eof_received(self) -> bool:
        return False  # before a whole header: nothing to answer

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done or self in self._ctx.connections:
            self._done = True
            self._ctx.connection_closed(self)

    # --- the context's view (Connection) --------------------------------------------------

    def on_timeout(self) -> None:
        if not self._done:
            log.debug("%s: no PROXY header in time; closing", self._peer)
            self._close()

    def shutdown(self) -> None:
        self.deadline = min(self.deadline, self._ctx.now + _SHUTDOWN_GRACE)

    def abort(self) -> None:
        self._done = True
        if self._raw is not None:
            self._raw.abort()

    def _close(self) -> None:
        self._done = True
        if self._raw is not None:
            self._raw.close()
