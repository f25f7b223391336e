"""Raw frames that break RFC 9113, and the known HTTP/2 attacks: each must end as the RFC says.

Frames are built with ``hyperframe`` and header blocks with ``hpack``, so the bytes come from an
implementation other than the one under test. Attack loops are bounded; each test asserts the
connection ends with the right code, or that what it holds stays bounded.
"""

from __future__ import annotations

from typing import Any

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from portico.protocols.events import StreamError
from portico.protocols.h2_errors import (
    COMPRESSION_ERROR,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    STREAM_CLOSED,
)
from portico.protocols.h2_events import CloseConnection, StreamReset
from portico.protocols.h2_frames import PREFACE
from portico.protocols.http2 import H2Connection
from tests.h2util import (
    GET,
    goaway_code,
    h2_limits,
    headers_frame,
    raw_server,
    request_headers,
    requests,
    resets,
)

POST = request_headers(b"POST")
#: a frame of an unknown type (0xFA) with 8 bytes of payload (hyperframe drops extension bodies)
_UNKNOWN = b"\x00\x00\x08\xfa\x00\x00\x00\x00\x00"


def _serialize(frame: Any) -> bytes:
    return bytes(frame.serialize())


def _data(stream_id: int, data: bytes, end_stream: bool = False) -> bytes:
    frame = DataFrame(stream_id, data)
    if end_stream:
        frame.flags.add("END_STREAM")
    return _serialize(frame)


def _window_update(stream_id: int, increment: int) -> bytes:
    return _serialize(WindowUpdateFrame(stream_id, increment))


def _closed_with(server: H2Connection, wire: bytes, code: int) -> None:
    events = server.receive_data(wire)
    assert isinstance(events[-1], CloseConnection), events
    assert events[-1].error_code == code
    assert goaway_code(server.data_to_send()) == code
    assert server.finished
    assert server.receive_data(headers_frame(99, GET)) == []  # input is over


# ------------------------------------------------------------------------ §8 malformed requests

MALFORMED = {
    "upper-case name": [*GET, (b"User-Agent", b"x")],
    "unknown pseudo-header": [*GET, (b":foo", b"x")],
    "response pseudo-header": [(b":status", b"200"), *GET],
    "pseudo-header after a regular field": [*GET[:3], (b"accept", b"*/*"), GET[3]],
    "repeated :method": [*GET, (b":method", b"GET")],
    "repeated :path": [*GET[:3], (b":path", b"/x"), GET[3]],
    "missing :method": GET[1:],
    "missing :scheme": [GET[0], *GET[2:]],
    "missing :path": [*GET[:2], GET[3]],
    "empty :path": [*GET[:2], (b":path", b""), GET[3]],
    "relative :path": [*GET[:2], (b":path", b"x"), GET[3]],
    "connection": [*GET, (b"connection", b"keep-alive")],
    "keep-alive": [*GET, (b"keep-alive", b"5")],
    "proxy-connection": [*GET, (b"proxy-connection", b"x")],
    "transfer-encoding": [*GET, (b"transfer-encoding", b"chunked")],
    "upgrade": [*GET, (b"upgrade", b"h2c")],
    "te other than trailers": [*GET, (b"te", b"gzip")],
    "leading space in a value": [*GET, (b"accept", b" x")],
    "trailing tab in a value": [*GET, (b"accept", b"x\t")],
    "NUL in a value": [*GET, (b"accept", b"a\x00b")],
    "CR in a value": [*GET, (b"accept", b"a\rb")],
    "LF in a value": [*GET, (b"accept", b"a\nb")],
    "space in a name": [*GET, (b"ac cept", b"x")],
    "empty name": [*GET, (b"", b"x")],
    "invalid content-length": [*GET, (b"content-length", b"1a")],
    "content-length without DATA": [*GET, (b"content-length", b"3")],
    "host differs from :authority": [*GET, (b"host", b"other.example")],
    "CONNECT with :path": [(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")],
    ":protocol without CONNECT": [*GET, (b":protocol", b"websocket")],
    "invalid :method": [(b":method", b"G T"), *GET[1:]],
}


@pytest.mark.parametrize("headers", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_request_is_a_stream_error(headers: list[tuple[bytes, bytes]]) -> None:
    server = raw_server()
    assert server.receive_data(headers_frame(1, headers)) == []  # the app never sees it
    out = server.data_to_send()
    assert resets(out) == {1: PROTOCOL_ERROR}
    assert not server.finished
    # the connection carries on, HPACK state included
    assert len(requests(server.receive_data(headers_frame(3, GET)))) == 1


def _open_post(server: H2Connection, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    assert len(requests(server.receive_data(headers_frame(1, POST + (extra or []), False)))) == 1


@pytest.mark.parametrize(
    "wire",
    [
        _data(1, b"toolong", True),  # more than content-length
        _data(1, b"ab", True),  # less
        _data(1, b"ab") + _data(1, b"cdef", True),
    ],
    ids=["more", "less", "sum of several"],
)
def test_content_length_must_match_the_data(wire: bytes) -> None:
    server = raw_server()
    _open_post(server, [(b"content-length", b"5")])
    events = server.receive_data(wire)
    assert events[-1] == StreamReset(1, PROTOCOL_ERROR, False)  # the app knew: it is told


@pytest.mark.parametrize(
    ("trailers", "end_stream"),
    [([(b"x-sum", b"1")], False), ([(b":path", b"/")], True), ([(b"connection", b"x")], True)],
    ids=["without END_STREAM", "pseudo-header", "connection-specific"],
)
def test_bad_trailers_reset_the_stream(trailers: list[Any], end_stream: bool) -> None:
    server = raw_server()
    _open_post(server)
    events = server.receive_data(headers_frame(1, trailers, end_stream))
    assert events == [StreamReset(1, PROTOCOL_ERROR, False)]


def test_hpack_bomb_gets_431_and_the_connection_continues() -> None:
    limits = h2_limits(max_header_list_size=8192, header_table_size=8192)
    server = raw_server(limits)
    encoder = hpack.Encoder()
    server.receive_data(headers_frame(1, [*GET, (b"x-big", b"v" * 4000)], encoder=encoder))
    frame = HeadersFrame(3, encoder.encode(GET) + b"\xbe" * 2000)  # 2000 references to x-big
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    assert server.receive_data(_serialize(frame)) == [
        StreamError(3, 431, "request header list too large")
    ]
    assert len(requests(server.receive_data(headers_frame(5, GET, encoder=encoder)))) == 1


# ------------------------------------------------------------------------ connection errors


def test_bad_preface() -> None:
    server = H2Connection(h2_limits())
    _closed_with(server, b"GET / HTTP/1.1\r\n\r\n", PROTOCOL_ERROR)


def test_preface_not_followed_by_settings() -> None:
    _closed_with(H2Connection(h2_limits()), PREFACE + _serialize(PingFrame(0)), PROTOCOL_ERROR)


def _settings(values: dict[int, int]) -> bytes:
    frame = SettingsFrame(0)
    frame.settings = values
    return _serialize(frame)


def _priority(stream_id: int, depends_on: int) -> bytes:
    return _serialize(PriorityFrame(stream_id, depends_on=depends_on))


def _headers_without_end(stream_id: int) -> bytes:
    frame = HeadersFrame(stream_id, hpack.Encoder().encode(GET))
    return _serialize(frame)


CONNECTION_ERRORS = {
    "frame above MAX_FRAME_SIZE": (_data(1, b"x" * 16385), FRAME_SIZE_ERROR),
    "DATA on stream 0": (b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", PROTOCOL_ERROR),
    "DATA on an idle stream": (_data(1, b"x"), PROTOCOL_ERROR),
    "DATA on an even (never opened) stream": (headers_frame(5, GET) + _data(2, b"x"), 1),
    "HEADERS on stream 0": (b"\x00\x00\x01\x01\x05\x00\x00\x00\x00\x82", PROTOCOL_ERROR),
    "even stream id": (headers_frame(2, GET), PROTOCOL_ERROR),
    "stream id going down": (headers_frame(5, GET) + headers_frame(3, GET), PROTOCOL_ERROR),
    "PUSH_PROMISE": (_serialize(PushPromiseFrame(1, promised_stream_id=2)), PROTOCOL_ERROR),
    "CONTINUATION without HEADERS": (
        _serialize(ContinuationFrame(1, b"\x82", flags=["END_HEADERS"])),
        PROTOCOL_ERROR,
    ),
    "frame inside a header block": (_headers_without_end(1) + _serialize(PingFrame(0)), 1),
    "CONTINUATION on another stream": (
        _headers_without_end(1) + _serialize(ContinuationFrame(3, b"", flags=["END_HEADERS"])),
        PROTOCOL_ERROR,
    ),
    "PING of 7 bytes": (b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + b"x" * 7, FRAME_SIZE_ERROR),
    "PING on a stream": (b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"x" * 8, PROTOCOL_ERROR),
    "SETTINGS ENABLE_PUSH 2": (_settings({2: 2}), PROTOCOL_ERROR),
    "SETTINGS INITIAL_WINDOW_SIZE 2^31": (_settings({4: 1 << 31}), FLOW_CONTROL_ERROR),
    "SETTINGS MAX_FRAME_SIZE too small": (_settings({5: 100}), PROTOCOL_ERROR),
    "SETTINGS of 5 bytes": (b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"x" * 5, FRAME_SIZE_ERROR),
    "SETTINGS ACK with payload": (
        b"\x00\x00\x06\x04\x01\x00\x00\x00\x00" + b"\x00" * 6,
        FRAME_SIZE_ERROR,
    ),
    "SETTINGS on a stream": (b"\x00\x00\x00\x04\x00\x00\x00\x00\x01", PROTOCOL_ERROR),
    "WINDOW_UPDATE 0 on the connection": (_window_update(0, 0), PROTOCOL_ERROR),
    "connection window overflow": (_window_update(0, 2**31 - 1), FLOW_CONTROL_ERROR),
    "WINDOW_UPDATE on an idle stream": (_window_update(1, 1), PROTOCOL_ERROR),
    "WINDOW_UPDATE of 3 bytes": (b"\x00\x00\x03\x08\x00\x00\x00\x00\x00abc", FRAME_SIZE_ERROR),
    "RST_STREAM on an idle stream": (_serialize(RstStreamFrame(1)), PROTOCOL_ERROR),
    "RST_STREAM on stream 0": (b"\x00\x00\x04\x03\x00\x00\x00\x00\x00" + b"\0" * 4, 1),
    "PRIORITY on stream 0": (b"\x00\x00\x05\x02\x00\x00\x00\x00\x00" + b"\0" * 5, 1),
    "GOAWAY on a stream": (b"\x00\x00\x08\x07\x00\x00\x00\x00\x01" + b"\0" * 8, 1),
    "bad HPACK index": (b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\xff", COMPRESSION_ERROR),
    "padding longer than the frame": (
        b"\x00\x00\x02\x00\x08\x00\x00\x00\x01\x05x",
        PROTOCOL_ERROR,
    ),
    "DATA after END_STREAM both ways": (b"", STREAM_CLOSED),  # set up in the test
}


@pytest.mark.parametrize("case", list(CONNECTION_ERRORS))
def test_connection_errors(case: str) -> None:
    wire, code = CONNECTION_ERRORS[case]
    server = raw_server()
    if case == "DATA after END_STREAM both ways":
        server.receive_data(headers_frame(1, GET))
        server.send_headers(1, 200, [], end_stream=True)
        server.data_to_send()
        wire = _data(1, b"late")
    _closed_with(server, wire, code)


def test_data_beyond_the_connection_window() -> None:
    limits = h2_limits(connection_window_size=65535, max_frame_size=70000)
    server = raw_server(limits)
    server.receive_data(_serialize(SettingsFrame(0, flags=["ACK"])))  # our 256 KiB stream window
    _open_post(server)
    _closed_with(server, _data(1, b"x" * 65536), FLOW_CONTROL_ERROR)


# ------------------------------------------------------------------------ stream errors


def _reset_code(server: H2Connection, wire: bytes) -> int:
    server.receive_data(wire)
    codes = resets(server.data_to_send())
    assert not server.finished
    (code,) = codes.values()
    return code


def test_stream_errors() -> None:
    server = raw_server()
    server.receive_data(headers_frame(1, GET))
    assert _reset_code(server, _data(1, b"x")) == STREAM_CLOSED  # half-closed (remote)
    server.receive_data(headers_frame(3, POST, False))
    assert _reset_code(server, _window_update(3, 0)) == PROTOCOL_ERROR
    server.receive_data(headers_frame(5, POST, False))
    server.receive_data(_serialize(RstStreamFrame(5)))
    assert _reset_code(server, _data(5, b"x")) == STREAM_CLOSED  # after the client's reset
    assert _reset_code(server, _priority(7, 7)) == PROTOCOL_ERROR
    server.receive_data(headers_frame(9, POST, False))
    stream_overflow = _window_update(9, 2**31 - 1 - 65535 + 1)
    assert _reset_code(server, stream_overflow) == FLOW_CONTROL_ERROR
    frame = b"\x00\x00\x04\x02\x00\x00\x00\x00\x0b" + b"\0" * 4  # PRIORITY of 4 bytes
    assert _reset_code(server, frame) == FRAME_SIZE_ERROR


def test_data_beyond_the_stream_window() -> None:
    server = raw_server(h2_limits(initial_window_size=65535, max_frame_size=65536 * 2))
    server.receive_data(_settings({}))
    _open_post(server)
    assert _reset_code(server, _data(1, b"x" * 65536)) == FLOW_CONTROL_ERROR


def test_frames_crossing_our_reset_are_ignored() -> None:
    server = raw_server()
    _open_post(server)
    server.reset_stream(1)
    server.data_to_send()
    assert server.receive_data(_data(1, b"in flight") + _window_update(1, 10)) == []
    assert server.data_to_send() == b""  # nothing answered: no RST_STREAM for a reset stream
    assert not server.finished


def test_unknown_frames_and_priority_are_ignored() -> None:
    server = raw_server()
    unknown = _UNKNOWN + b"whatever"
    assert server.receive_data(unknown + _priority(3, 0)) == []
    assert not server.finished


# ------------------------------------------------------------------------ attacks


def test_max_concurrent_streams_refuses_extra_streams() -> None:
    server = raw_server(h2_limits(max_concurrent_streams=2))
    wire = b"".join(headers_frame(i, POST, False) for i in (1, 3, 5))
    assert len(requests(server.receive_data(wire))) == 2
    assert resets(server.data_to_send()) == {5: REFUSED_STREAM}


def test_persistent_refusals_end_the_connection() -> None:
    server = raw_server(h2_limits(max_concurrent_streams=1, reset_budget=50))
    server.receive_data(headers_frame(1, POST, False))
    wire = b"".join(headers_frame(i, GET) for i in range(3, 300, 2))
    _closed_with(server, wire, ENHANCE_YOUR_CALM)


def test_rapid_reset_ends_the_connection() -> None:
    # CVE-2023-44487: open and cancel streams as fast as possible
    server = raw_server(h2_limits(reset_budget=100))
    encoder = hpack.Encoder()
    wire = b"".join(
        headers_frame(i, GET, encoder=encoder) + _serialize(RstStreamFrame(i, 8))
        for i in range(1, 2000, 2)
    )
    events = server.receive_data(wire)
    assert len(requests(events)) == 101  # the budget, then GOAWAY
    assert events[-1] == CloseConnection(ENHANCE_YOUR_CALM, "too many streams reset or refused")


def test_completed_responses_refill_the_reset_budget() -> None:
    server = raw_server(h2_limits(reset_budget=10))
    encoder = hpack.Encoder()
    for i in range(1, 400, 4):  # a browser: many responses, some cancellations
        server.receive_data(headers_frame(i, GET, encoder=encoder))
        server.send_headers(i, 200, [], end_stream=True)
        server.receive_data(headers_frame(i + 2, GET, encoder=encoder))
        server.receive_data(_serialize(RstStreamFrame(i + 2, 8)))
    assert not server.finished


def test_made_you_reset_counts_server_resets() -> None:
    # CVE-2025-8671: make the server reset streams by breaking the protocol on them
    server = raw_server(h2_limits(reset_budget=100))
    encoder = hpack.Encoder()
    wire = b"".join(
        headers_frame(i, POST, False, encoder=encoder) + _window_update(i, 0)
        for i in range(1, 2000, 2)
    )
    events = server.receive_data(wire)
    assert isinstance(events[-1], CloseConnection)
    assert events[-1].error_code == ENHANCE_YOUR_CALM
    assert len(requests(events)) <= 101


def test_continuation_flood_is_bounded_in_frames() -> None:
    # CVE-2024-27316: a header block that never ends
    server = raw_server()
    wire = _headers_without_end(1) + _serialize(ContinuationFrame(1, b"")) * 10_000
    _closed_with(server, wire, ENHANCE_YOUR_CALM)


def test_continuation_flood_is_bounded_in_bytes() -> None:
    server = raw_server(h2_limits(max_header_list_size=4096, max_continuation_frames=1000))
    wire = _headers_without_end(1) + _serialize(ContinuationFrame(1, b"\x82" * 16000)) * 5
    _closed_with(server, wire, ENHANCE_YOUR_CALM)
    assert server._block_size <= 4096 + 4096 + 16000


@pytest.mark.parametrize(
    "frame",
    [
        _serialize(PingFrame(0, b"12345678")),  # CVE-2019-9512
        _settings({}),  # CVE-2019-9515
        _priority(3, 1),  # CVE-2019-9513
        _window_update(0, 1),  # tiny updates
        _UNKNOWN + b"12345678",
    ],
    ids=["PING", "SETTINGS", "PRIORITY", "WINDOW_UPDATE", "unknown"],
)
def test_control_frame_floods_end_the_connection(frame: bytes) -> None:
    server = raw_server()
    events = []
    for _ in range(2000):
        events += server.receive_data(frame)
        server.data_to_send()
        if server.finished:
            break
    assert events[-1] == CloseConnection(ENHANCE_YOUR_CALM, "too many frames that do no work")


def test_empty_data_flood() -> None:
    # CVE-2019-9518
    server = raw_server()
    _open_post(server)
    _closed_with(server, _data(1, b"") * 2000, ENHANCE_YOUR_CALM)


def test_useful_frames_pay_for_control_frames() -> None:
    server = raw_server(h2_limits(control_frame_budget=10))
    _open_post(server)
    for _ in range(500):  # a PING between body pieces now and then is fine
        server.receive_data(_serialize(PingFrame(0, b"12345678")) + _data(1, b"chunk"))
        server.data_to_send()
    assert not server.finished


def test_replies_the_client_never_reads_are_bounded() -> None:
    limits = h2_limits(control_frame_budget=100_000, max_queued_control_bytes=4096)
    server = raw_server(limits)
    ping = _serialize(PingFrame(0, b"12345678"))
    events = []
    for _ in range(1000):  # data_to_send is never called: the driver cannot write
        events += server.receive_data(ping)
    assert events[-1] == CloseConnection(ENHANCE_YOUR_CALM, "client does not read our replies")
    assert len(server.data_to_send()) < 4096 + 200


def test_stalled_streams_are_exposed_for_the_driver_timeout() -> None:
    # CVE-2019-9511/-9517: the peer opens no window; the driver's write timeout needs to know
    server = raw_server(settings={4: 0})
    server.receive_data(headers_frame(1, GET))
    server.send_headers(1, 200, [])
    assert server.send_data(1, b"x" * 100, end_stream=True) == 0
    assert server.stalled_streams == [1]
    server.reset_stream(1)
    assert server.stalled_streams == []


def test_a_pseudo_field_seen_before_is_still_refused_late() -> None:
    # the checks cache valid fields; a pseudo-field once valid in place must not pass later
    server = raw_server()
    assert len(requests(server.receive_data(headers_frame(1, GET)))) == 1
    late = [*GET[:3], (b"accept", b"*/*"), GET[3]]
    assert server.receive_data(headers_frame(3, late)) == []
    assert resets(server.data_to_send()) == {3: PROTOCOL_ERROR}
