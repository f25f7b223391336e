"""H1Connection: the response side, connection state, and input rules the corpus cannot show."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portico.config import Config
from portico.errors import AppError
from portico.protocols.events import Body, EndOfBody, Event, Request, StreamError
from portico.protocols.http11 import H1Connection, H1Limits
from portico.runtime.limits import build_limits

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def requests(events: list[Event]) -> list[Request]:
    return [e for e in events if isinstance(e, Request)]


def errors(events: list[Event]) -> list[StreamError]:
    return [e for e in events if isinstance(e, StreamError)]


def h1_limits(**settings: int) -> H1Limits:
    """The HTTP/1.1 limits the server builds from these settings (and the defaults)."""
    return build_limits(Config(**settings)).h1  # type: ignore[arg-type]


def connection(data: bytes = GET, limits: H1Limits | None = None) -> H1Connection:
    conn = H1Connection(limits or h1_limits())
    events = conn.receive_data(data)
    assert requests(events) and not errors(events), events
    return conn


def unanswered(conn: H1Connection) -> list[int]:
    """The stream ids of the requests still owed a response, oldest first (responses go there)."""
    return [exchange.stream_id for exchange in conn._exchanges]


def head_of(chunks: list[bytes]) -> bytes:
    return b"".join(chunks).partition(b"\r\n\r\n")[0] + b"\r\n"


# ------------------------------------------------------------------------- response framing


def test_one_shot_body_gets_content_length() -> None:
    conn = connection()
    out = b"".join(conn.response_start(200, [(b"content-type", b"text/plain")], b"hello"))
    assert out == (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello")
    assert conn.keep_alive
    assert unanswered(conn) == []


def test_date_and_server_fields_only_when_the_app_sent_none() -> None:
    conn = connection()
    head = head_of(
        conn.response_start(200, [(b"Server", b"app")], b"", date=b"D", server=b"portico")
    )
    assert b"date: D\r\n" in head
    assert b"server: portico" not in head
    assert b"Server: app\r\n" in head


def test_streaming_on_http11_is_chunked() -> None:
    conn = connection()
    head = head_of(conn.response_start(200, [], end=False))
    assert b"transfer-encoding: chunked\r\n" in head
    assert b"content-length" not in head
    assert conn.response_body(b"abc") == [b"3\r\nabc\r\n"]
    assert conn.response_body(b"") == []  # an empty piece must not end the body early
    assert b"".join(conn.response_body(b"x" * 20)) == b"14\r\n" + b"x" * 20 + b"\r\n"
    assert conn.response_body(b"", end=True) == [b"0\r\n\r\n"]
    assert conn.keep_alive
    assert unanswered(conn) == []


def test_streaming_on_http10_is_close_delimited() -> None:
    conn = connection(b"GET / HTTP/1.0\r\n\r\n")
    head = head_of(conn.response_start(200, [], end=False))
    assert b"transfer-encoding" not in head
    assert b"content-length" not in head
    assert b"connection: close\r\n" in head
    assert conn.response_body(b"abc") == [b"abc"]
    assert conn.response_body(b"", end=True) == []
    assert not conn.keep_alive


def test_streaming_http10_keep_alive_with_content_length_stays_open() -> None:
    conn = connection(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head = head_of(conn.response_start(200, [(b"content-length", b"3")], end=False))
    assert b"connection: keep-alive\r\n" in head
    assert conn.response_body(b"abc", end=True) == [b"abc"]
    assert conn.keep_alive


def test_http10_without_keep_alive_closes() -> None:
    conn = connection(b"GET / HTTP/1.0\r\n\r\n")
    head = head_of(conn.response_start(200, [], b"ok"))
    assert b"connection: close\r\n" in head
    assert not conn.keep_alive


def test_head_has_no_body_but_the_get_length() -> None:
    conn = connection(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    out = b"".join(conn.response_start(200, [], b"hello"))
    assert out.endswith(b"\r\n\r\n")
    assert b"content-length: 5\r\n" in out
    assert b"hello" not in out
    assert conn.keep_alive


def test_head_with_declared_length_writes_no_body() -> None:
    conn = connection(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    head = head_of(conn.response_start(200, [(b"content-length", b"100")], end=False))
    assert b"content-length: 100\r\n" in head
    assert conn.response_body(b"x" * 100, end=True) == []
    assert unanswered(conn) == []
    assert conn.keep_alive


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    conn = connection()
    out = b"".join(conn.response_start(status, [], b""))
    assert out.endswith(b"\r\n\r\n")
    assert b"content-length" not in out
    assert b"transfer-encoding" not in out
    assert unanswered(conn) == []
    assert conn.keep_alive


def test_304_keeps_the_declared_length_without_a_body() -> None:
    conn = connection()
    head = head_of(conn.response_start(304, [(b"content-length", b"10")], end=False))
    assert b"content-length: 10\r\n" in head
    assert conn.response_body(b"", end=True) == []
    assert conn.keep_alive


def test_204_with_content_length_is_an_app_error() -> None:
    conn = connection()
    with pytest.raises(AppError):
        conn.response_start(204, [(b"content-length", b"0")], b"")


def test_body_longer_than_content_length() -> None:
    conn = connection()
    conn.response_start(200, [(b"content-length", b"3")], end=False)
    with pytest.raises(AppError):
        conn.response_body(b"too long")


def test_one_shot_body_longer_than_content_length() -> None:
    conn = connection()
    with pytest.raises(AppError):
        conn.response_start(200, [(b"content-length", b"3")], b"too long")


def test_body_shorter_than_content_length() -> None:
    conn = connection()
    conn.response_start(200, [(b"content-length", b"100")], end=False)
    conn.response_body(b"short")
    with pytest.raises(AppError):
        conn.response_body(b"", end=True)


@pytest.mark.parametrize(
    "value", [b"a\r\nset-cookie: x=1", b"a\nb", b"a\rb", b"a\x00b"], ids=["crlf", "lf", "cr", "nul"]
)
def test_header_value_with_cr_lf_nul_is_an_app_error(value: bytes) -> None:
    conn = connection()
    with pytest.raises(AppError):
        conn.response_start(200, [(b"x-evil", value)], b"")


@pytest.mark.parametrize("name", [b"", b"bad name", b"x:y", b"x\r\n", b"caf\xe9", b"a\tb"])
def test_invalid_header_name_is_an_app_error(name: bytes) -> None:
    conn = connection()
    with pytest.raises(AppError):
        conn.response_start(200, [(name, b"v")], b"")


@pytest.mark.parametrize("value", [b"-1", b"1 0", b"abc", b"0x10", b""])
def test_invalid_response_content_length(value: bytes) -> None:
    conn = connection()
    with pytest.raises(AppError):
        conn.response_start(200, [(b"content-length", value)], b"")


@pytest.mark.parametrize("repeat", [1, 2])  # the second time, every field comes from the cache
def test_checked_fields_keep_their_framing_role_when_remembered(repeat: int) -> None:
    for _ in range(repeat):
        conn = connection()
        fields = [(b"Connection", b"Close"), (b"Content-Length", b"2"), (b"X-App", b"1")]
        out = b"".join(conn.response_start(200, fields, b"ok"))
        head = head_of([out])
        # the app's Connection is replaced by the framing's own, written once; the app's
        # spelling of its other fields is kept
        assert head.lower().count(b"connection: close") == 1
        assert b"Connection: Close" not in head
        assert b"Content-Length: 2\r\n" in head and b"X-App: 1\r\n" in head
        assert not conn.keep_alive
        with pytest.raises(AppError, match="at most one Content-Length"):
            connection().response_start(200, [fields[1], (b"content-length", b"2")], b"ok")
        with pytest.raises(AppError, match="does not match"):
            connection().response_start(200, [fields[1]], b"too long")


@pytest.mark.parametrize("name", [b"HOST", b"Host", b"host", b"hOsT"])
def test_a_field_name_is_known_in_every_spelling(name: bytes) -> None:
    for _ in range(2):  # the second time from the map of spellings
        conn = H1Connection(h1_limits())
        events = conn.receive_data(b"GET / HTTP/1.1\r\n" + name + b": a.example\r\nX_Y: z\r\n\r\n")
        (request,) = requests(events)
        assert request.headers == [(b"host", b"a.example")]  # lower-cased; X_Y is dropped
        two = conn.receive_data(b"GET / HTTP/1.1\r\n" + name + b": a\r\n" + name + b": b\r\n\r\n")
        assert [e.status for e in errors(two)] == [400]  # still the Host singleton rule


def test_response_start_twice_and_body_before_start() -> None:
    conn = connection()
    with pytest.raises(AppError):
        conn.response_body(b"early")
    conn.response_start(200, [], end=False)
    with pytest.raises(AppError):
        conn.response_start(200, [], b"")


def test_trailers_are_serialized_after_the_last_chunk() -> None:
    conn = connection()
    conn.response_start(200, [(b"trailer", b"x-checksum")], end=False)
    assert conn.response_body(b"data") == [b"4\r\ndata\r\n"]
    out = b"".join(conn.response_end([(b"x-checksum", b"abc"), (b"x-more", b"1 2")]))
    assert out == b"0\r\nx-checksum: abc\r\nx-more: 1 2\r\n\r\n"
    assert unanswered(conn) == []
    assert conn.keep_alive


def test_trailer_with_crlf_is_an_app_error() -> None:
    conn = connection()
    conn.response_start(200, [], end=False)
    with pytest.raises(AppError):
        conn.response_end([(b"x-t", b"a\r\nb")])


def test_response_end_without_trailers_ends_chunked_body() -> None:
    conn = connection()
    conn.response_start(200, [], end=False)
    assert b"".join(conn.response_end()) == b"0\r\n\r\n"


# ------------------------------------------------------------------------- connection state


def test_request_connection_close_closes() -> None:
    conn = connection(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head = head_of(conn.response_start(200, [], b"ok"))
    assert b"connection: close\r\n" in head
    assert not conn.keep_alive


def test_app_connection_close_is_honoured_and_written_once() -> None:
    conn = connection()
    head = head_of(conn.response_start(200, [(b"Connection", b"close")], b"ok"))
    assert head.lower().count(b"connection:") == 1
    assert b"connection: close\r\n" in head
    assert not conn.keep_alive


def test_graceful_close_keeps_the_promise_of_a_response_under_way() -> None:
    """A shutdown that begins mid-response must not close a connection whose response head
    already said keep-alive: the client may be sending its next request; that one is answered
    with ``Connection: close``."""
    conn = connection()
    head = head_of(conn.response_start(200, [], b"", end=False))
    assert b"connection" not in head
    conn.close_after_response()
    conn.response_body(b"done", end=True)
    assert conn.keep_alive
    assert requests(conn.receive_data(GET))
    assert b"connection: close\r\n" in head_of(conn.response_start(200, [], b"ok"))
    assert not conn.keep_alive


def test_graceful_close_before_the_response_closes_after_it() -> None:
    conn = connection()
    conn.close_after_response()
    assert b"connection: close\r\n" in head_of(conn.response_start(200, [], b"ok"))
    assert not conn.keep_alive


def test_http10_keep_alive_request() -> None:
    conn = connection(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    head = head_of(conn.response_start(200, [], b"ok"))
    assert b"connection: keep-alive\r\n" in head
    assert b"content-length: 2\r\n" in head
    assert conn.keep_alive


def test_continue_only_once_and_only_if_asked() -> None:
    asked = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    conn = connection(asked)
    assert conn.continue_response() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert conn.continue_response() == b""
    conn = connection(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n")
    assert conn.continue_response() == b""


def test_no_continue_after_the_response_started() -> None:
    conn = connection(
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    )
    head = head_of(conn.response_start(413, [(b"content-length", b"2")], end=False))
    assert conn.continue_response() == b""
    conn.response_body(b"no", end=True)
    # the body was never sent: the connection cannot be reused
    assert b"connection: close\r\n" in head
    assert not conn.keep_alive


def test_pipelined_responses_go_in_order() -> None:
    conn = H1Connection(h1_limits())
    events = conn.receive_data(GET.replace(b"/ ", b"/1 ") + GET.replace(b"/ ", b"/2 "))
    assert [r.raw_path for r in requests(events)] == [b"/1", b"/2"]
    assert unanswered(conn) == [1, 2]
    conn.response_start(200, [], b"one")
    assert unanswered(conn) == [2]
    conn.response_start(200, [], end=False)
    assert unanswered(conn) == [2]
    conn.response_body(b"", end=True)
    assert unanswered(conn) == []
    assert conn.keep_alive


def test_error_after_valid_pipelined_request_comes_after_it() -> None:
    conn = H1Connection(h1_limits())
    events = conn.receive_data(GET + b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert [type(e) for e in events if not isinstance(e, EndOfBody)] == [Request, StreamError]
    assert events[-1].status == 400  # type: ignore[union-attr]
    assert conn.receive_data(GET) == []  # input after the error is ignored
    assert unanswered(conn) == [1]  # the failed request is no exchange to answer
    conn.response_start(200, [], b"first")
    assert conn.keep_alive  # the driver decides to write the error now
    error = conn.error_response(400, "bad")
    assert error.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close\r\n" in error
    head, _, body = error.partition(b"\r\n\r\n")
    assert b"content-length: %d\r\n" % len(body) in head + b"\r\n"
    assert not conn.keep_alive


def test_max_body_size_on_chunked_body_while_streaming() -> None:
    conn = H1Connection(h1_limits(max_body_size=8))
    events = conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    assert [type(e) for e in events] == [Request, Body]
    events = conn.receive_data(b"5\r\nworld\r\n")
    assert [(type(e), getattr(e, "status", None)) for e in events] == [(StreamError, 413)]
    assert conn.receive_data(b"0\r\n\r\n") == []


def test_endless_header_line_fed_one_byte_at_a_time_gets_431() -> None:
    limits = h1_limits(max_request_line=100, max_header_bytes=1000)
    bound = limits.max_request_line + limits.max_header_bytes + 4096
    conn = H1Connection(limits)
    assert conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX-Endless: ") == []
    for fed in range(1, bound + 100):
        events = conn.receive_data(b"a")
        if events:
            assert [(type(e), e.status) for e in events] == [(StreamError, 431)]  # type: ignore[union-attr]
            assert fed <= bound + 1  # the read that started the head is not counted
            break
    else:
        pytest.fail("an endless header line was buffered without bound")
    assert conn.receive_data(b"a\r\n\r\n") == []


def test_incomplete_head_at_eof_closes_quietly() -> None:
    conn = H1Connection(h1_limits())
    conn.receive_data(b"GET / HTTP/1.1\r\n")
    conn.receive_data(b"Host: a\r\n")
    assert conn.receive_eof() == []
    assert not conn.keep_alive


def test_truncated_body_at_eof_is_400() -> None:
    conn = H1Connection(h1_limits())
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab")
    events = conn.receive_eof()
    assert [(type(e), e.status) for e in events] == [(StreamError, 400)]  # type: ignore[union-attr]


# ------------------------------------------------------------------------- bugs shown by tests


@pytest.mark.parametrize("split", ["whole", "bytes"])
def test_unknown_wellformed_method_is_501_in_every_split(split: str) -> None:
    """An unknown method gets 501 (RFC 9110 §9.1) whatever the read split; so does garbage in
    the method position, which llhttp cannot tell from an unknown token before the token ends."""
    cases = [
        (b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", 501),
        (GET + b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", 501),
        (GET + b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    ]
    for data, status in cases:
        conn = H1Connection(h1_limits())
        events: list[Event] = []
        pieces = [data] if split == "whole" else [data[i : i + 1] for i in range(len(data))]
        for piece in pieces:
            events += conn.receive_data(piece)
        assert [e.status for e in errors(events)] == [status], data


def test_connect_with_origin_form_never_reaches_the_app() -> None:
    """CONNECT needs authority-form; with '/path' no Request event may come before the error."""
    conn = H1Connection(h1_limits())
    events = conn.receive_data(b"CONNECT /path HTTP/1.1\r\nHost: a\r\n\r\n")
    assert requests(events) == []
    assert [e.status for e in errors(events)] in ([400], [501])


def test_upgrade_request_body_is_never_parsed_as_a_request() -> None:
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    data = (
        b"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled)
    )
    events = H1Connection(h1_limits()).receive_data(data)
    assert [r.raw_path for r in requests(events)] in ([b"/"], [])
    paths = [r.raw_path for r in requests(events)]
    assert b"/smuggled" not in paths
    bodies = b"".join(e.data for e in events if isinstance(e, Body))
    assert errors(events) or bodies == smuggled


def test_unsupported_http_versions_get_505() -> None:
    for version in (b"1.2", b"3.0", b"2.0", b"0.9"):
        events = H1Connection(h1_limits()).receive_data(
            b"GET / HTTP/%s\r\nHost: a\r\n\r\n" % version
        )
        assert [e.status for e in errors(events)] == [505], version


def test_transfer_encoding_with_a_tab_is_refused_before_the_app_sees_it() -> None:
    """llhttp refuses a tab in Transfer-Encoding only after reporting the head; Portico refuses
    it first, so no request whose framing the two readings disagree on reaches the app."""
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    events = H1Connection(h1_limits()).receive_data(data)
    assert [e.status for e in errors(events)] == [400]
    assert not [e for e in events if isinstance(e, Request)]


# ------------------------------------------------------------------------- property


def _normalize(events: list[Event]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for event in events:
        if isinstance(event, Body):
            if out and out[-1][0] == "body":
                out[-1] = ("body", event.stream_id, out[-1][2] + event.data)  # type: ignore[operator]
            elif event.data:
                out.append(("body", event.stream_id, event.data))
        else:
            out.append((type(event).__name__, *event))
    return out


_token = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8)
_value = st.binary(max_size=12).map(
    lambda b: bytes(c for c in b if c in b"\t !#-~" or c >= 0x80).strip(b" \t")
)


@st.composite
def _request(draw: st.DrawFn) -> bytes:
    path = b"/" + draw(_token).encode()
    if draw(st.booleans()):
        path += b"?" + draw(_token).encode()
    head = [
        b"%s %s HTTP/1.1" % (draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"])), path),
        b"Host: example.com",
    ]
    for name, value in draw(st.lists(st.tuples(_token, _value), max_size=4)):
        head.append(b"x-" + name.encode() + b": " + value)
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    if framing == "none" or (framing == "length" and not body):
        return b"\r\n".join(head) + b"\r\n\r\n"
    if framing == "length":
        head.append(b"Content-Length: %d" % len(body))
        return b"\r\n".join(head) + b"\r\n\r\n" + body
    head.append(b"Transfer-Encoding: chunked")
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    out = b"\r\n".join(head) + b"\r\n\r\n"
    for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
        if end > start:
            out += b"%x\r\n%s\r\n" % (end - start, body[start:end])
    out += b"0\r\n"
    if draw(st.booleans()):
        out += b"X-Trailer: " + draw(_value) + b"\r\n"
    return out + b"\r\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_request(), min_size=1, max_size=4), st.data())
def test_any_split_of_a_pipelined_stream_gives_the_same_events(
    messages: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(messages)
    whole = H1Connection(h1_limits()).receive_data(stream)
    assert errors(whole) == []
    assert len(requests(whole)) == len(messages)
    cuts = sorted(data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=20)))
    conn = H1Connection(h1_limits())
    split: list[Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        split += conn.receive_data(stream[start:end])
    assert _normalize(split) == _normalize(whole)


# ------------------------------------------------------------------- the request-line version

_VERSION_HEADS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=HTTP/1.1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    # a leading empty line (RFC 9112 §2.2)
    b"\r\nGET / HTTP/1.0\r\nX: HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 18\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    b"GET http://a/b HTTP/1.0\r\nVia: HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
    b"PURGE /" + b"v" * 300 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_VERSION_HEADS), min_size=1, max_size=4),
    st.lists(st.integers(min_value=1, max_value=40), max_size=12),
)
def test_version_is_llhttps_however_the_bytes_are_split(
    heads: list[bytes], cuts: list[int]
) -> None:
    """The version read off the request line always equals the one llhttp parsed."""
    data = b"".join(heads)
    expected = [
        b" HTTP/1.0\r\n" in head.split(b"\r\n\r\n")[0].lstrip(b"\r\n").split(b"\r\n")[0] + b"\r\n"
        for head in heads
    ]
    conn = H1Connection(h1_limits())
    events: list[Event] = []
    at = 0
    for cut in cuts:
        events += conn.receive_data(data[at : at + cut])
        at += cut
    events += conn.receive_data(data[at:])
    assert not errors(events)
    versions = [r.http_version for r in requests(events)]
    assert versions == ["1.0" if old else "1.1" for old in expected]


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/a/b?x=1&y", b"/a/b", b"x=1&y"),
        (b"/a#frag", b"/a", b""),
        (b"/a?q#frag", b"/a", b"q"),
        (b"/?", b"/", b""),
        # absolute-form (not remembered) loses its fragment too
        (b"http://h/a#frag", b"/a", b""),
        (b"http://h/a?q=1#frag", b"/a", b"q=1"),
        (b"http://h?q#frag", b"/", b"q"),
        (b"http://h/a?q#f?g", b"/a", b"q"),
    ],
)
def test_targets_split_the_same_when_remembered(target: bytes, path: bytes, query: bytes) -> None:
    for _ in range(2):  # the second time from the cache of recent targets
        conn = H1Connection(h1_limits())
        (request,) = requests(conn.receive_data(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n"))
        assert (request.raw_path, request.query_string) == (path, query)
