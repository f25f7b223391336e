"""WebSocket (RFC 6455) with permessage-deflate (RFC 7692) as bytes in → messages out, without I/O.

Framing, masking, control frames, close codes and compression are the ``websockets`` library's
sans-I/O layer (``websockets.protocol.Protocol``); see the README's dependency table for why that
one. This module adds what the library leaves to the server around it:

* the opening handshake on top of our own HTTP parsers (:func:`check_handshake`,
  :func:`accept_headers`): a bad ``Sec-WebSocket-Key`` is 400, a version other than 13 is 426 with
  ``Sec-WebSocket-Version: 13`` (RFC 6455 §4.2.1, §4.4), and permessage-deflate is negotiated with
  the window and memory bounds of the settings;
* messages instead of frames (:class:`WSConnection`): fragments are joined, and text is validated
  as UTF-8 as it arrives, fragment by fragment, so an invalid message fails at once with 1007
  (RFC 6455 §8.1) instead of after its last fragment.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, cast

from websockets.exceptions import InvalidHeader, NegotiationError
from websockets.exceptions import ProtocolError as WSProtocolError
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import CloseCode, Frame, Opcode
from websockets.headers import build_extension, parse_extension, parse_subprotocol
from websockets.protocol import SERVER, State

try:  # the library's C unmasking, built with its wheels; pure Python elsewhere
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a platform without websockets' wheels
    from websockets.utils import apply_mask
from websockets.protocol import Protocol as _Protocol

from portico.errors import AppError
from portico.protocols.events import Headers, Request
from portico.protocols.headers import check_response_field

__all__ = [
    "Handshake",
    "HandshakeError",
    "WSConnection",
    "WSOptions",
    "accept_headers",
    "check_handshake",
    "is_websocket_upgrade",
]

# RFC 6455 §1.3: the GUID appended to the client's key to prove the server read it.
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_VERSION: Final = b"13"
# Fields the 101 response owns; an app passes the subprotocol through its own key instead (ASGI
# spec: ``headers`` must not include ``sec-websocket-protocol``).
_OWNED: Final = frozenset(
    {
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
    }
)

# websockets logs each closed connection at INFO on its logger: a server with many short-lived
# WebSockets must not write a line per connection to its error log. Its errors still propagate.
_library_log = logging.getLogger("portico.error.websocket")
_library_log.setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class WSOptions:
    """The WebSocket settings the protocol needs.

    Each one is a setting; values and defaults come from the settings table, built in one place
    (``portico.runtime.limits``).
    """

    max_message_size: int  # 0 means unlimited
    per_message_deflate: bool
    deflate_window_bits: int
    deflate_memory_level: int
    _factory: ServerPerMessageDeflateFactory | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.per_message_deflate:
            bits = self.deflate_window_bits
            factory = ServerPerMessageDeflateFactory(
                server_max_window_bits=bits,
                client_max_window_bits=bits,
                compress_settings={"memLevel": self.deflate_memory_level},
            )
            object.__setattr__(self, "_factory", factory)


class HandshakeError(Exception):
    """The upgrade request is not a valid WebSocket handshake: answer ``status`` and close."""

    def __init__(self, status: int, detail: str, headers: Headers | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers: Headers = headers or []


@dataclass(slots=True)
class Handshake:
    """A valid opening handshake: what the app may choose from, and what the reply must carry."""

    #: ``Sec-WebSocket-Accept`` (HTTP/1.1); empty over HTTP/2, where RFC 8441 §5 drops the key
    accept: bytes
    #: the subprotocols the client offered, in its order of preference
    subprotocols: list[str]
    #: the ``Sec-WebSocket-Extensions`` value to answer with (empty: none negotiated)
    extensions: bytes
    extension: PerMessageDeflate | None


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip().lower() for token in value.split(b",")]


def is_websocket_upgrade(upgrade: bytes | None) -> bool:
    """Whether an ``Upgrade`` value asks for WebSocket (RFC 6455 §4.2.1 item 3)."""
    return upgrade is not None and b"websocket" in _tokens(upgrade)


def check_handshake(request: Request, options: WSOptions) -> Handshake:
    """Validate a client's opening handshake (RFC 6455 §4.2.1); raise :class:`HandshakeError`.

    The HTTP layer already checked the method and version (HTTP/1.1: a GET with ``Connection:
    upgrade`` and ``Upgrade: websocket``, and a ``Host``; HTTP/2: an extended CONNECT with
    ``:protocol websocket``, RFC 8441 §4). Over HTTP/2 there is no ``Sec-WebSocket-Key``: the
    stream itself proves the server took part (RFC 8441 §5).
    """
    keys: list[bytes] = []
    versions: list[bytes] = []
    protocols: list[str] = []
    offers: list[str] = []
    for name, value in request.headers:
        if name == b"sec-websocket-key":
            keys.append(value)
        elif name == b"sec-websocket-version":
            versions.append(value)
        elif name == b"sec-websocket-protocol":
            protocols.append(value.decode("latin-1"))
        elif name == b"sec-websocket-extensions":
            offers.append(value.decode("latin-1"))
    if versions != [_VERSION]:
        # RFC 6455 §4.4: name the versions we speak so that the client can retry with one.
        raise HandshakeError(
            426,
            "unsupported WebSocket version",
            [(b"sec-websocket-version", _VERSION), (b"upgrade", b"websocket")],
        )
    if request.http_version == "2":
        accept = b""
    elif len(keys) != 1 or not _valid_key(keys[0]):
        raise HandshakeError(400, "invalid Sec-WebSocket-Key")
    else:
        accept = base64.b64encode(hashlib.sha1(keys[0] + _GUID).digest())
    try:
        subprotocols = [str(p) for value in protocols for p in parse_subprotocol(value)]
    except InvalidHeader:
        raise HandshakeError(400, "invalid Sec-WebSocket-Protocol") from None
    extensions, extension = _negotiate(offers, options)
    return Handshake(accept, subprotocols, extensions, extension)


def _valid_key(key: bytes) -> bool:
    # RFC 6455 §4.1: a base64-encoded random 16-byte value (so 24 characters)
    if len(key) != 24:
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def _negotiate(offers: list[str], options: WSOptions) -> tuple[bytes, PerMessageDeflate | None]:
    """Accept the first acceptable permessage-deflate offer (RFC 7692 §5), or none."""
    factory = options._factory
    if factory is None or not offers:
        return b"", None
    try:
        items = [item for value in offers for item in parse_extension(value)]
    except InvalidHeader:
        raise HandshakeError(400, "invalid Sec-WebSocket-Extensions") from None
    for name, params in items:
        if name != factory.name:
            continue  # an extension we do not know is declined by leaving it out (RFC 6455 §9.1)
        try:
            response, extension = factory.process_request_params(params, [])
        except NegotiationError:
            continue  # RFC 7692 §5: try the client's next offer
        return build_extension([(name, response)]).encode("latin-1"), extension
    return b"", None


def accept_headers(handshake: Handshake, subprotocol: str | None, headers: Headers) -> Headers:
    """The header fields that accept the handshake, with the app's own ``headers``.

    Over HTTP/1.1 they go with ``101 Switching Protocols`` (RFC 6455 §4.2.2), over HTTP/2 with a
    ``200`` (RFC 8441 §5, without ``Upgrade``, ``Connection`` and ``Sec-WebSocket-Accept``);
    the carrier writes the status line and adds Date and Server. Raises :class:`AppError` for a
    subprotocol the client did not offer or an invalid header.
    """
    out: Headers = []
    if handshake.accept:
        out += (
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", handshake.accept),
        )
    if subprotocol is not None:
        # RFC 6455 §4.2.2: the server selects one of the client's values, or none
        if subprotocol not in handshake.subprotocols:
            raise AppError(f"subprotocol {subprotocol!r} was not offered by the client")
        out.append((b"sec-websocket-protocol", subprotocol.encode("ascii")))
    if handshake.extensions:
        out.append((b"sec-websocket-extensions", handshake.extensions))
    for name, value in headers:
        check_response_field(name, value)
        if name.lower() in _OWNED:
            raise AppError(f"websocket.accept headers must not set {name.decode('latin-1')}")
        out.append((name, value))
    return out


# Events of WSConnection.receive_data: a message is ``str`` (text) or ``bytes`` (binary).
Message = str | bytes

_TEXT, _BINARY, _CONT, _PING, _PONG, _CLOSE = (
    Opcode.TEXT,
    Opcode.BINARY,
    Opcode.CONT,
    Opcode.PING,
    Opcode.PONG,
    Opcode.CLOSE,
)
_OPEN, _CLOSED = State.OPEN, State.CLOSED
_HEAD16: Final = struct.Struct("!BBH").pack
_HEAD64: Final = struct.Struct("!BBQ").pack
_Utf8Decoder: Final[Callable[[], codecs.IncrementalDecoder]] = codecs.getincrementaldecoder("utf-8")


class _ServerProtocol(_Protocol):
    """The library's protocol with one correction for RFC 6455 §5.4.

    Control frames may come between the fragments of a message, a close frame too; the library
    fails such a connection with 1002 ("incomplete fragmented message"), but the close is valid:
    the unfinished message is dropped and the close is answered normally (Autobahn case 7.1.5).
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is _CLOSE:
            self.current_size = None
        super().recv_frame(frame)


class WSConnection:
    """One open WebSocket, server side: bytes in → messages out, messages in → bytes out.

    After each ``receive_*``, ``send_*`` or :meth:`fail` call, write :meth:`data_to_send`; an
    empty ``bytes`` in it means "half-close the TCP connection now" (the server closes the TCP
    connection first, RFC 6455 §7.1.1).

    The common frame takes a short path past the library, which spends most of a small
    message's cost in its generator-based parser: :meth:`receive_data` first cuts the input into
    whole frames itself (RFC 6455 §5.2), unmasks an unfragmented, uncompressed text or binary
    frame with the library's C ``apply_mask`` and decodes it here, and hands every other frame
    (control frames, fragments, compressed or malformed ones) to the library whole, one at a
    time, so that the library's parser is always at a frame boundary when a short-path frame
    goes by it. Likewise a message sent without compression is framed here (an unmasked server
    frame is two to ten bytes of header, §5.2) and queued in the library's own output, in order.
    """

    def __init__(self, options: WSOptions, extension: PerMessageDeflate | None) -> None:
        limit = options.max_message_size or None
        self._proto = proto = _ServerProtocol(SERVER, max_size=limit, logger=_library_log)
        if extension is not None:
            proto.extensions = [extension]
        self._limit = options.max_message_size
        self._plain = extension is None  # messages are sent uncompressed: frame them here
        self._buffer = b""  # the start of a frame not complete yet
        self._parts: list[bytes] = []
        self._text_parts: list[str] = []
        self._decoder: codecs.IncrementalDecoder | None = None
        self._fragmented_text = False
        #: a text frame still arriving: the decoder that checked it and how much it checked
        self._partial: tuple[codecs.IncrementalDecoder, int] | None = None
        #: a frame that fails the connection waits behind messages the app has not taken yet
        self.held = False
        #: a pong arrived since the last look (the driver's keepalive clears it)
        self.pong_received = False
        #: the peer's close frame, once it came: (code, reason); 1005 when it had no code
        self.close_received: tuple[int, str] | None = None

    @property
    def open(self) -> bool:
        """Messages may still be sent (no close frame sent or received)."""
        return self._proto.state is _OPEN

    @property
    def closed(self) -> bool:
        """The closing handshake is over, or the connection failed (RFC 6455 §7.1.4)."""
        return self._proto.state is _CLOSED

    @property
    def close_sent(self) -> tuple[int, str] | None:
        close = self._proto.close_sent
        return None if close is None else (close.code, close.reason)

    def receive_data(self, data: bytes) -> list[Message]:
        """Feed bytes from the client; return the messages they complete.

        A frame that will fail the connection, arriving after messages in the same bytes, is
        held: those messages go to the app first (it may answer them, as Autobahn's strict
        cases expect), and :meth:`release` fails the connection once the app asks for more.
        While held, input is only kept.
        """
        if self.held:
            self._buffer += data
            return []
        buffer = self._buffer + data if self._buffer else data
        messages: list[Message] = []
        proto = self._proto
        view = memoryview(buffer)
        size = len(buffer)
        pos = 0
        while size - pos >= 2:
            if proto.state is not _OPEN:
                self._library(view[pos:], messages)  # closing: the library discards the rest
                pos = size
                break
            first = buffer[pos]
            second = buffer[pos + 1]
            length = second & 0x7F
            head = pos + 2
            if length == 126:
                head = pos + 4
                length = int.from_bytes(view[pos + 2 : head])
            elif length == 127:
                head = pos + 10
                length = int.from_bytes(view[pos + 2 : head])
            if head > size:
                break
            limit = self._limit
            if limit and length > limit:
                self._library(view[pos:], messages)  # the library fails it with 1009 at once
                pos = size
                break
            masked = second & 0x80
            end = head + length + (4 if masked else 0)
            opcode = first & 0x0F
            if end > size:
                # an uncompressed text frame still arriving: its UTF-8 is checked as it comes,
                # so an invalid one fails now, not when the frame is whole (RFC 6455 §8.1)
                if (
                    masked
                    and first & 0x70 == 0
                    and (opcode == 1 or (opcode == 0 and self._fragmented_text))
                    and size > head + 4
                    and not self._partial_text(buffer, head, size, opcode == 0)
                ):
                    pos = size
                break
            if self._partial is not None:
                self._partial = None  # the frame it checked is whole now
            # FIN set, RSV bits clear, masked (RFC 6455 §5.1), text or binary, no message open
            if first & 0xF0 == 0x80 and masked and opcode <= 2 and proto.current_size is None:
                if opcode == 0:  # a continuation with no message open: the library fails it
                    if messages:
                        self.held = True
                        break
                    self._library(view[pos:end], messages)
                else:
                    payload = apply_mask(view[head + 4 : end], buffer[head : head + 4])
                    if opcode == 1:
                        try:
                            messages.append(payload.decode())
                        except UnicodeDecodeError:
                            self._invalid_utf8()
                            pos = size
                            break
                    else:
                        messages.append(payload)
            else:
                if messages and self._fails(first, second, opcode, length):
                    self.held = True
                    break
                self._library(view[pos:end], messages)
            pos = end
        self._buffer = buffer[pos:] if pos < size else b""
        return messages

    def _fails(self, first: int, second: int, opcode: int, length: int) -> bool:
        """Whether the library will fail the connection on this frame (RFC 6455 §5.2, §5.5):
        reserved bits no extension gave a meaning, a reserved opcode, a continuation with no
        message open, a fragmented or long control frame, no mask."""
        rsv = first & 0x70
        if rsv & 0x30 or (rsv and self._plain):
            return True
        if 3 <= opcode <= 7 or opcode >= 11:
            return True
        if opcode == 0 and self._proto.current_size is None:
            return True
        if opcode >= 8 and (not first & 0x80 or length > 125):
            return True
        return not second & 0x80

    def release(self) -> list[Message]:
        """Parse on past a held frame (the app took the messages before it)."""
        self.held = False
        return self.receive_data(b"")

    def _partial_text(self, buffer: bytes, head: int, size: int, continued: bool) -> bool:
        """Check the UTF-8 of the part of a text frame received so far (from ``head``: its mask
        key, then the payload); ``False`` once it cannot be valid, the connection failed with
        1007. Only the bytes new since the last look are decoded."""
        partial = self._partial
        if partial is None:
            decoder = _Utf8Decoder()
            if continued and self._decoder is not None:
                decoder.setstate(self._decoder.getstate())  # the message's earlier fragments
            self._partial = partial = (decoder, 0)
        decoder, checked = partial
        start = head + 4 + checked
        if size <= start:
            return True
        turn = checked % 4  # the mask key applies from the payload's first byte on
        mask = buffer[head + turn : head + 4] + buffer[head : head + turn]
        try:
            decoder.decode(apply_mask(memoryview(buffer)[start:size], mask), False)
        except UnicodeDecodeError:
            self._partial = None
            self._invalid_utf8()
            return False
        self._partial = (decoder, size - head - 4)
        return True

    def _library(self, data: memoryview, messages: list[Message]) -> None:
        """Let the library parse ``data`` (whole frames, or anything once closing)."""
        proto = self._proto
        proto.receive_data(bytes(data))
        # a server-side protocol created OPEN only ever returns frames
        for frame in cast("list[Frame]", proto.events_received()):
            opcode = frame.opcode
            if opcode is _TEXT:
                if frame.fin:
                    try:
                        messages.append(bytes(frame.data).decode())
                    except UnicodeDecodeError:
                        self._invalid_utf8()
                        break
                else:
                    self._fragmented_text = True
                    self._decoder = _Utf8Decoder()
                    if not self._decode(bytes(frame.data), False):
                        break
            elif opcode is _BINARY:
                if frame.fin:
                    messages.append(bytes(frame.data))
                else:
                    self._fragmented_text = False
                    self._parts.append(bytes(frame.data))
            elif opcode is _CONT:
                if self._fragmented_text:
                    if not self._decode(bytes(frame.data), frame.fin):
                        break
                    if frame.fin:
                        messages.append("".join(self._text_parts))
                        self._text_parts.clear()
                else:
                    self._parts.append(bytes(frame.data))
                    if frame.fin:
                        messages.append(b"".join(self._parts))
                        self._parts.clear()
            elif opcode is _PONG:
                self.pong_received = True
            elif opcode is _CLOSE:
                self._parts.clear()
                self._text_parts.clear()
                close = proto.close_rcvd
                if close is not None:
                    self.close_received = (close.code, close.reason)
            # a ping was already answered by the library (RFC 6455 §5.5.2)

    def _decode(self, data: bytes, final: bool) -> bool:
        decoder = self._decoder
        assert decoder is not None
        try:
            self._text_parts.append(decoder.decode(data, final))
        except UnicodeDecodeError:
            self._invalid_utf8()
            return False
        return True

    def _invalid_utf8(self) -> None:
        # RFC 6455 §8.1: "the endpoint MUST _Fail the WebSocket Connection_" with 1007 (§7.4.1)
        self._text_parts.clear()
        self._proto.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message")

    def receive_eof(self) -> None:
        """The client closed its sending side."""
        self._proto.receive_eof()

    def send_text(self, text: str) -> None:
        if self._plain and self._proto.state is _OPEN:
            self._frame(0x81, text.encode())
        else:
            self._proto.send_text(text.encode())

    def send_bytes(self, data: bytes) -> None:
        if self._plain and self._proto.state is _OPEN:
            self._frame(0x82, data)
        else:
            self._proto.send_binary(data)

    def _frame(self, first: int, payload: bytes) -> None:
        # RFC 6455 §5.2: FIN + opcode, then the length in 7, 7+16 or 7+64 bits; a server's
        # frames are not masked (§5.1)
        n = len(payload)
        writes = self._proto.writes
        if n < 126:
            writes.append(bytes((first, n)) + payload)
        elif n < 65536:
            writes.append(_HEAD16(first, 126, n) + payload)
        else:
            writes += (_HEAD64(first, 127, n), payload)

    def send_ping(self, data: bytes) -> None:
        self._proto.send_ping(data)

    def send_close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; :class:`AppError` for a code an app may not send."""
        if self._proto.state is not _OPEN:
            return  # a close frame was already sent or received: the handshake is under way
        try:
            self._proto.send_close(code, reason)
        except WSProtocolError as exc:
            raise AppError(f"invalid WebSocket close: {exc}") from None

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection (RFC 6455 §7.1.7): a close frame if still open, then EOF."""
        self._proto.fail(code, reason)

    def data_to_send(self) -> list[bytes]:
        return self._proto.data_to_send()
