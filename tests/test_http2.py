"""The HTTP/2 server connection driven in memory by the ``h2`` library as a client."""

from __future__ import annotations

import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from portico.errors import AppError
from portico.protocols.events import Body, EndOfBody, Request
from portico.protocols.h2_errors import CANCEL, NO_ERROR
from portico.protocols.h2_events import CloseConnection, GoAwayReceived, StreamReset, WindowOpen
from portico.protocols.h2_frames import (
    goaway_frame,
    header_frames,
    ping_frame,
    rst_stream_frame,
    settings_frame,
    window_update_frame,
)
from portico.protocols.http2 import H2Connection
from tests.h2util import (
    GET,
    Pair,
    feed,
    frames,
    h2_limits,
    headers_frame,
    raw_server,
    request_headers,
    requests,
)

MODES = ["whole", "bytes", "random"]


def _respond(pair: Pair, stream_id: int, body: bytes = b"Hello, world!") -> None:
    pair.server.send_headers(stream_id, 200, [(b"content-type", b"text/plain")])
    assert pair.server.send_data(stream_id, body, end_stream=True) == len(body)
    pair.to_client()


@pytest.mark.parametrize("mode", MODES)
def test_get_request_and_response(mode: str) -> None:
    pair = Pair(mode=mode)
    headers = request_headers(path=b"/a/b?x=1&y", user_agent=b"test", cookie=b"a=1")
    headers.append((b"cookie", b"b=2"))
    stream_id = pair.request(headers)
    (request,) = pair.to_server()
    assert request == Request(
        stream_id=1,
        method="GET",
        raw_path=b"/a/b",
        query_string=b"x=1&y",
        http_version="2",
        headers=[(b"host", b"example.com"), (b"user-agent", b"test"), (b"cookie", b"a=1; b=2")],
        has_body=False,
        expect_continue=False,
        upgrade=None,
        scheme="https",
    )
    pair.server.send_headers(
        stream_id,
        200,
        [(b"Content-Type", b"text/plain"), (b"Connection", b"close"), (b"server", b"app")],
        date=b"Tue, 01 Dec 2026 00:00:00 GMT",
        server=b"portico",
    )
    pair.server.send_data(stream_id, b"Hello, world!", end_stream=True)
    pair.to_client()
    (response,) = pair.of_type(h2.events.ResponseReceived)
    assert response.headers == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"server", b"app"),
        (b"date", b"Tue, 01 Dec 2026 00:00:00 GMT"),
    ]
    assert b"".join(e.data for e in pair.of_type(h2.events.DataReceived)) == b"Hello, world!"
    assert pair.of_type(h2.events.StreamEnded)
    assert pair.server.active_streams == 0


@pytest.mark.parametrize("mode", MODES)
def test_body_and_trailers(mode: str) -> None:
    pair = Pair(mode=mode)
    stream_id = pair.request(request_headers(b"POST", content_length=b"11"), end_stream=False)
    pair.client.send_data(stream_id, b"hello ")
    pair.client.send_data(stream_id, b"world")
    pair.client.send_headers(stream_id, [(b"x-checksum", b"abc")], end_stream=True)
    events = pair.to_server()
    assert requests(events)[0].has_body
    assert b"".join(e.data for e in events if isinstance(e, Body)) == b"hello world"
    assert events[-1] == EndOfBody(stream_id, [(b"x-checksum", b"abc")])
    _respond(pair, stream_id)
    assert pair.of_type(h2.events.StreamEnded)


def test_many_concurrent_streams_interleaved() -> None:
    pair = Pair()
    ids = [pair.request(request_headers(b"POST"), end_stream=False) for _ in range(10)]
    for stream_id in ids:
        pair.client.send_data(stream_id, b"%d" % stream_id, end_stream=True)
    events = pair.to_server()
    assert [e.stream_id for e in events if isinstance(e, Body)] == ids
    for stream_id in reversed(ids):
        _respond(pair, stream_id, b"r%d" % stream_id)
    ended = [e.stream_id for e in pair.of_type(h2.events.StreamEnded)]
    assert ended == list(reversed(ids))


def test_upload_is_bounded_until_the_app_consumes_it() -> None:
    limits = h2_limits(initial_window_size=65535, connection_window_size=65535)
    pair = Pair(limits)
    stream_id = pair.request(request_headers(b"POST"), end_stream=False)
    pair.to_server()
    received = 0
    for _ in range(10):  # the client sends all the windows allow, and no more
        window = pair.client.local_flow_control_window(stream_id)
        if window:
            pair.client.send_data(stream_id, b"x" * min(window, 16384))
        received += sum(len(e.data) for e in pair.to_server() if isinstance(e, Body))
    assert received == 65535
    assert pair.client.local_flow_control_window(stream_id) == 0
    pair.server.acknowledge_received_data(stream_id, 40000)  # past half the window: updates
    pair.to_client()
    assert pair.client.local_flow_control_window(stream_id) == 40000


def test_small_acknowledgements_are_batched() -> None:
    pair = Pair(h2_limits(initial_window_size=65535, connection_window_size=65535))
    stream_id = pair.request(request_headers(b"POST"), end_stream=False)
    pair.client.send_data(stream_id, b"x" * 1000)
    pair.to_server()
    pair.server.acknowledge_received_data(stream_id, 1000)
    assert pair.server.data_to_send() == b""  # 1000 bytes are not worth a WINDOW_UPDATE


def test_response_respects_the_peer_windows_and_frame_size() -> None:
    pair = Pair(initial_window_size=1000)
    stream_id = pair.request()
    pair.to_server()
    pair.server.send_headers(stream_id, 200, [])
    body = b"y" * 3000
    taken = pair.server.send_data(stream_id, body, end_stream=True)
    assert taken == 1000
    assert pair.server.stalled_streams == [stream_id]
    assert pair.server.send_window(stream_id) == 0
    pair.to_client()
    pair.client.acknowledge_received_data(1000, stream_id)
    assert pair.to_server() == [WindowOpen(stream_id)]
    taken += pair.server.send_data(stream_id, body[taken:], end_stream=True)
    pair.client.increment_flow_control_window(5000, stream_id)
    assert pair.to_server() == [WindowOpen(stream_id)]
    taken += pair.server.send_data(stream_id, body[taken:], end_stream=True)
    assert taken == 3000
    pair.to_client()
    assert b"".join(e.data for e in pair.of_type(h2.events.DataReceived)) == body
    assert pair.of_type(h2.events.StreamEnded)


def test_data_frames_follow_the_peer_max_frame_size() -> None:
    pair = Pair(h2_limits(), max_frame_size=20000)
    pair.to_server()
    stream_id = pair.request()
    pair.to_server()
    pair.server.send_headers(stream_id, 200, [])
    pair.server.send_data(stream_id, b"z" * 50000, end_stream=True)
    sizes = [len(f.data) for f in frames(pair.server.data_to_send()) if isinstance(f, DataFrame)]
    assert sizes == [20000, 20000, 10000]


def test_a_large_body_is_framed_as_views_of_the_apps_bytes() -> None:
    """Framing copies nothing: each DATA frame's payload is a view of the app's buffer, handed
    out as parts for a vectored write; the parts still make the frames the client reads."""
    pair = Pair(h2_limits(), initial_window_size=1 << 20)
    pair.client.increment_flow_control_window(1 << 20)
    stream_id = pair.request()
    pair.to_server()
    pair.server.send_headers(stream_id, 200, [])
    pair.server.data_to_send()  # the head
    body = bytes(range(256)) * 400  # 100 KiB: seven 16 KiB frames
    assert pair.server.send_data(stream_id, body, end_stream=True) == len(body)
    parts = pair.server.take_output()
    views = [part for part in parts if isinstance(part, memoryview)]
    assert len(views) == 7
    assert all(view.obj is body for view in views)
    data = [f for f in frames(b"".join(parts)) if isinstance(f, DataFrame)]
    assert b"".join(f.data for f in data) == body
    assert "END_STREAM" in data[-1].flags
    assert pair.server.take_output() == []


def test_initial_window_change_moves_open_streams() -> None:
    pair = Pair(initial_window_size=100)
    stream_id = pair.request()
    pair.to_server()
    pair.server.send_headers(stream_id, 200, [])
    assert pair.server.send_data(stream_id, b"a" * 300) == 100
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 250})
    assert pair.to_server() == [WindowOpen(stream_id)]
    assert pair.server.send_window(stream_id) == 150


def test_large_response_head_uses_continuation() -> None:
    pair = Pair()
    stream_id = pair.request()
    pair.to_server()
    big = [(b"x-%d" % i, b"v" * 1000) for i in range(40)]
    pair.server.send_headers(stream_id, 200, big, end_stream=True)
    data = pair.server.data_to_send()
    assert any(isinstance(f, ContinuationFrame) for f in frames(data))
    (response,) = pair.client.receive_data(data)[:1]
    assert response.headers[1:] == big


def test_client_reset_is_reported_and_later_sends_are_dropped() -> None:
    pair = Pair()
    stream_id = pair.request()
    pair.to_server()
    pair.client.reset_stream(stream_id, CANCEL)
    assert pair.to_server() == [StreamReset(stream_id, CANCEL, True)]
    pair.server.send_headers(stream_id, 200, [])
    assert pair.server.send_data(stream_id, b"late", end_stream=True) == 4
    assert pair.server.data_to_send() == b""


def test_server_reset_stream() -> None:
    pair = Pair()
    stream_id = pair.request()
    pair.to_server()
    pair.server.reset_stream(stream_id)
    pair.to_client()
    (reset,) = pair.of_type(h2.events.StreamReset)
    assert reset.error_code == CANCEL
    assert pair.server.active_streams == 0


def test_response_completed_before_the_upload_stops_it() -> None:
    pair = Pair()
    stream_id = pair.request(request_headers(b"POST"), end_stream=False)
    pair.to_server()
    _respond(pair, stream_id, b"early")
    (reset,) = pair.of_type(h2.events.StreamReset)
    assert reset.error_code == NO_ERROR  # RFC 9113 §8.1
    late = DataFrame(stream_id, b"crossed the reset")
    assert pair.server.receive_data(late.serialize()) == []  # ignored, not punished
    assert not pair.server.finished


def test_client_goaway_then_close_once_streams_finish() -> None:
    pair = Pair()
    stream_id = pair.request()
    pair.to_server()
    pair.client.close_connection()
    assert feed(pair.server, pair.client.data_to_send(), "whole") == [GoAwayReceived(0, NO_ERROR)]
    assert not pair.server.finished
    pair.server.send_headers(stream_id, 200, [], end_stream=True)
    assert pair.server.finished


def test_graceful_close_waits_one_round_trip() -> None:
    server = raw_server()
    assert len(requests(server.receive_data(headers_frame(1, GET)))) == 1
    server.start_graceful_close()
    data = server.data_to_send()
    goaways = [f for f in frames(data) if isinstance(f, GoAwayFrame)]
    assert [g.last_stream_id for g in goaways] == [2**31 - 1]
    (ping,) = [f for f in frames(data) if isinstance(f, PingFrame)]
    # a request the client sent before it read the GOAWAY is still served
    assert len(requests(server.receive_data(headers_frame(3, GET)))) == 1
    assert server.receive_data(ping_frame(ping.opaque_data, True)) == []
    (final,) = [f for f in frames(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert (final.last_stream_id, final.error_code) == (3, NO_ERROR)
    # one sent after the client got the final GOAWAY is ignored (§6.8)
    assert server.receive_data(headers_frame(5, GET)) == []
    server.send_headers(1, 200, [], end_stream=True)
    assert not server.finished
    server.send_headers(3, 200, [], end_stream=True)
    assert server.finished


def test_graceful_close_of_an_idle_connection() -> None:
    server = raw_server()
    server.start_graceful_close()
    server.data_to_send()
    closed = server.receive_data(ping_frame(b"portico\x00", True))
    assert closed == [CloseConnection(NO_ERROR, "connection drained")]
    assert server.finished


def test_a_graceful_close_may_wait_for_the_driver_as_well() -> None:
    """The ACK may overtake requests the client had queued (nghttp2 writes control frames
    first): the driver's own grace decides when the final GOAWAY goes."""
    server = raw_server()
    server.start_graceful_close(wait_for_driver=True)
    server.data_to_send()
    assert server.receive_data(ping_frame(b"portico\x00", True)) == []
    assert server.drain_acknowledged
    assert not [f for f in frames(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert len(requests(server.receive_data(headers_frame(1, GET)))) == 1  # still accepted
    server.final_goaway()
    (final,) = [f for f in frames(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert final.last_stream_id == 1
    server.send_headers(1, 200, [], end_stream=True)
    assert server.finished


def test_head_204_and_304_carry_no_data() -> None:
    pair = Pair()
    head = pair.request(request_headers(b"HEAD"))
    get = pair.request()
    pair.to_server()
    pair.server.send_headers(head, 200, [(b"content-length", b"5")])
    assert pair.server.send_data(head, b"hello", end_stream=True) == 5
    pair.server.send_headers(get, 304, [])
    pair.server.send_data(get, b"ignored", end_stream=True)
    data = pair.server.data_to_send()
    assert all(not f.data for f in frames(data) if isinstance(f, DataFrame))
    pair.client_events += pair.client.receive_data(data)
    assert len(pair.of_type(h2.events.StreamEnded)) == 2


def test_app_errors_are_raised_before_anything_is_queued() -> None:
    pair = Pair()
    stream_id = pair.request()
    pair.to_server()
    with pytest.raises(AppError):
        pair.server.send_headers(stream_id, 200, [(b"bad name", b"x")])
    with pytest.raises(AppError):
        pair.server.send_headers(stream_id, 200, [(b"x", b"a\r\nb")])
    with pytest.raises(AppError):
        pair.server.send_data(stream_id, b"before the head")
    assert pair.server.data_to_send() == b""
    pair.server.send_headers(stream_id, 200, [(b"content-length", b"4")])
    with pytest.raises(AppError):
        pair.server.send_data(stream_id, b"too long")
    with pytest.raises(AppError):
        pair.server.send_data(stream_id, b"ab", end_stream=True)
    with pytest.raises(AppError):
        pair.server.send_headers(stream_id, 200, [])
    pair.server.send_data(stream_id, b"abcd", end_stream=True)
    with pytest.raises(AppError):
        pair.server.send_data(stream_id, b"after the end")
    pair.to_client()
    assert pair.of_type(h2.events.StreamEnded)


def test_response_trailers() -> None:
    pair = Pair()
    stream_id = pair.request()
    pair.to_server()
    pair.server.send_headers(stream_id, 200, [])
    pair.server.send_data(stream_id, b"body")
    pair.server.send_trailers(stream_id, [(b"grpc-status", b"0"), (b"connection", b"x")])
    pair.to_client()
    (trailers,) = pair.of_type(h2.events.TrailersReceived)
    assert trailers.headers == [(b"grpc-status", b"0")]


def test_extended_connect_websocket() -> None:
    pair = Pair()
    settings_changed = [
        e for e in pair.client_events if isinstance(e, h2.events.RemoteSettingsChanged)
    ]
    assert settings_changed[0].changed_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL]
    headers = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":path", b"/chat"),
        (b":authority", b"example.com"),
        (b"sec-websocket-version", b"13"),
    ]
    stream_id = pair.request(headers, end_stream=False)
    (request,) = pair.to_server()
    assert (request.method, request.upgrade, request.raw_path) == (
        "CONNECT",
        b"websocket",
        b"/chat",
    )
    assert request.has_body
    pair.server.send_headers(stream_id, 200, [])
    pair.server.send_data(stream_id, b"\x81\x02hi")
    pair.to_client()
    pair.client.send_data(stream_id, b"\x81\x82mask")
    assert pair.to_server() == [Body(stream_id, b"\x81\x82mask")]


def test_plain_connect_is_refused_with_501() -> None:
    pair = Pair()
    pair.request([(b":method", b"CONNECT"), (b":authority", b"example.com:443")], end_stream=False)
    (event,) = pair.to_server()
    assert (event.stream_id, event.status) == (1, 501)


def test_ping_is_answered_and_settings_acknowledged() -> None:
    pair = Pair()
    assert not pair.server.settings_ack_pending
    pair.client.ping(b"12345678")
    pair.to_server()
    (ack,) = pair.of_type(h2.events.PingAckReceived)
    assert ack.ping_data == b"12345678"
    pair.client.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 5})
    pair.to_server()
    assert pair.of_type(h2.events.SettingsAcknowledged)


# ------------------------------------------------------------------------ frames vs hyperframe


@given(
    pieces=st.lists(st.tuples(st.binary(max_size=300), st.integers(0, 255)), max_size=6),
    split=st.sampled_from(MODES),
)
@settings(max_examples=60, deadline=None)
def test_padded_data_frames_match_hyperframe(pieces: list[tuple[bytes, int]], split: str) -> None:
    server = raw_server()
    wire = headers_frame(1, request_headers(b"POST"), end_stream=False)
    for data, padding in pieces:
        frame = DataFrame(1, data)
        if padding:
            frame.flags.add("PADDED")
            frame.pad_length = padding
        wire += frame.serialize()
    last = DataFrame(1, b"")
    last.flags.add("END_STREAM")
    wire += last.serialize()
    events = feed(server, wire, split)
    parsed = [f.data for f in frames(wire) if isinstance(f, DataFrame)]
    assert b"".join(e.data for e in events if isinstance(e, Body)) == b"".join(parsed)
    assert events[-1] == EndOfBody(1, [])


@given(
    padding=st.integers(0, 255),
    priority=st.booleans(),
    split_at=st.integers(0, 200),
)
@settings(max_examples=60, deadline=None)
def test_headers_with_padding_priority_continuation(
    padding: int, priority: bool, split_at: int
) -> None:
    block = hpack.Encoder().encode(request_headers(user_agent=b"u" * 150))
    split_at = min(split_at, len(block))
    frame = HeadersFrame(1, block[:split_at])
    frame.flags.add("END_STREAM")
    if padding:
        frame.flags.add("PADDED")
        frame.pad_length = padding
    if priority:
        frame.flags.add("PRIORITY")
        frame.depends_on, frame.stream_weight = 0, 15
    wire = frame.serialize()
    continuation = ContinuationFrame(1, block[split_at:])
    continuation.flags.add("END_HEADERS")
    wire += continuation.serialize()
    (request,) = raw_server().receive_data(wire)
    assert request.headers[1] == (b"user-agent", b"u" * 150)


def test_frames_we_write_parse_in_hyperframe() -> None:
    wire = (
        settings_frame([(3, 100), (4, 1 << 20)])
        + ping_frame(b"abcdefgh", True)
        + goaway_frame(7, 2, b"why")
        + rst_stream_frame(5, 8)
        + window_update_frame(3, 12345)
        + b"".join(header_frames(9, b"x" * 40, True, 16))
    )
    parsed = list(frames(wire))
    assert isinstance(parsed[0], SettingsFrame)
    assert parsed[0].settings == {3: 100, 4: 1 << 20}
    assert (parsed[1].opaque_data, parsed[1].flags) == (b"abcdefgh", {"ACK"})
    assert (parsed[2].last_stream_id, parsed[2].error_code, parsed[2].additional_data) == (
        7,
        2,
        b"why",
    )
    assert (parsed[3].stream_id, parsed[3].error_code) == (5, 8)
    assert isinstance(parsed[4], WindowUpdateFrame)
    assert (parsed[4].stream_id, parsed[4].window_increment) == (3, 12345)
    assert [type(f).__name__ for f in parsed[5:]] == ["HeadersFrame"] + ["ContinuationFrame"] * 2
    assert b"".join(f.data for f in parsed[5:]) == b"x" * 40
    assert "END_HEADERS" in parsed[-1].flags and "END_STREAM" in parsed[5].flags


def test_our_preface_settings() -> None:
    (settings_out, window) = frames(H2Connection(h2_limits()).data_to_send())
    # the header-list bound is the HTTP/1.1 one: 64 KiB of fields, plus 32 for each of 100
    assert settings_out.settings == {3: 100, 6: 65536 + 3200, 4: 256 * 1024, 8: 1}
    assert window.window_increment == (1 << 20) - 65535


@pytest.mark.parametrize(
    "bad",
    [
        {"max_frame_size": 16383},
        {"max_frame_size": 1 << 24},
        {"initial_window_size": 1 << 31},
        {"connection_window_size": 1000},
        {"max_concurrent_streams": 0},
        {"reset_budget": 0},
        {"header_table_size": -1},
    ],
)
def test_limits_are_checked(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        h2_limits(**bad)


def test_limits_become_our_settings() -> None:
    limits = h2_limits(
        max_concurrent_streams=7,
        initial_window_size=65535,
        max_frame_size=32768,
        header_table_size=0,
        enable_connect_protocol=False,
        connection_window_size=65535,
    )
    (settings_out,) = frames(H2Connection(limits).data_to_send())
    assert settings_out.settings == {3: 7, 6: 65536 + 3200, 5: 32768, 1: 0}
