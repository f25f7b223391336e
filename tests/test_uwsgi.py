"""The uwsgi protocol core (``protocols.uwsgi``): a corpus of packets fed whole, byte by byte and in
random splits; the response serializer; and a real nginx (``uwsgi_pass``) in front of it."""

from __future__ import annotations

import dataclasses
import hashlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portico.config import Config
from portico.errors import AppError
from portico.protocols.cgi_vars import Origin
from portico.protocols.events import Body, EndOfBody, Request, StreamError
from portico.protocols.uwsgi import UwsgiConnection, UwsgiLimits
from portico.runtime.limits import build_limits
from tests.gateway_feed import (
    CUTS,
    EDITS,
    MODES,
    check_mutation,
    error_of,
    peak_memory_while,
    same_when_cut,
    whole_and_split,
)
from tests.gateway_nginx import (
    PARAMS_DIR,
    Abandon,
    Nginx,
    Upstream,
    http_request,
    needs_nginx,
    nginx_with,
    raw_reply,
    request_head,
    reset,
)

#: the limits a default server has (the settings table's defaults)
LIMITS: Final = build_limits(Config()).uwsgi


def new_conn(**limits: int) -> UwsgiConnection:
    """A connection with the default limits, some of them changed."""
    return UwsgiConnection(dataclasses.replace(LIMITS, **limits))


# ------------------------------------------------------------------------- building packets


def var_block(pairs: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()
    for key, value in pairs:
        out += len(key).to_bytes(2, "little") + key + len(value).to_bytes(2, "little") + value
    return bytes(out)


def packet(
    pairs: list[tuple[bytes, bytes]], body: bytes = b"", modifier1: int = 0, modifier2: int = 0
) -> bytes:
    block = var_block(pairs)
    return (
        bytes((modifier1,)) + len(block).to_bytes(2, "little") + bytes((modifier2,)) + block + body
    )


#: what Debian's uwsgi_params make nginx 1.22 send for ``GET /hello?x=1`` (order kept)
NGINX_GET = [
    (b"QUERY_STRING", b"x=1"),
    (b"REQUEST_METHOD", b"GET"),
    (b"CONTENT_TYPE", b""),
    (b"CONTENT_LENGTH", b""),
    (b"REQUEST_URI", b"/hello?x=1"),
    (b"PATH_INFO", b"/hello"),
    (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"REQUEST_SCHEME", b"http"),
    (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"REMOTE_PORT", b"40312"),
    (b"SERVER_PORT", b"8080"),
    (b"SERVER_NAME", b"example.test"),
    (b"HTTP_HOST", b"example.test"),
    (b"HTTP_USER_AGENT", b"curl/7.88.1"),
    (b"HTTP_ACCEPT", b"*/*"),
]


def nginx_vars(**changes: bytes | None) -> list[tuple[bytes, bytes]]:
    """NGINX_GET with some variables changed (``None`` drops one); new ones are appended."""
    out = []
    rest = {k.encode(): v for k, v in changes.items()}
    for key, value in NGINX_GET:
        if key in rest:
            new = rest.pop(key)
            if new is not None:
                out.append((key, new))
        else:
            out.append((key, value))
    out += [(k, v) for k, v in rest.items() if v is not None]
    return out


def post(body: bytes, **changes: bytes | None) -> bytes:
    length = str(len(body)).encode()
    values: dict[str, bytes | None] = {
        "REQUEST_METHOD": b"POST",
        "CONTENT_LENGTH": length,
        "CONTENT_TYPE": b"application/octet-stream",
        "HTTP_CONTENT_LENGTH": length,
    }
    return packet(nginx_vars(**{**values, **changes}), body)


# ------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    #: for a valid case: Request fields to check; for an invalid one: {"status": ...}
    expect: dict[str, Any]
    limits: dict[str, int] = field(default_factory=dict)
    body: bytes = b""
    #: for an invalid case: events before the StreamError
    before: tuple[str, ...] = ()
    eof: bool = False

    def make(self) -> UwsgiConnection:
        return new_conn(**self.limits)


BIG = b"x" * 100_000
VALID = [
    Case(
        "nginx-get",
        packet(NGINX_GET),
        {
            "method": "GET",
            "raw_path": b"/hello",
            "query_string": b"x=1",
            "http_version": "1.1",
            "scheme": "http",
            "has_body": False,
            "headers": [
                (b"host", b"example.test"),
                (b"user-agent", b"curl/7.88.1"),
                (b"accept", b"*/*"),
            ],
        },
    ),
    Case(
        "nginx-post",
        post(b"hello=world"),
        {
            "method": "POST",
            "has_body": True,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", b"11"),
                (b"host", b"example.test"),
                (b"user-agent", b"curl/7.88.1"),
                (b"accept", b"*/*"),
            ],
        },
        body=b"hello=world",
    ),
    Case("large-body", post(BIG), {"has_body": True}, body=BIG),
    Case(
        "percent-encoded-target",
        packet(
            nginx_vars(REQUEST_URI=b"/a%20b/%2F%C3%A9?q=%20x&y=1#frag", PATH_INFO=b"/a b//\xc3\xa9")
        ),
        {"raw_path": b"/a%20b/%2F%C3%A9", "query_string": b"q=%20x&y=1"},
    ),
    Case(
        "asterisk",
        packet(nginx_vars(REQUEST_METHOD=b"OPTIONS", REQUEST_URI=b"*")),
        {"raw_path": b"*"},
    ),
    Case(
        "no-request-uri",
        packet(nginx_vars(REQUEST_URI=None, PATH_INFO=b"/a b/%", QUERY_STRING=b"k=%41")),
        {"raw_path": b"/a%20b/%25", "query_string": b"k=%41"},
    ),
    Case("http10", packet(nginx_vars(SERVER_PROTOCOL=b"HTTP/1.0")), {"http_version": "1.0"}),
    Case("http2", packet(nginx_vars(SERVER_PROTOCOL=b"HTTP/2.0")), {"http_version": "2"}),
    Case("https-on", packet(nginx_vars(HTTPS=b"on", REQUEST_SCHEME=b"https")), {"scheme": "https"}),
    Case("https-only", packet(nginx_vars(HTTPS=b"on", REQUEST_SCHEME=None)), {"scheme": "https"}),
    Case("no-scheme-vars", packet(nginx_vars(REQUEST_SCHEME=None)), {"scheme": "http"}),
    Case("content-length-zero", post(b""), {"has_body": False}),
    Case(
        "repeated-headers",
        packet([*NGINX_GET, (b"HTTP_X_A", b"1"), (b"HTTP_X_A", b"2")]),
        {
            "headers": [
                (b"host", b"example.test"),
                (b"user-agent", b"curl/7.88.1"),
                (b"accept", b"*/*"),
                (b"x-a", b"1"),
                (b"x-a", b"2"),
            ]
        },
    ),
    Case(
        "dropped-framing-headers",
        post(b"abc", HTTP_TRANSFER_ENCODING=b"chunked", HTTP_CONTENT_TYPE=b"text/plain"),
        {
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", b"3"),
                (b"host", b"example.test"),
                (b"user-agent", b"curl/7.88.1"),
                (b"accept", b"*/*"),
            ]
        },
        body=b"abc",
    ),
    Case("repeat-same-value", packet([*NGINX_GET, (b"SERVER_PORT", b"8080")]), {"method": "GET"}),
    Case("ipv6-and-unix", packet(nginx_vars(REMOTE_ADDR=b"::1")), {"method": "GET"}),
    Case(
        "unix-client", packet(nginx_vars(REMOTE_ADDR=b"unix:", REMOTE_PORT=b"")), {"method": "GET"}
    ),
    Case("large-header", packet([*NGINX_GET, (b"HTTP_COOKIE", b"c" * 30_000)]), {"method": "GET"}),
    Case("head", packet(nginx_vars(REQUEST_METHOD=b"HEAD")), {"method": "HEAD"}),
    Case("custom-method", packet(nginx_vars(REQUEST_METHOD=b"PURGE")), {"method": "PURGE"}),
    Case("eof-after-request", packet(NGINX_GET), {"method": "GET"}, eof=True),
]

INVALID = [
    Case("modifier1", packet(NGINX_GET, modifier1=5), {"status": 400}),
    Case("modifier2", packet(NGINX_GET, modifier2=1), {"status": 400}),
    Case("vars-over-limit", packet(NGINX_GET), {"status": 431}, limits={"max_vars_size": 100}),
    Case("too-many-vars", packet(NGINX_GET), {"status": 431}, limits={"max_var_count": 10}),
    Case("key-size-past-block", b"\x00\x05\x00\x00\x09\x00abc", {"status": 400}),
    Case("value-size-past-block", b"\x00\x07\x00\x00\x01\x00A\x09\x00bc", {"status": 400}),
    Case("lone-byte-in-block", b"\x00\x01\x00\x00\x00", {"status": 400}),
    Case("empty-block", b"\x00\x00\x00\x00", {"status": 400}),
    Case("no-method", packet(nginx_vars(REQUEST_METHOD=None)), {"status": 400}),
    Case("bad-method", packet(nginx_vars(REQUEST_METHOD=b"GE T")), {"status": 400}),
    Case("no-protocol", packet(nginx_vars(SERVER_PROTOCOL=None)), {"status": 400}),
    Case("http09", packet(nginx_vars(SERVER_PROTOCOL=b"HTTP/0.9")), {"status": 505}),
    Case("length-not-digits", post(b"ab", CONTENT_LENGTH=b"2ZQXJ"), {"status": 400}),
    Case("length-negative", post(b"", CONTENT_LENGTH=b"-1"), {"status": 400}),
    Case("length-huge", post(b"", CONTENT_LENGTH=b"9" * 40), {"status": 413}),
    Case("body-over-limit", post(b"abcdef"), {"status": 413}, limits={"max_body_size": 5}),
    Case(
        "body-longer-than-length",
        post(b"abc") + b"ZQXJ",
        {"status": 400},
        before=("Origin", "Request", "Body", "EndOfBody"),
        body=b"abc",
    ),
    Case(
        "data-after-bodyless",
        packet(NGINX_GET) + b"\x00",
        {"status": 400},
        before=("Origin", "Request"),
    ),
    Case(
        "eof-in-body",
        post(b"abc")[:-1],
        {"status": 400},
        before=("Origin", "Request", "Body"),
        body=b"ab",
        eof=True,
    ),
    Case("bad-remote-addr", packet(nginx_vars(REMOTE_ADDR=b"999.1.1.ZQXJ")), {"status": 400}),
    Case("bad-remote-port", packet(nginx_vars(REMOTE_PORT=b"4x")), {"status": 400}),
    Case("port-too-big", packet(nginx_vars(SERVER_PORT=b"70000")), {"status": 400}),
    Case("bad-host", packet(nginx_vars(HTTP_HOST=b"bad host ZQXJ")), {"status": 400}),
    Case("two-hosts", packet([*NGINX_GET, (b"HTTP_HOST", b"other")]), {"status": 400}),
    Case("bad-server-name", packet(nginx_vars(SERVER_NAME=b"a/b")), {"status": 400}),
    Case("header-name-not-token", packet([*NGINX_GET, (b"HTTP_X(Y", b"1")]), {"status": 400}),
    Case("empty-header-name", packet([*NGINX_GET, (b"HTTP_", b"1")]), {"status": 400}),
    Case("header-value-crlf", packet([*NGINX_GET, (b"HTTP_X", b"a\r\nZQXJ: 1")]), {"status": 400}),
    Case("header-value-nul", packet([*NGINX_GET, (b"HTTP_X", b"a\x00")]), {"status": 400}),
    Case("extra-value-lf", packet([*NGINX_GET, (b"MY_VAR", b"a\nb")]), {"status": 400}),
    Case("empty-var-name", packet([*NGINX_GET, (b"", b"v")]), {"status": 400}),
    Case("absolute-uri", packet(nginx_vars(REQUEST_URI=b"http://example.test/")), {"status": 400}),
    Case("space-in-uri", packet(nginx_vars(REQUEST_URI=b"/a b")), {"status": 400}),
    Case("no-path-at-all", packet(nginx_vars(REQUEST_URI=None, PATH_INFO=None)), {"status": 400}),
    Case(
        "scheme-disagree", packet(nginx_vars(HTTPS=b"on", REQUEST_SCHEME=b"http")), {"status": 400}
    ),
    Case("bad-https", packet(nginx_vars(HTTPS=b"yes")), {"status": 400}),
    Case("bad-request-scheme", packet(nginx_vars(REQUEST_SCHEME=b"ftp")), {"status": 400}),
    Case("repeat-other-value", packet([*NGINX_GET, (b"SERVER_PORT", b"81")]), {"status": 400}),
    Case("path-info-relative", packet(nginx_vars(PATH_INFO=b"x")), {"status": 400}),
    Case("script-name-relative", packet(nginx_vars(SCRIPT_NAME=b"app")), {"status": 400}),
]
CASES = VALID + INVALID
MARKER = "ZQXJ"  # planted in bad values: an error detail must never quote it


def check_case(case: Case, events: list[tuple[Any, ...]]) -> None:
    kinds = [e[0] for e in events]
    body = b"".join(e[2] for e in events if e[0] == "Body")
    assert body == case.body
    if "status" in case.expect:
        error = error_of(events)
        assert error is not None, events
        assert error[0] == case.expect["status"]
        assert MARKER not in error[1] and error[1].isascii()
        assert tuple(kinds[:-1]) == case.before
        return
    assert error_of(events) is None, events
    assert kinds[:2] == ["Origin", "Request"]
    request = Request(*events[1][1:])
    for name, value in case.expect.items():
        assert getattr(request, name) == value, name
    assert request.expect_continue is False
    assert kinds[-1] == ("EndOfBody" if request.has_body else "Request")


def test_corpus_is_broad() -> None:
    assert len(VALID) >= 20 and len(INVALID) >= 35
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_corpus(case: Case, mode: str) -> None:
    check_case(case, whole_and_split(case.make, case.data, mode, case.name, case.eof))


@settings(max_examples=15, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_corpus_random_splits(case: Case, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(1, max(1, len(case.data) - 1)), max_size=12))
    same_when_cut(case.make, case.data, cuts, case.eof)


# ------------------------------------------------------------------------- input, one by one


def parse(data: bytes, limits: UwsgiLimits | None = None) -> tuple[UwsgiConnection, list[Any]]:
    conn = UwsgiConnection(limits or LIMITS)
    return conn, list(conn.receive_data(data))


def test_origin_from_nginx_vars() -> None:
    _, events = parse(packet(nginx_vars(HTTPS=b"on", REQUEST_SCHEME=b"https")))
    origin = events[0]
    assert isinstance(origin, Origin)
    assert origin.client == ("127.0.0.1", 40312)
    assert (origin.server_name, origin.server_port, origin.server_addr) == (
        "example.test",
        8080,
        None,
    )
    assert origin.server == ("example.test", 8080)
    assert origin.scheme == "https"
    assert (origin.root_path, origin.script_name, origin.path_info) == ("", None, "/hello")
    assert origin.extra == [(b"DOCUMENT_ROOT", b"/usr/share/nginx/html")]


def test_origin_mount_prefix_needs_both_script_name_and_path_info() -> None:
    _, events = parse(packet(nginx_vars(SCRIPT_NAME=b"/app/", PATH_INFO=b"/app/x")))
    assert events[0].root_path == "/app"
    _, events = parse(packet(nginx_vars(SCRIPT_NAME=b"/app", PATH_INFO=None)))
    assert events[0].root_path == "" and events[0].script_name == "/app"


def test_origin_unix_and_ipv6_clients() -> None:
    assert parse(packet(nginx_vars(REMOTE_ADDR=b"unix:")))[1][0].client is None
    assert parse(packet(nginx_vars(REMOTE_ADDR=b"::1")))[1][0].client == ("::1", 40312)
    assert parse(packet(nginx_vars(REMOTE_PORT=None)))[1][0].client == ("127.0.0.1", 0)


def test_head_over_the_limit_fails_at_its_first_four_bytes() -> None:
    # the block is never waited for, let alone buffered
    conn = new_conn(max_vars_size=1000)
    events = conn.receive_data(b"\x00\xff\xff\x00")
    assert [type(e) for e in events] == [StreamError] and events[0].status == 431
    assert conn.receive_data(b"more") == []


def test_body_is_streamed_as_it_arrives() -> None:
    conn, events = parse(post(b"0123456789")[:-6])
    assert [type(e) for e in events] == [Origin, Request, Body]
    assert conn.receive_data(b"456") == [Body(1, b"456")]
    assert conn.receive_data(b"789") == [Body(1, b"789"), EndOfBody(1, [])]


def test_eof_before_anything_is_quiet() -> None:
    conn = new_conn()
    assert conn.receive_eof() == []
    conn = new_conn()
    assert conn.receive_data(b"\x00\x10") == []
    assert conn.receive_eof() == []


# ------------------------------------------------------------------------- output


def answered(method: bytes = b"GET") -> UwsgiConnection:
    conn, _ = parse(packet(nginx_vars(REQUEST_METHOD=method)))
    return conn


def test_response_whole_body_gets_a_content_length() -> None:
    conn = answered()
    out = conn.response_start(200, [(b"Content-Type", b"text/plain")], b"hello")
    assert out == [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 5\r\n\r\nhello"]
    assert conn.response_done and not conn.keep_alive


def test_response_streamed_body_is_close_delimited_never_chunked() -> None:
    conn = answered()
    head = b"".join(conn.response_start(200, [(b"transfer-encoding", b"chunked")], b"a", end=False))
    assert head == b"HTTP/1.1 200 OK\r\n\r\na"
    assert conn.response_body(b"bc") == [b"bc"]
    assert conn.response_end([(b"x-trailer", b"dropped")]) == []
    assert conn.response_done


def test_response_date_and_server_are_defaults() -> None:
    conn = answered()
    out = conn.response_start(204, [], date=b"Mon, 01 Jan 2024 00:00:00 GMT", server=b"portico")
    assert out == [
        b"HTTP/1.1 204 No Content\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\nserver: portico\r\n\r\n"
    ]
    conn = answered()
    out = conn.response_start(
        200, [(b"Server", b"app"), (b"Date", b"d")], b"", date=b"x", server=b"y"
    )
    assert out == [b"HTTP/1.1 200 OK\r\nServer: app\r\nDate: d\r\ncontent-length: 0\r\n\r\n"]


def test_response_app_content_length_is_kept_and_checked() -> None:
    conn = answered()
    assert conn.response_start(200, [(b"content-length", b"4")], b"ab", end=False) == [
        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab"
    ]
    with pytest.raises(AppError):
        conn.response_body(b"abc")
    assert conn.response_body(b"cd", end=True) == [b"cd"]


@pytest.mark.parametrize(
    ("headers", "body", "end"),
    [
        ([(b"content-length", b"3")], b"ab", True),
        ([(b"content-length", b"1")], b"ab", False),
        ([(b"content-length", b"x")], b"", True),
        ([(b"content-length", b"1"), (b"content-length", b"1")], b"a", True),
        ([(b"transfer-encoding", b"gzip")], b"", True),
        ([(b"bad name", b"v")], b"", True),
        ([(b"x", b"a\r\nb")], b"", True),
    ],
)
def test_response_invalid_is_an_app_error_and_commits_nothing(
    headers: list[tuple[bytes, bytes]], body: bytes, end: bool
) -> None:
    conn = answered()
    with pytest.raises(AppError):
        conn.response_start(200, headers, body, end=end)
    assert not conn.response_started
    assert conn.response_start(500, [], b"retry")[0].startswith(b"HTTP/1.1 500 ")


def test_response_short_of_its_content_length_is_an_app_error() -> None:
    conn = answered()
    conn.response_start(200, [(b"content-length", b"4")], b"ab", end=False)
    with pytest.raises(AppError):
        conn.response_end()


@pytest.mark.parametrize(("method", "status"), [(b"HEAD", 200), (b"GET", 304), (b"GET", 204)])
def test_response_without_body(method: bytes, status: int) -> None:
    conn = answered(method)
    out = b"".join(conn.response_start(status, [], b"ignored" if status != 204 else b"", end=False))
    assert out.endswith(b"\r\n\r\n")
    assert conn.response_body(b"more", end=True) == []
    conn = answered(b"HEAD")
    out = b"".join(conn.response_start(200, [], b"12345"))
    assert out == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


def test_response_204_with_content_length_is_an_app_error() -> None:
    with pytest.raises(AppError):
        answered().response_start(204, [(b"content-length", b"0")])


def test_response_large_body_is_not_copied() -> None:
    conn = answered()
    body = b"z" * 100_000
    out = conn.response_start(200, [], body)
    assert out[1] is body


def test_response_misuse() -> None:
    with pytest.raises(AppError):
        new_conn().response_start(200, [])
    conn = answered()
    with pytest.raises(AppError):
        conn.response_body(b"x")
    conn.response_start(200, [], b"")
    with pytest.raises(AppError):
        conn.response_start(200, [], b"")
    with pytest.raises(AppError):
        conn.response_body(b"x")


def test_error_response() -> None:
    conn = new_conn()
    conn.receive_data(b"\x05\x00\x00\x00")
    out = conn.error_response(400, "unsupported uwsgi packet modifiers")
    body = b"400 Bad Request\nunsupported uwsgi packet modifiers\n"
    assert out == (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    conn = answered()
    conn.response_start(200, [], b"", end=False)
    assert conn.error_response(400, "late") == b""


# ------------------------------------------------------------------------- behind nginx


@dataclass
class Seen:
    """What the upstream got on one connection."""

    raw: bytearray = field(default_factory=bytearray)
    events: list[Any] = field(default_factory=list)
    body: hashlib._Hash = field(default_factory=hashlib.sha256)
    body_size: int = 0
    body_pieces: int = 0

    @property
    def origin(self) -> Origin:
        return self.events[0]

    @property
    def request(self) -> Request:
        return self.events[1]


Respond = Callable[[UwsgiConnection, Seen], Iterator[bytes]]


def uwsgi_handler(seen: list[Seen], respond: Respond) -> Callable[[socket.socket], None]:
    def handle(sock: socket.socket) -> None:
        conn = new_conn()
        record = Seen()
        seen.append(record)
        complete = False
        while not complete:
            data = sock.recv(1 << 16)
            if len(record.raw) < 1 << 20:
                record.raw += data
            for event in conn.receive_data(data) if data else conn.receive_eof():
                if isinstance(event, Body):
                    record.body.update(event.data)
                    record.body_size += len(event.data)
                    record.body_pieces += 1
                else:
                    record.events.append(event)
                complete = isinstance(event, EndOfBody | StreamError) or (
                    isinstance(event, Request) and not event.has_body
                )
            assert data or complete, "nginx closed before the request was complete"
        try:
            for chunk in respond(conn, record):
                sock.sendall(chunk)
        except Abandon:
            reset(sock)

    return handle


@pytest.fixture(scope="module")
def nginx_uwsgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Nginx, Upstream]]:
    def block(upstream: Upstream) -> str:
        to = f"include {PARAMS_DIR}/uwsgi_params; uwsgi_pass 127.0.0.1:{upstream.port};"
        return f"""
    server {{
        LISTEN;
        server_name example.test;
        location / {{ {to} }}
        location /stream/ {{ {to} uwsgi_buffering off; uwsgi_request_buffering off; }}
    }}"""

    if not Path("/etc/nginx/uwsgi_params").is_file():
        pytest.skip("nginx's uwsgi_params is missing")
    with nginx_with(tmp_path_factory.mktemp("nginx-uwsgi"), block) as pair:
        yield pair


@pytest.fixture
def gateway(nginx_uwsgi: tuple[Nginx, Upstream]) -> Iterator[tuple[Nginx, Upstream, list[Seen]]]:
    server, upstream = nginx_uwsgi
    upstream.errors.clear()
    seen: list[Seen] = []
    yield server, upstream, seen
    upstream.check()
    assert "[alert]" not in server.log and "[crit]" not in server.log


def hello(conn: UwsgiConnection, seen: Seen) -> Iterator[bytes]:
    yield from conn.response_start(200, [(b"content-type", b"text/plain")], b"hello")


def assert_same_in_every_split(raw: bytes) -> None:
    """The bytes nginx really sent, as a corpus entry: the same events however they are cut."""
    for mode in MODES:
        whole_and_split(new_conn, raw, mode, "nginx")


@needs_nginx
def test_nginx_get(gateway: tuple[Nginx, Upstream, list[Seen]]) -> None:
    server, upstream, seen = gateway
    upstream.handler = uwsgi_handler(seen, hello)
    status, fields, body = http_request(
        server.port, request_head(b"/hello?x=1", b"User-Agent: t\r\n")
    )
    assert status == b"HTTP/1.1 200 OK"
    assert (fields[b"content-type"], fields[b"content-length"], body) == (
        b"text/plain",
        b"5",
        b"hello",
    )
    upstream.check()
    (record,) = seen
    request = record.request
    assert (request.method, request.raw_path, request.query_string) == ("GET", b"/hello", b"x=1")
    assert request.http_version == "1.1" and not request.has_body and request.scheme == "http"
    assert (b"host", b"example.test") in request.headers
    assert (b"user-agent", b"t") in request.headers
    origin = record.origin
    assert origin.client is not None and origin.client[0] == "127.0.0.1"
    assert (origin.server_name, origin.server_port) == ("example.test", server.port)
    assert_same_in_every_split(bytes(record.raw))


@needs_nginx
def test_nginx_sends_every_uwsgi_param_and_each_is_read_or_kept(
    gateway: tuple[Nginx, Upstream, list[Seen]],
) -> None:
    server, upstream, seen = gateway
    upstream.handler = uwsgi_handler(seen, hello)
    http_request(server.port, request_head(b"/"))
    upstream.check()
    names = {
        line.split()[1].encode()
        for line in (PARAMS_DIR / "uwsgi_params").read_text().splitlines()
        if line.strip().startswith("uwsgi_param")
    }
    sent = {bytes(key) for key, _ in _vars_of(bytes(seen[0].raw))}
    assert names - {b"HTTPS"} <= sent  # HTTPS is sent only when on (if_not_empty)
    kept = {key for key, _ in seen[0].origin.extra}
    assert kept == {b"DOCUMENT_ROOT"}


def _vars_of(raw: bytes) -> Iterator[tuple[bytes, bytes]]:
    size = int.from_bytes(raw[1:3], "little")
    pos, end = 4, 4 + size
    while pos < end:
        key_size = int.from_bytes(raw[pos : pos + 2], "little")
        key = raw[pos + 2 : pos + 2 + key_size]
        pos += 2 + key_size
        value_size = int.from_bytes(raw[pos : pos + 2], "little")
        yield key, raw[pos + 2 : pos + 2 + value_size]
        pos += 2 + value_size


@needs_nginx
def test_nginx_post_with_body(gateway: tuple[Nginx, Upstream, list[Seen]]) -> None:
    server, upstream, seen = gateway

    def echo(conn: UwsgiConnection, seen: Seen) -> Iterator[bytes]:
        yield from conn.response_start(201, [(b"x-sha", seen.body.hexdigest().encode())], b"made")

    upstream.handler = uwsgi_handler(seen, echo)
    payload = b"field=value&" * 100
    head = request_head(
        b"/submit",
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n" % len(payload),
        b"POST",
    )
    status, fields, body = http_request(server.port, head, payload)
    assert (status, body) == (b"HTTP/1.1 201 Created", b"made")
    assert fields[b"x-sha"] == hashlib.sha256(payload).hexdigest().encode()
    upstream.check()
    request = seen[0].request
    assert request.method == "POST" and request.has_body
    assert (b"content-type", b"application/x-www-form-urlencoded") in request.headers
    assert (b"content-length", b"%d" % len(payload)) in request.headers
    assert seen[0].body_size == len(payload)
    assert_same_in_every_split(bytes(seen[0].raw))


@needs_nginx
def test_nginx_percent_encoded_path_and_query(gateway: tuple[Nginx, Upstream, list[Seen]]) -> None:
    server, upstream, seen = gateway
    upstream.handler = uwsgi_handler(seen, hello)
    status, _, _ = http_request(server.port, request_head(b"/a%20b/%2F%C3%A9/../c?q=%20x&y=%2F"))
    assert status == b"HTTP/1.1 200 OK"
    upstream.check()
    request = seen[0].request
    # exactly as the client sent it, where nginx's PATH_INFO is decoded and normalized
    assert (request.raw_path, request.query_string) == (b"/a%20b/%2F%C3%A9/../c", b"q=%20x&y=%2F")
    assert seen[0].origin.path_info == "/a b/c"


@needs_nginx
def test_nginx_streamed_response_is_read_to_the_close(
    gateway: tuple[Nginx, Upstream, list[Seen]],
) -> None:
    server, upstream, seen = gateway
    pieces_out = [b"first,", b"second," * 1000, b"third"]

    def stream(conn: UwsgiConnection, seen: Seen) -> Iterator[bytes]:
        yield from conn.response_start(200, [(b"content-type", b"text/plain")], b"", end=False)
        for piece in pieces_out:
            yield from conn.response_body(piece)
        yield from conn.response_end()

    upstream.handler = uwsgi_handler(seen, stream)
    for path in (b"/stream/x", b"/buffered"):
        status, fields, body = http_request(server.port, request_head(path))
        assert status == b"HTTP/1.1 200 OK"
        assert body == b"".join(pieces_out)
        assert b"content-length" not in fields  # nginx chunks it to its HTTP/1.1 client


@needs_nginx
def test_nginx_accepts_status_and_fields(gateway: tuple[Nginx, Upstream, list[Seen]]) -> None:
    server, upstream, seen = gateway

    def teapot(conn: UwsgiConnection, seen: Seen) -> Iterator[bytes]:
        headers = [(b"Set-Cookie", b"a=1"), (b"X-Custom", b"yes"), (b"Content-Length", b"6")]
        yield from conn.response_start(
            418, headers, b"te", end=False, date=b"Mon, 01 Jan 2024 00:00:00 GMT", server=b"portico"
        )
        yield from conn.response_body(b"apot", end=True)

    upstream.handler = uwsgi_handler(seen, teapot)
    status, fields, body = http_request(server.port, request_head(b"/"))
    assert status.startswith(b"HTTP/1.1 418")
    assert (fields[b"x-custom"], fields[b"set-cookie"], fields[b"content-length"]) == (
        b"yes",
        b"a=1",
        b"6",
    )
    assert (fields[b"server"], fields[b"date"]) == (b"portico", b"Mon, 01 Jan 2024 00:00:00 GMT")
    assert body == b"teapot"


@needs_nginx
def test_nginx_head_and_not_modified(gateway: tuple[Nginx, Upstream, list[Seen]]) -> None:
    server, upstream, seen = gateway

    def respond(conn: UwsgiConnection, seen: Seen) -> Iterator[bytes]:
        status = 304 if seen.request.raw_path == b"/cached" else 200
        yield from conn.response_start(status, [(b"etag", b'"v1"')], b"would-be-body")

    upstream.handler = uwsgi_handler(seen, respond)
    reply = raw_reply(server.port, request_head(b"/", method=b"HEAD"))
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"\r\n\r\n")
    assert b"Content-Length: 13" in reply
    status, fields, body = http_request(server.port, request_head(b"/cached"))
    assert (status, body, fields[b"etag"]) == (b"HTTP/1.1 304 Not Modified", b"", b'"v1"')
    assert seen[0].request.method == "HEAD"


@needs_nginx
def test_nginx_accepts_the_error_response(gateway: tuple[Nginx, Upstream, list[Seen]]) -> None:
    server, upstream, seen = gateway

    def refuse(conn: UwsgiConnection, seen: Seen) -> Iterator[bytes]:
        yield conn.error_response(413, "request body larger than the limit")

    upstream.handler = uwsgi_handler(seen, refuse)
    status, _, body = http_request(server.port, request_head(b"/"))
    assert status == b"HTTP/1.1 413 Request Entity Too Large"
    assert body == b"413 Request Entity Too Large\nrequest body larger than the limit\n"


@needs_nginx
@pytest.mark.parametrize("path", [b"/buffered", b"/stream/unbuffered"])
def test_nginx_upload_20_mib_in_pieces(
    gateway: tuple[Nginx, Upstream, list[Seen]], path: bytes
) -> None:
    server, upstream, seen = gateway

    def digest(conn: UwsgiConnection, seen: Seen) -> Iterator[bytes]:
        yield from conn.response_start(200, [], seen.body.hexdigest().encode())

    upstream.handler = uwsgi_handler(seen, digest)
    block = bytes(range(256)) * 256  # 64 KiB
    size = 20 * 1024 * 1024
    expected = hashlib.sha256(block * (size // len(block))).hexdigest().encode()
    head = request_head(path, b"Content-Length: %d\r\n" % size, b"PUT")
    status, _, body = http_request(server.port, head, (block for _ in range(size // len(block))))
    assert (status, body) == (b"HTTP/1.1 200 OK", expected)
    upstream.check()
    assert seen[0].body_size == size
    assert seen[0].body_pieces > 20  # streamed: never one buffer


@needs_nginx
def test_nginx_only_a_reset_marks_an_abandoned_body_incomplete(
    gateway: tuple[Nginx, Upstream, list[Seen]],
) -> None:
    # What the driver must do when an app fails after a body without Content-Length started:
    # nginx takes a plain close for the end of the body; a reset makes it end the client's
    # response without its last chunk, so the client can tell.
    server, upstream, seen = gateway
    for abandon in (False, True):

        def partial(conn: UwsgiConnection, seen: Seen, abandon: bool = abandon) -> Iterator[bytes]:
            yield from conn.response_start(200, [], b"partial", end=False)
            if abandon:
                raise Abandon

        upstream.handler = uwsgi_handler(seen, partial)
        reply = raw_reply(server.port, request_head(b"/"))
        assert reply.startswith(b"HTTP/1.1 200 OK")
        assert reply.endswith(b"0\r\n\r\n") is not abandon
    assert "Connection reset by peer" in server.log


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(VALID), edits=EDITS, cuts=CUTS)
def test_mutated_packets_never_raise(
    case: Case, edits: list[tuple[int, int]], cuts: list[int]
) -> None:
    check_mutation(new_conn, case.data, edits, cuts)


def test_a_large_body_is_never_held() -> None:
    piece = b"b" * 65536
    size = 20 * 1024 * 1024

    def upload() -> None:
        conn = new_conn()
        received = 0
        events = conn.receive_data(post(b"", CONTENT_LENGTH=b"%d" % size))
        for _ in range(size // len(piece)):
            events = conn.receive_data(piece)
            received += sum(len(e.data) for e in events if isinstance(e, Body))
        assert received == size and isinstance(events[-1], EndOfBody)

    assert peak_memory_while(upload) < 1024 * 1024
