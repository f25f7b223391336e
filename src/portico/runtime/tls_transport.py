"""TLS on a connection: OpenSSL over memory buffers between the socket and the protocol driver.

One :class:`TLSConnection` per connection is both the socket transport's protocol (ciphertext in
and out) and the transport the driver sees (plaintext): the driver cannot tell it from a plain
socket, except that ``get_extra_info("portico.tls")`` holds the facts apps are told, and that it
offers no socket to ``sendfile`` to. Doing this here rather than with ``create_server(ssl=...)``
gives what the event loop's TLS cannot:

* the protocol is chosen by ALPN once the handshake is done (RFC 7301), from the server's
  drivers (``h2`` and ``http/1.1``);
* plain HTTP sent to the TLS port gets a ``400`` saying so, as nginx answers, instead of a
  handshake error the client cannot show;
* the handshake is bounded by ``header_timeout`` on the worker's ticker, like a request head,
  and a failed one is logged once at debug level with OpenSSL's reason, never as a traceback;
* the end-of-turn batching of responses carries over: the responses of a loop turn become one
  TLS write, hence full records and one ``send`` (measured faster than uvloop's own TLS).

Half-closing (``write_eof``) sends TLS ``close_notify`` and then the TCP FIN, so a lingering
close after an error response works over TLS too (TLS 1.3 allows the half-close, RFC 8446 §6.1).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, Final, cast

from portico.logs import error_log as log
from portico.protocols.exchange import error_response
from portico.runtime.context import WorkerContext
from portico.runtime.tls import ServerTLS, connection_facts

__all__ = ["TLSConnection"]


# A TLS record carries at most 16 KiB of plaintext (RFC 8446 §5.1); read a few at a time.
_READ_SIZE: Final = 64 * 1024
# The first byte of a TLS record that starts a handshake (RFC 8446 §5.1, ContentType 22).
_HANDSHAKE_RECORD: Final = 0x16
# The most plaintext one TLS record carries (RFC 8446 §5.1): output up to this is joined into one.
_RECORD: Final = 16 * 1024
_SHUTDOWN_GRACE: Final = 1.0
_LINGER_SECONDS: Final = 2.0
_PLAIN_HTTP: Final = "plain HTTP request sent to the HTTPS port"

_HANDSHAKING: Final = 0
_OPEN: Final = 1
_PLAIN: Final = 2  # plain HTTP came: answered, now draining until the client closes
_CLOSING: Final = 3  # close_notify sent: what arrives now is dropped
_CLOSED: Final = 4


class TLSConnection(asyncio.Protocol):
    """One TLS connection: the socket's protocol, and the driver's transport (see the module)."""

    def __init__(
        self,
        ctx: WorkerContext,
        tls: ServerTLS,
        drivers: dict[str, Callable[[WorkerContext], asyncio.Protocol]],
    ) -> None:
        self._ctx = ctx
        self._tls = tls
        self._drivers = drivers
        self._raw: asyncio.Transport | None = None
        self._app: asyncio.Protocol | None = None
        self._state = _HANDSHAKING
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = tls.context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._facts: dict[str, Any] | None = None
        self._eof_told = False
        self._started = False  # the first bytes arrived (and were a TLS handshake record)
        #: what a PROXY protocol header said came before the handshake (client, our address,
        #: TLS to the proxy): the addresses the driver is told, instead of the socket's
        self.proxy_origin: tuple[tuple[str, int] | None, tuple[str, int] | None, bool] | None = None
        self.deadline = 0.0

    def _peer(self) -> str:
        peer = self.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"

    # --- the socket's side (asyncio.Protocol) ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = raw = cast(asyncio.Transport, transport)
        ctx = self._ctx
        if not ctx.admit_connection(self):
            # no 503 can be said before a handshake; refusing the connection costs nothing
            self._state = _CLOSED
            raw.close()
            return
        self.deadline = ctx.now + ctx.limits.header_timeout
        if ctx.closing:
            self.shutdown()

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _OPEN:
            self._incoming.write(data)
            self._read()
        elif state == _HANDSHAKING:
            self._handshake(data)
        # _PLAIN, _CLOSING: input is dropped until the client closes

    def eof_received(self) -> bool:
        app = self._app
        if self._state == _OPEN and app is not None:
            return self._tell_eof(app)
        if self._state == _HANDSHAKING:
            log.debug("%s: connection closed during the TLS handshake", self._peer())
        self._close_raw()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _CLOSED
        app = self._app
        if app is not None:
            app.connection_lost(exc)
        else:
            self._ctx.connection_closed(self)

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()

    # --- the handshake ---------------------------------------------------------------------

    def _handshake(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            if data[0] != _HANDSHAKE_RECORD:
                self._not_tls(data)
                return
        self._incoming.write(data)
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._send()
            return
        except ssl.SSLError as exc:
            log.debug("%s: TLS handshake failed: %s", self._peer(), exc.reason or exc)
            self._send()  # the alert, so that the client can tell why
            self._close_raw()
            return
        self._send()
        self._established()

    def _not_tls(self, data: bytes) -> None:
        raw = self._raw
        assert raw is not None
        if data[:1].isalpha() and data[:1].isupper():
            # an HTTP request-line (RFC 9112 §3): say so in plain HTTP, as nginx does
            self._ctx.log_client_error(self._peer(), 400, _PLAIN_HTTP)
            self._state = _PLAIN
            raw.write(error_response(400, _PLAIN_HTTP))
            if raw.can_write_eof():
                raw.write_eof()
            self.deadline = self._ctx.now + _LINGER_SECONDS
            return
        log.debug("%s: not a TLS handshake; closing", self._peer())
        self._close_raw()

    def _established(self) -> None:
        ctx = self._ctx
        name = self._ssl.selected_alpn_protocol() or "http/1.1"
        # no ALPN (or none we know): HTTP/1.1 where served, else the preferred protocol
        factory = self._drivers.get(name) or next(iter(self._drivers.values()))
        self._facts = connection_facts(self._tls, self._ssl)
        self._state = _OPEN
        self.deadline = 0.0
        # the driver takes this connection's place among the context's connections
        ctx.connections.discard(self)
        self._app = app = factory(ctx)
        app.connection_made(cast(asyncio.BaseTransport, self))
        if self._state == _OPEN and (self._incoming.pending or self._ssl.pending()):
            self._read()  # application data that came with the handshake's last flight

    # --- plaintext to the driver -------------------------------------------------------------

    def _read(self) -> None:
        read = self._ssl.read
        incoming = self._incoming
        chunks: list[bytes] = []
        eof = False
        try:
            while True:
                chunks.append(read(_READ_SIZE))
                # stop without the exception when nothing more can be decrypted
                if not incoming.pending and not self._ssl.pending():
                    break
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            eof = True  # the client's close_notify
        except ssl.SSLError as exc:
            log.debug("%s: TLS error: %s", self._peer(), exc.reason or exc)
            self.abort()
            return
        if self._outgoing.pending:
            self._send()  # what reading produced (TLS 1.3 key updates, alerts)
        app = self._app
        assert app is not None
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if data:
                app.data_received(data)
        if eof and self._state == _OPEN and not self._tell_eof(app):
            self.close()

    def _tell_eof(self, app: asyncio.Protocol) -> bool:
        if self._eof_told:
            return True
        self._eof_told = True
        return bool(app.eof_received())

    def _send(self) -> None:
        outgoing = self._outgoing
        if outgoing.pending:
            raw = self._raw
            assert raw is not None
            raw.write(outgoing.read())

    def _close_raw(self) -> None:
        self._state = _CLOSED
        if self._raw is not None:
            self._raw.close()

    # --- the driver's side (asyncio.Transport) ------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._state != _OPEN:
            return  # closing or gone: like a socket transport after close, drop it
        try:
            self._ssl.write(data)
        except ssl.SSLError as exc:
            self._write_failed(exc)
            return
        self._send()

    def writelines(self, chunks: Any) -> None:
        parts = list(chunks)
        if sum(map(len, parts)) <= _RECORD:
            # small responses joined fill one TLS record instead of a record per piece
            self.write(b"".join(parts))
            return
        # a large body: each piece is encrypted as it is (an HTTP/2 body's 16 KiB pieces are a
        # TLS record each), then sent once, with no join that copies it all first
        if self._state != _OPEN:
            return
        write = self._ssl.write
        try:
            for part in parts:
                write(part)
        except ssl.SSLError as exc:
            self._write_failed(exc)
            return
        self._send()

    def _write_failed(self, exc: ssl.SSLError) -> None:
        log.debug("%s: TLS error while writing: %s", self._peer(), exc.reason or exc)
        self.abort()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """``close_notify``, then the TCP half-close; input is dropped from now on."""
        if self._state != _OPEN:
            return
        self._notify_close()
        raw = self._raw
        if raw is not None and raw.can_write_eof():
            raw.write_eof()

    def _notify_close(self) -> None:
        self._state = _CLOSING
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # the client's close_notify is not awaited (RFC 8446 §6.1 allows it)
        except ssl.SSLError:
            return
        self._send()

    def close(self) -> None:
        if self._state == _OPEN:
            self._notify_close()
        if self._state != _CLOSED:
            self._close_raw()

    def abort(self) -> None:
        self._state = _CLOSED
        if self._raw is not None:
            self._raw.abort()

    def is_closing(self) -> bool:
        raw = self._raw
        return self._state != _OPEN or raw is None or raw.is_closing()

    def pause_reading(self) -> None:
        if self._raw is not None:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._raw is not None:
            self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw is not None and self._raw.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._raw is not None:
            self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size() if self._raw is not None else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._raw.get_write_buffer_limits() if self._raw is not None else (0, 0)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app = cast(asyncio.Protocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol | None:
        return self._app

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "portico.tls":
            return self._facts
        if name == "ssl_object":
            return self._ssl
        if name == "peercert":
            return self._ssl.getpeercert()
        if name == "cipher":
            return self._ssl.cipher()
        origin = self.proxy_origin
        if origin is not None and name in ("peername", "sockname"):
            address = origin[0] if name == "peername" else origin[1]
            if address is not None:
                return address
        raw = self._raw
        return raw.get_extra_info(name, default) if raw is not None else default

    # --- the context's view while handshaking (Connection) ------------------------------------

    def on_timeout(self) -> None:
        if self._state == _HANDSHAKING:
            log.debug("%s: TLS handshake not done in time; closing", self._peer())
            self.abort()
        elif self._state == _PLAIN:
            self._close_raw()

    def shutdown(self) -> None:
        # a handshake under way gets a moment to finish; its driver then drains gracefully
        self.deadline = min(self.deadline, self._ctx.now + _SHUTDOWN_GRACE)
