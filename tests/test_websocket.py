"""WebSocket without sockets: the handshake, the message layer, the HTTP/1.1 hand-over, and the
ASGI gateway over a fake channel. The ``websockets`` library's client protocol plays the client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import Awaitable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.protocol import CLIENT
from websockets.protocol import Protocol as ClientProtocol

from portico.config import Config
from portico.errors import AppError
from portico.gateways.stream import ClientDisconnected
from portico.gateways.websocket import WebSocketChannel, WebSocketCycle, websocket_scope
from portico.protocols.events import Headers, Request
from portico.protocols.http11 import H1Connection
from portico.protocols.websocket import (
    HandshakeError,
    WSConnection,
    WSOptions,
    accept_headers,
    check_handshake,
    is_websocket_upgrade,
)
from portico.runtime.limits import build_limits

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example


def options(**settings: Any) -> WSOptions:
    """The WebSocket options the server builds from these settings (and the defaults)."""
    return build_limits(Config(**settings)).websocket.protocol


def h1() -> H1Connection:
    return H1Connection(build_limits(Config()).h1)


def accepted(handshake: Any, subprotocol: str | None, headers: Headers) -> dict[bytes, bytes]:
    return dict(accept_headers(handshake, subprotocol, headers))


def request(
    *extra: tuple[bytes, bytes], version: bytes | None = b"13", key: bytes = KEY
) -> Request:
    headers: Headers = [(b"host", b"a"), (b"upgrade", b"websocket"), (b"connection", b"upgrade")]
    headers.append((b"sec-websocket-key", key))
    if version is not None:
        headers.append((b"sec-websocket-version", version))
    headers += extra
    return Request(1, "GET", b"/chat", b"", "1.1", headers, False, False, b"websocket")


# --- the handshake ----------------------------------------------------------------------------


def test_accept_value_is_the_rfc_example() -> None:
    handshake = check_handshake(request(), options())
    # RFC 6455 §1.3: this key gives this accept value
    assert handshake.accept == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert handshake.accept == base64.b64encode(
        hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    )
    fields = accept_headers(handshake, None, [(b"x-a", b"1")])
    assert fields == [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        (b"x-a", b"1"),
    ]


def test_over_http2_there_is_no_key_and_no_upgrade_fields() -> None:
    # RFC 8441 §5: an extended CONNECT carries no Sec-WebSocket-Key, and the 200 that accepts
    # it has no Upgrade, Connection or Sec-WebSocket-Accept
    h2 = Request(
        1,
        "CONNECT",
        b"/chat",
        b"",
        "2",
        [(b"sec-websocket-version", b"13")],
        True,
        False,
        b"websocket",
    )
    handshake = check_handshake(h2, options())
    assert accept_headers(handshake, None, [(b"x-a", b"1")]) == [(b"x-a", b"1")]


@pytest.mark.parametrize("version", [None, b"8", b"13, 8", b"14"])
def test_other_versions_are_426_naming_13(version: bytes | None) -> None:
    with pytest.raises(HandshakeError) as error:
        check_handshake(request(version=version), options())
    assert error.value.status == 426
    assert (b"sec-websocket-version", b"13") in error.value.headers


@pytest.mark.parametrize(
    "key",
    [b"", b"short", base64.b64encode(b"x" * 15), base64.b64encode(b"x" * 17), b"!" * 24],
)
def test_bad_keys_are_400(key: bytes) -> None:
    with pytest.raises(HandshakeError) as error:
        check_handshake(request(key=key), options())
    assert error.value.status == 400


def test_two_keys_are_400() -> None:
    with pytest.raises(HandshakeError) as error:
        check_handshake(request((b"sec-websocket-key", KEY)), options())
    assert error.value.status == 400


def test_subprotocols_in_order_and_only_offered_ones_accepted() -> None:
    handshake = check_handshake(
        request((b"sec-websocket-protocol", b"b, a"), (b"sec-websocket-protocol", b"c")),
        options(),
    )
    assert handshake.subprotocols == ["b", "a", "c"]
    assert accepted(handshake, "a", [])[b"sec-websocket-protocol"] == b"a"
    with pytest.raises(AppError):
        accept_headers(handshake, "d", [])
    with pytest.raises(AppError):
        accept_headers(handshake, None, [(b"sec-websocket-protocol", b"a")])
    with pytest.raises(AppError):
        accept_headers(handshake, None, [(b"x-bad", b"a\r\nb")])


def test_deflate_negotiation_is_bounded_and_optional() -> None:
    offer = (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")
    handshake = check_handshake(request(offer), options(ws_deflate_window_bits=10))
    # RFC 7692 §7.1.2: the server bounds its own window and, offered the choice, the client's
    assert handshake.extensions == (
        b"permessage-deflate; server_max_window_bits=10; client_max_window_bits=10"
    )
    assert handshake.extension is not None
    assert accepted(handshake, None, [])[b"sec-websocket-extensions"].startswith(
        b"permessage-deflate;"
    )
    # a client that cannot bound its window still gets compression, within our own window
    plain = check_handshake(
        request((b"sec-websocket-extensions", b"permessage-deflate")), options()
    )
    assert plain.extensions == b"permessage-deflate; server_max_window_bits=12"
    # not offered, or switched off: none
    assert check_handshake(request(), options()).extension is None
    off = check_handshake(request(offer), options(ws_per_message_deflate=False))
    assert off.extension is None and off.extensions == b""
    assert b"sec-websocket-extensions" not in accepted(off, None, [])
    # an unknown extension is left out; an unacceptable offer falls through to the next
    other = check_handshake(
        request(
            (b"sec-websocket-extensions", b"x-other, permessage-deflate; server_max_window_bits=8"),
            (b"sec-websocket-extensions", b"permessage-deflate"),
        ),
        options(),
    )
    assert other.extensions == b"permessage-deflate; server_max_window_bits=12"


def test_upgrade_tokens() -> None:
    assert is_websocket_upgrade(b"WebSocket")
    assert is_websocket_upgrade(b"h2c, websocket")
    assert not is_websocket_upgrade(b"websockets")
    assert not is_websocket_upgrade(None)


# --- the message layer ------------------------------------------------------------------------


def pair(chosen: WSOptions | None = None) -> tuple[WSConnection, ClientProtocol]:
    return WSConnection(chosen or options(), None), ClientProtocol(CLIENT)


def client_bytes(client: ClientProtocol) -> bytes:
    return b"".join(client.data_to_send())


def server_frames(server: WSConnection) -> list[Frame]:
    client = ClientProtocol(CLIENT)
    out = b"".join(server.data_to_send())
    client.receive_data(out)
    return [e for e in client.events_received() if isinstance(e, Frame)]


def test_fragments_are_joined_and_control_frames_may_come_between() -> None:
    server, client = pair()
    client.send_text("hé".encode()[:2], fin=False)  # the é is split across fragments
    client.send_ping(b"p")
    client.send_continuation("hé".encode()[2:] + b"llo", fin=True)
    client.send_binary(b"a", fin=False)
    client.send_continuation(b"b", fin=True)
    assert server.receive_data(client_bytes(client)) == ["héllo", b"ab"]
    [pong] = server_frames(server)
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"p")  # RFC 6455 §5.5.2


def test_invalid_utf8_fails_fast_with_1007() -> None:
    server, client = pair()
    client.send_text(b"ok \xff", fin=False)  # invalid before the message is complete
    assert server.receive_data(client_bytes(client)) == []
    [close] = server_frames(server)
    assert struct.unpack("!H", close.data[:2])[0] == 1007
    assert server.closed is False and server.open is False


def close_code(server: WSConnection) -> int | None:
    frames = [f for f in server_frames(server) if f.opcode is Opcode.CLOSE]
    return struct.unpack("!H", frames[0].data[:2])[0] if frames else None


@pytest.mark.parametrize("fragmented", [False, True])
def test_invalid_utf8_inside_a_frame_still_arriving_fails_at_once(fragmented: bool) -> None:
    # Autobahn 6.4.3/6.4.4: one frame in chops; the invalid byte is in the middle one
    server, client = pair()
    text = "κόσμε".encode() + b"\xce\xba\xf4\x90\x80\x80" + b"edited"
    if fragmented:
        client.send_text("été".encode(), fin=False)
        client.send_continuation(text, fin=True)
    else:
        client.send_text(text)
    data = client_bytes(client)
    # where the invalid sequence starts in the bytes on the wire (masked: found by position)
    bad = len(data) - len(text) + text.index(b"\xf4\x90")
    assert server.receive_data(data[: bad - 3]) == []
    assert close_code(server) is None  # valid so far (the multi-byte prefix is not an error)
    server.receive_data(data[bad - 3 : bad + 2])
    assert close_code(server) == 1007  # failed on the chop, before the frame is whole
    assert server.receive_data(data[bad + 2 :]) == []


@given(st.text(max_size=200), st.integers(min_value=1, max_value=40))
@settings(max_examples=100, deadline=None)
def test_valid_text_in_any_chops_is_one_message(text: str, chop: int) -> None:
    server, client = pair()
    client.send_text(text.encode())
    data = client_bytes(client)
    got: list[str | bytes] = []
    for i in range(0, len(data), chop):
        got += server.receive_data(data[i : i + chop])
    assert got == [text]
    assert close_code(server) is None


@pytest.mark.parametrize(
    "bad",
    [
        Frame(Opcode.TEXT, b"x", rsv1=True),  # Autobahn 3.2: a reserved bit, no extension
        Frame(Opcode.TEXT, b"x", rsv2=True, rsv3=True),  # 3.4
        Frame(Opcode.CONT, b"x"),  # 5.15: nothing to continue
    ],
)
def test_a_failing_frame_waits_behind_the_messages_before_it(bad: Frame) -> None:
    server, client = pair()
    client.send_text(b"first")
    data = client_bytes(client)
    mask = b"\x01\x02\x03\x04"
    data += _masked(bad, mask)
    # one read with a valid message and then a frame that fails the connection: the message
    # reaches the app, which may answer it, before the failure (Autobahn strict)
    assert server.receive_data(data) == ["first"]
    assert server.held and server.open and close_code(server) is None
    assert server.receive_data(b"more bytes are kept, not parsed") == []
    server.send_text("first")  # the app's echo goes out before the close
    assert server.release() == []
    frames = server_frames(server)
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.CLOSE]
    assert struct.unpack("!H", frames[1].data[:2])[0] == 1002


def _masked(frame: Frame, mask: bytes) -> bytes:
    """A client frame on the wire, whatever its bits (the library's client refuses bad ones)."""
    first = (0x80 if frame.fin else 0) | frame.opcode.value
    first |= (0x40 if frame.rsv1 else 0) | (0x20 if frame.rsv2 else 0) | (0x10 if frame.rsv3 else 0)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(frame.data))
    return bytes((first, 0x80 | len(frame.data))) + mask + payload


def test_close_between_fragments_is_answered_normally() -> None:
    # RFC 6455 §5.4; Autobahn 7.1.5. The library alone would answer 1002.
    server, client = pair()
    client.send_text(b"frag", fin=False)
    client.send_close(1000)
    assert server.receive_data(client_bytes(client)) == []
    assert server.close_received == (1000, "")
    [close] = server_frames(server)
    assert struct.unpack("!H", close.data[:2])[0] == 1000


def test_message_size_limit_is_1009_also_across_fragments() -> None:
    server, client = pair(options(ws_max_message_size=10))
    client.send_binary(b"x" * 6, fin=False)
    client.send_continuation(b"x" * 6, fin=True)
    assert server.receive_data(client_bytes(client)) == []
    [close] = server_frames(server)
    assert struct.unpack("!H", close.data[:2])[0] == 1009


def test_send_and_close_from_the_server() -> None:
    server, client = pair()
    server.send_text("hi")
    server.send_bytes(b"\x00")
    server.send_ping(b"k")
    client.receive_data(b"".join(server.data_to_send()))
    frames = [e for e in client.events_received() if isinstance(e, Frame)]
    assert [(f.opcode, f.data) for f in frames] == [
        (Opcode.TEXT, b"hi"),
        (Opcode.BINARY, b"\x00"),
        (Opcode.PING, b"k"),
    ]
    client.send_pong(b"k")
    server.receive_data(client_bytes(client))
    assert server.pong_received
    with pytest.raises(AppError):
        server.send_close(1005)  # reserved: never sent on the wire (RFC 6455 §7.4.1)
    server.send_close(4000, "bye")
    assert server.close_sent == (4000, "bye")
    server.send_close(1000)  # already closing: nothing more
    assert not server.open
    client.receive_data(b"".join(server.data_to_send()))
    out = client_bytes(client)  # the client echoes the close
    server.receive_data(out)
    assert server.data_to_send() == [b""]  # then the server closes TCP first (RFC 6455 §7.1.1)
    server.receive_eof()
    assert server.closed


# Messages a client may send, each as (kind, payload, fragment sizes); pings may come between.
_messages = st.lists(
    st.tuples(
        st.sampled_from(["text", "binary", "ping"]),
        st.binary(max_size=300) | st.text(max_size=100).map(str.encode),
        st.lists(st.integers(1, 50), max_size=3),
    ),
    max_size=8,
)


def _client_stream(messages: list[tuple[str, bytes, list[int]]]) -> tuple[bytes, list[Any]]:
    client = ClientProtocol(CLIENT)
    expected: list[Any] = []
    for kind, raw, cuts in messages:
        if kind == "ping":
            client.send_ping(raw[:125])
            continue
        payload = raw.decode("utf-8", "replace").encode() if kind == "text" else raw
        pieces, rest = [], payload
        for cut in cuts:
            pieces.append(rest[:cut])
            rest = rest[cut:]
        pieces.append(rest)
        send = client.send_text if kind == "text" else client.send_binary
        send(pieces[0], fin=len(pieces) == 1)
        for i, piece in enumerate(pieces[1:], 2):
            client.send_continuation(piece, fin=i == len(pieces))
        expected.append(payload.decode() if kind == "text" else payload)
    return client_bytes(client), expected


@settings(max_examples=150, deadline=None)
@given(_messages, st.lists(st.integers(1, 40), max_size=20))
def test_any_split_of_the_input_gives_the_same_messages(
    messages: list[tuple[str, bytes, list[int]]], splits: list[int]
) -> None:
    # The short path cuts frames itself and hands the rest to the library whole: wherever the
    # reads end (even right after a frame's first two bytes), the messages are the same.
    data, expected = _client_stream(messages)
    server = WSConnection(options(), None)
    got: list[Any] = []
    pos = 0
    for size in splits:
        got += server.receive_data(data[pos : pos + size])
        pos += size
    got += server.receive_data(data[pos:])
    assert got == expected
    assert server.open


def test_unmasked_frames_fail_with_1002_and_oversized_ones_at_once_with_1009() -> None:
    server = WSConnection(options(), None)
    assert server.receive_data(b"\x81\x02hi") == []  # RFC 6455 §5.1: clients must mask
    [close] = server_frames(server)
    assert struct.unpack("!H", close.data[:2])[0] == 1002
    server = WSConnection(options(ws_max_message_size=1000), None)
    # a 2 GiB frame is refused on its header, before any of its payload is buffered
    assert server.receive_data(b"\x82\xff" + (1 << 31).to_bytes(8) + b"mask") == []
    [close] = server_frames(server)
    assert struct.unpack("!H", close.data[:2])[0] == 1009


# --- the HTTP/1.1 hand-over -------------------------------------------------------------------

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
NEXT = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"


def test_a_websocket_handshake_holds_what_follows_it() -> None:
    conn = h1()
    [event] = conn.receive_data(HANDSHAKE + b"\x81\x80frame")
    assert isinstance(event, Request) and event.upgrade == b"websocket"
    assert conn.upgrade_held == event.stream_id
    assert conn.receive_data(b"more") == []  # held, not parsed as HTTP
    assert conn.take_upgrade() == b"\x81\x80framemore"
    assert conn.receive_data(NEXT) == []  # HTTP is over on this connection


def test_a_released_handshake_is_an_ordinary_request() -> None:
    conn = h1()
    conn.receive_data(HANDSHAKE + NEXT[:10])
    conn.receive_data(NEXT[10:])
    [event] = conn.release_upgrade()
    assert isinstance(event, Request) and event.raw_path == b"/next"
    assert not conn.upgrade_held


@pytest.mark.parametrize(
    "head",
    [
        HANDSHAKE.replace(b"GET", b"OPTIONS"),  # not a GET
        HANDSHAKE.replace(b"HTTP/1.1", b"HTTP/1.0"),  # not HTTP/1.1
        HANDSHAKE.replace(b"websocket", b"h2c"),  # another protocol
    ],
)
def test_other_upgrades_are_declined_in_the_protocol(head: bytes) -> None:
    conn = h1()
    events = conn.receive_data(head + NEXT)
    assert [type(e) for e in events] == [Request, Request]
    assert not conn.upgrade_held


# --- the ASGI gateway -------------------------------------------------------------------------


class FakeChannel(WebSocketChannel):
    """Records what the gateway asks of the runtime."""

    def __init__(self, incoming: list[str | bytes] | None = None) -> None:
        self.request = request((b"sec-websocket-protocol", b"p1, p2"))
        self.client = ("127.0.0.1", 5000)
        self.server = ("127.0.0.1", 8000)
        self.scheme = "ws"
        self.tls = None
        self.subprotocols = ["p1", "p2"]
        self.incoming = list(incoming or [])
        self.calls: list[tuple[Any, ...]] = []
        self.gone = False
        self.finished = False

    @property
    def disconnected(self) -> bool:
        return self.gone

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        if subprotocol not in (None, *self.subprotocols):
            raise AppError("not offered")
        self.calls.append(("accept", subprotocol, headers))

    def respond(self, status: int, headers: Headers, body: bytes, end: bool) -> None:
        if status == 999:
            raise AppError("bad status")
        self.calls.append(("respond", status, body, end))

    def respond_body(self, body: bytes, end: bool) -> None:
        self.calls.append(("respond_body", body, end))

    def receive(self) -> str | bytes | None:
        return self.incoming.pop(0) if self.incoming else None

    def wait(self) -> Awaitable[None]:
        self.gone = True
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def close_info(self) -> tuple[int, str]:
        return 4100, "peer"

    def send(self, data: str | bytes) -> None:
        self.calls.append(("send", data))

    def close(self, code: int, reason: str) -> None:
        if code == 1005:
            raise AppError("invalid close code")
        self.calls.append(("close", code, reason))

    def abort(self) -> None:
        self.calls.append(("abort",))

    def app_finished(self) -> None:
        self.finished = True


def serve(app: Any, channel: FakeChannel) -> FakeChannel:
    scope = websocket_scope(channel, "", {"db": 1})
    asyncio.run(WebSocketCycle(channel).run(app, scope))
    assert channel.finished
    return channel


def test_scope_and_a_whole_session() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        seen.append(await receive())
        await send({"type": "websocket.accept", "subprotocol": "p2", "headers": [(b"x", b"1")]})
        seen.append(await receive())
        seen.append(await receive())
        await send({"type": "websocket.send", "text": "t"})
        await send({"type": "websocket.send", "bytes": b"b"})
        seen.append(await receive())
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})

    channel = serve(app, FakeChannel(["hello", b"\x01"]))
    scope = seen[0]
    assert scope["type"] == "websocket" and scope["scheme"] == "ws"
    assert scope["subprotocols"] == ["p1", "p2"] and scope["state"] == {"db": 1}
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert seen[1:] == [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hello"},
        {"type": "websocket.receive", "bytes": b"\x01"},
        {"type": "websocket.disconnect", "code": 4100, "reason": "peer"},
    ]
    assert channel.calls == [
        ("accept", "p2", [(b"x", b"1")]),
        ("send", "t"),
        ("send", b"b"),
        ("close", 4000, "done"),
    ]


async def connect_then(scope: Any, receive: Any, send: Any, *messages: dict[str, Any]) -> None:
    assert (await receive())["type"] == "websocket.connect"
    for message in messages:
        await send(message)


def test_close_before_accept_is_403() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await connect_then(scope, receive, send, {"type": "websocket.close", "code": 1008})

    channel = serve(app, FakeChannel())
    assert channel.calls == [("respond", 403, b"Forbidden\n", True)]


def test_denial_response_in_pieces() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await connect_then(
            scope,
            receive,
            send,
            {"type": "websocket.http.response.start", "status": 404, "headers": []},
            {"type": "websocket.http.response.body", "body": b"a", "more_body": True},
            {"type": "websocket.http.response.body", "body": b"b"},
        )

    channel = serve(app, FakeChannel())
    assert channel.calls == [("respond", 404, b"a", False), ("respond_body", b"b", True)]


@pytest.mark.parametrize(
    ("messages", "calls"),
    [
        # an exception before the handshake is answered: 500
        ([], [("respond", 500, b"Internal Server Error\n", True)]),
        # after accepting: 1011
        ([{"type": "websocket.accept"}], [("accept", None, []), ("close", 1011, "")]),
        # after a denial response started but before its body: nothing was written, so 500
        (
            [{"type": "websocket.http.response.start", "status": 400}],
            [("respond", 500, b"Internal Server Error\n", True)],
        ),
        # during a denial response: the connection is dropped
        (
            [
                {"type": "websocket.http.response.start", "status": 400},
                {"type": "websocket.http.response.body", "body": b"x", "more_body": True},
            ],
            [("respond", 400, b"x", False), ("abort",)],
        ),
    ],
)
def test_app_exceptions(messages: list[dict[str, Any]], calls: list[Any]) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await connect_then(scope, receive, send, *messages)
        raise RuntimeError("boom")

    assert serve(app, FakeChannel()).calls == calls


def test_returning_closes_1000_after_accept_and_500_before() -> None:
    async def accepts(scope: Any, receive: Any, send: Any) -> None:
        await connect_then(scope, receive, send, {"type": "websocket.accept"})

    async def returns(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    assert serve(accepts, FakeChannel()).calls[-1] == ("close", 1000, "")
    assert serve(returns, FakeChannel()).calls == [
        ("respond", 500, b"Internal Server Error\n", True)
    ]


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.send", "text": "early"},  # before accepting
        {"type": "websocket.accept", "subprotocol": "nope"},  # not offered
        {"type": "websocket.http.response.start", "status": 999},  # not a status
    ],
)
def test_bad_messages_are_errors_raised_to_the_app(message: dict[str, Any]) -> None:
    raised: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            await send(message)
            if message["type"] == "websocket.http.response.start":
                await send({"type": "websocket.http.response.body", "body": b""})
        except AppError as exc:
            raised.append(exc)
            raise

    channel = serve(app, FakeChannel())
    assert raised
    assert channel.calls == [("respond", 500, b"Internal Server Error\n", True)]


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.send", "text": "a", "bytes": b"b"},
        {"type": "websocket.send"},
        {"type": "websocket.send", "text": b"not str"},
        {"type": "websocket.close", "code": 1005},
        {"type": "websocket.accept"},  # twice
    ],
)
def test_bad_messages_after_accept_close_with_1011(message: dict[str, Any]) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await connect_then(scope, receive, send, {"type": "websocket.accept"}, message)

    channel = serve(app, FakeChannel())
    assert channel.calls[-1] == ("close", 1011, "")


def test_send_after_the_client_left_raises_client_disconnected() -> None:
    raised: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await connect_then(scope, receive, send, {"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        try:
            await send({"type": "websocket.send", "text": "late"})
        except ClientDisconnected as exc:
            raised.append(exc)
            raise

    serve(app, FakeChannel())
    assert raised and isinstance(raised[0], OSError)
