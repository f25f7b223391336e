"""The FastCGI protocol core (``protocols.fastcgi``): a corpus of record streams fed whole, byte by
byte and in random splits; keep-alive, abort and management records; the response serializer; and a
real nginx (``fastcgi_pass``, with and without ``fastcgi_keep_conn``) in front of it."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import itertools
import socket
import struct
import threading
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
from portico.protocols.fastcgi import Aborted, FastCGIConnection, Reply
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

BEGIN, ABORT, END, PARAMS, STDIN, STDOUT, STDERR, DATA, GET_VALUES, VALUES_RESULT, UNKNOWN = range(
    1, 12
)

#: the limits a default server has (the settings table's defaults)
LIMITS: Final = build_limits(Config()).fastcgi


def new_conn(**limits: int) -> FastCGIConnection:
    """A connection with the default limits, some of them changed."""
    return FastCGIConnection(dataclasses.replace(LIMITS, **limits))


# ------------------------------------------------------------------------- building records


def record(rtype: int, content: bytes = b"", rid: int = 1, pad: int = 0, version: int = 1) -> bytes:
    return struct.pack(">BBHHBx", version, rtype, rid, len(content), pad) + content + b"\0" * pad


def length(n: int) -> bytes:
    return bytes((n,)) if n < 0x80 else struct.pack(">I", n | 0x80000000)


def pairs(items: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(length(len(k)) + length(len(v)) + k + v for k, v in items)


def begin(rid: int = 1, role: int = 1, keep: bool = True) -> bytes:
    return record(BEGIN, struct.pack(">HB5x", role, 1 if keep else 0), rid)


#: what Debian's fastcgi_params make nginx 1.22 send for ``GET /hello?x=1`` (order kept)
NGINX_GET = [
    (b"QUERY_STRING", b"x=1"),
    (b"REQUEST_METHOD", b"GET"),
    (b"CONTENT_TYPE", b""),
    (b"CONTENT_LENGTH", b""),
    (b"SCRIPT_NAME", b"/hello"),
    (b"REQUEST_URI", b"/hello?x=1"),
    (b"DOCUMENT_URI", b"/hello"),
    (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"REQUEST_SCHEME", b"http"),
    (b"GATEWAY_INTERFACE", b"CGI/1.1"),
    (b"SERVER_SOFTWARE", b"nginx/1.22.1"),
    (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"REMOTE_PORT", b"40312"),
    (b"REMOTE_USER", b""),
    (b"SERVER_ADDR", b"127.0.0.1"),
    (b"SERVER_PORT", b"8080"),
    (b"SERVER_NAME", b"example.test"),
    (b"REDIRECT_STATUS", b"200"),
    (b"HTTP_HOST", b"example.test"),
    (b"HTTP_ACCEPT", b"*/*"),
]


def nginx_vars(**changes: bytes | None) -> list[tuple[bytes, bytes]]:
    """NGINX_GET with some variables changed (``None`` drops one); new ones are appended."""
    rest = {k.encode(): v for k, v in changes.items()}
    out = []
    for key, value in NGINX_GET:
        new = rest.pop(key, value)
        if new is not None:
            out.append((key, new))
    return out + [(k, v) for k, v in rest.items() if v is not None]


def request(
    items: list[tuple[bytes, bytes]] | None = None,
    body: bytes | None = None,
    *,
    rid: int = 1,
    keep: bool = True,
    stdin: list[bytes] | None = None,
    params_cut: int = 0,
) -> bytes:
    """A whole request as nginx writes it: BEGIN, PARAMS (+ the empty one), STDIN (+ the empty
    one). ``body`` sets CONTENT_LENGTH; ``stdin`` gives the STDIN pieces as they are cut."""
    items = nginx_vars() if items is None else items
    if body is not None:
        size = str(len(body)).encode()
        items = [(k, size if k == b"CONTENT_LENGTH" else v) for k, v in items]
    block = pairs(items)
    cuts = [block[:params_cut], block[params_cut:]] if params_cut else [block]
    out = begin(rid, keep=keep) + b"".join(record(PARAMS, c, rid, pad=-len(c) % 8) for c in cuts)
    out += record(PARAMS, b"", rid)
    for piece in stdin if stdin is not None else [body or b""]:
        if piece:
            out += record(STDIN, piece, rid, pad=-len(piece) % 8)
    return out + record(STDIN, b"", rid)


def head(items: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """BEGIN and the PARAMS of a request whose body is ``body`` (the STDIN records to come)."""
    whole = request(items, body)
    return whole[: whole.index(record(PARAMS, b"")) + 8]


def post(body: bytes, **changes: bytes | None) -> list[tuple[bytes, bytes]]:
    values: dict[str, bytes | None] = {
        "REQUEST_METHOD": b"POST",
        "CONTENT_TYPE": b"text/plain",
        "HTTP_CONTENT_LENGTH": str(len(body)).encode(),
    }
    return nginx_vars(**{**values, **changes})


def get_values(*names: bytes) -> bytes:
    return record(GET_VALUES, pairs([(n, b"") for n in names]), rid=0)


def end_request_record(rid: int, status: int) -> bytes:
    return record(END, struct.pack(">IB3x", 0, status), rid)


# ------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    #: the event kinds, in order (Body pieces joined)
    kinds: tuple[str, ...]
    #: Request fields to check (of the first Request); for an invalid case {"status": ...}
    expect: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    body: bytes = b""
    eof: bool = False

    def make(self) -> FastCGIConnection:
        return new_conn(**self.limits)


REQUEST_ONLY = ("Origin", "Request")
WITH_BODY = ("Origin", "Request", "Body", "EndOfBody")
HELLO = b"hello=world&" * 10
LONG = b"v" * 300

VALID = [
    Case(
        "nginx-get",
        request(),
        REQUEST_ONLY,
        {
            "method": "GET",
            "raw_path": b"/hello",
            "query_string": b"x=1",
            "http_version": "1.1",
            "has_body": False,
            "headers": [(b"host", b"example.test"), (b"accept", b"*/*")],
        },
    ),
    Case(
        "nginx-post",
        request(post(HELLO), HELLO, stdin=[HELLO[:50], HELLO[50:]]),
        WITH_BODY,
        {
            "method": "POST",
            "has_body": True,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", b"120"),
                (b"host", b"example.test"),
                (b"accept", b"*/*"),
            ],
        },
        body=HELLO,
    ),
    Case(
        "params-split-mid-pair-long-value",
        request([*nginx_vars(), (b"HTTP_X_LONG", LONG)], params_cut=101),
        REQUEST_ONLY,
        {"headers": [(b"host", b"example.test"), (b"accept", b"*/*"), (b"x-long", LONG)]},
    ),
    Case(
        "long-name",
        request([*nginx_vars(), (b"HTTP_" + b"N" * 200, b"1")]),
        REQUEST_ONLY,
        {"headers": [(b"host", b"example.test"), (b"accept", b"*/*"), (b"n" * 200, b"1")]},
    ),
    Case(
        "body-of-unknown-length",
        request(post(b"", CONTENT_LENGTH=b""), stdin=[b"abc", b"defg"]),
        WITH_BODY,
        {
            "has_body": True,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"host", b"example.test"),
                (b"accept", b"*/*"),
            ],
        },
        body=b"abcdefg",
    ),
    Case(
        "content-length-zero",
        request(nginx_vars(CONTENT_LENGTH=b"0")),
        REQUEST_ONLY,
        {"has_body": False},
    ),
    Case(
        "get-values-first",
        get_values(b"FCGI_MAX_CONNS", b"FCGI_MPXS_CONNS", b"FCGI_UNKNOWN") + request(),
        ("Reply", *REQUEST_ONLY),
    ),
    Case("get-values-empty", get_values(), ("Reply",)),
    Case("unknown-management-type", record(42, b"xyz", rid=0), ("Reply",)),
    Case(
        "management-mid-request",
        begin() + get_values(b"FCGI_MAX_REQS") + request()[16:],
        ("Reply", *REQUEST_ONLY),
    ),
    Case(
        "abort-in-stdin",
        request(post(HELLO), HELLO)[: -len(HELLO) - 16]
        + record(STDIN, HELLO[:60])
        + record(ABORT)
        + record(STDIN, HELLO[60:])  # on its way before the web server aborted: skipped
        + record(STDIN),
        ("Origin", "Request", "Body", "Aborted"),
        {"method": "POST"},
        body=HELLO[:60],
    ),
    Case(
        "abort-after-input",
        request() + record(ABORT) + record(ABORT),
        ("Origin", "Request", "Aborted"),
    ),
    Case(
        "abort-in-params",
        begin() + record(PARAMS, pairs(NGINX_GET)) + record(ABORT) + request(rid=2),
        ("Reply", *REQUEST_ONLY),
    ),
    Case(
        "abort-in-params-then-stragglers-ignored",
        begin()
        + record(PARAMS, pairs(NGINX_GET))
        + record(ABORT)
        + record(PARAMS, b"")
        + record(STDIN, b"")
        + request(),
        ("Reply", *REQUEST_ONLY),
    ),
    Case("abort-when-idle", record(ABORT, rid=7) + request(), REQUEST_ONLY),
    Case(
        "unknown-role-then-a-request",
        begin(role=2)
        + record(PARAMS, pairs(NGINX_GET))
        + record(PARAMS)
        + record(STDIN)
        + request(),
        ("Reply", *REQUEST_ONLY),
    ),
    Case("unknown-role-closes", begin(role=3, keep=False) + request(), ("Reply",)),
    Case(
        "big-padding",
        begin() + record(PARAMS, pairs(NGINX_GET), pad=255) + record(PARAMS) + record(STDIN, pad=9),
        REQUEST_ONLY,
    ),
    Case("head", request(nginx_vars(REQUEST_METHOD=b"HEAD")), REQUEST_ONLY, {"method": "HEAD"}),
    Case("eof-after-request", request(), REQUEST_ONLY, eof=True),
    Case("eof-while-idle", b"", (), eof=True),
    Case(
        "no-request-uri",
        request(nginx_vars(REQUEST_URI=None, DOCUMENT_URI=b"/a b")),
        REQUEST_ONLY,
        {"raw_path": b"/a%20b", "query_string": b"x=1"},
    ),
]

INVALID = [
    Case("version-2", record(BEGIN, b"\0\1\1\0\0\0\0\0", version=2), (), {"status": 400}),
    Case("params-before-begin", record(PARAMS, pairs(NGINX_GET)), (), {"status": 400}),
    Case(
        "stdin-before-params-end",
        begin() + record(PARAMS, pairs(NGINX_GET)) + record(STDIN, b"x"),
        (),
        {"status": 400},
    ),
    Case("second-begin", begin() + begin(), (), {"status": 400}),
    Case(
        "begin-while-active",
        request() + begin(rid=2),
        ("Origin", "Request", "Reply"),
        {"status": 400},
    ),
    Case("record-for-another-id", begin() + record(PARAMS, b"", rid=2), (), {"status": 400}),
    Case("data-record", request()[:-8] + record(DATA, b"x"), (), {"status": 400}),
    Case("unknown-app-type", begin() + record(20, b"x"), (), {"status": 400}),
    Case("stdout-from-web-server", begin() + record(STDOUT, b"x"), (), {"status": 400}),
    Case("begin-too-short", record(BEGIN, b"\0\1\1\0\0\0\0"), (), {"status": 400}),
    Case("params-over-limit", request(), (), {"status": 431}, limits={"max_params_size": 200}),
    Case("too-many-params", request(), (), {"status": 431}, limits={"max_param_count": 10}),
    Case(
        "pair-length-cut",
        begin() + record(PARAMS, b"\x05\x80\x00") + record(PARAMS),
        (),
        {"status": 400},
    ),
    Case(
        "pair-value-past-end",
        begin() + record(PARAMS, b"\x01\x09ab") + record(PARAMS),
        (),
        {"status": 400},
    ),
    Case(
        "pair-no-value-length",
        begin() + record(PARAMS, b"\x01") + record(PARAMS),
        (),
        {"status": 400},
    ),
    Case(
        "stdin-longer-than-length",
        request(post(b"abc"), b"abc", stdin=[b"abc", b"ZQXJ"]),
        ("Origin", "Request", "Body"),
        {"status": 400},
        body=b"abc",
    ),
    Case(
        "stdin-shorter-than-length",
        request(post(b"abcd"), b"abcd", stdin=[b"abc"]),
        ("Origin", "Request", "Body"),
        {"status": 400},
        body=b"abc",
    ),
    Case(
        "length-over-limit",
        request(post(b"abcdef"), b"abcdef"),
        (),
        {"status": 413},
        limits={"max_body_size": 5},
    ),
    Case(
        "unknown-length-over-limit",
        request(post(b"", CONTENT_LENGTH=b""), stdin=[b"abc", b"def"]),
        ("Origin", "Request", "Body"),
        {"status": 413},
        limits={"max_body_size": 5},
        body=b"abc",
    ),
    Case(
        "get-values-too-large",
        record(GET_VALUES, b"\x01\x00A" * 100, rid=0),
        (),
        {"status": 400},
        limits={"max_management_size": 64},
    ),
    Case("get-values-cut", record(GET_VALUES, b"\x05\x00AB", rid=0), (), {"status": 400}),
    Case(
        "eof-in-stdin",
        request(post(b"abc"), b"abc")[:-8],
        ("Origin", "Request", "Body"),
        {"status": 400},
        body=b"abc",
        eof=True,
    ),
    Case("no-method", request(nginx_vars(REQUEST_METHOD=None)), (), {"status": 400}),
    Case("bad-version", request(nginx_vars(SERVER_PROTOCOL=b"HTTP/0.9")), (), {"status": 505}),
    Case("bad-address", request(nginx_vars(SERVER_ADDR=b"localhostZQXJ")), (), {"status": 400}),
    Case("bad-header-value", request([*NGINX_GET, (b"HTTP_X", b"\r\nZQXJ")]), (), {"status": 400}),
    Case(
        "stdin-for-ended-request-of-other-id",
        request() + record(STDIN, b"x", rid=3),
        ("Origin", "Request"),
        {"status": 400},
    ),
]
CASES = VALID + INVALID
MARKER = "ZQXJ"  # planted in bad input: an error detail must never quote it


def check_case(case: Case, events: list[tuple[Any, ...]]) -> None:
    kinds = tuple(e[0] for e in events)
    body = b"".join(e[2] for e in events if e[0] == "Body")
    assert body == case.body
    if "status" in case.expect:
        error = error_of(events)
        assert error is not None, events
        assert error[0] == case.expect["status"]
        assert MARKER not in error[1] and error[1].isascii()
        assert kinds[:-1] == case.kinds
        return
    assert error_of(events) is None, events
    assert kinds == case.kinds
    requests = [Request(*e[1:]) for e in events if e[0] == "Request"]
    for name, value in case.expect.items():
        assert getattr(requests[0], name) == value, name


def test_corpus_is_broad() -> None:
    assert len(VALID) >= 20 and len(INVALID) >= 25
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


# ------------------------------------------------------------------------- reading our output


def read_records(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, request id, content) of each record; every byte must belong to a record."""
    out = []
    pos = 0
    while pos < len(data):
        version, rtype, rid, size, pad = struct.unpack_from(">BBHHBx", data, pos)
        assert version == 1
        out.append((rtype, rid, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + pad
        assert pos <= len(data)
    return out


def response_of(chunks: list[bytes], rid: int = 1) -> tuple[bytes, bool]:
    """The STDOUT stream of ``chunks`` and whether END_REQUEST(REQUEST_COMPLETE) ended it."""
    stdout = b""
    ended = False
    for rtype, got_rid, content in read_records(b"".join(chunks)):
        assert got_rid == rid and not ended
        assert len(content) <= 65535
        if rtype == STDOUT:
            stdout += content
        else:
            assert rtype == END and content == struct.pack(">IB3x", 0, 0)
            ended = True
    return stdout, ended


def started(data: bytes | None = None, **limits: int) -> tuple[FastCGIConnection, list[Any]]:
    conn = new_conn(**limits)
    return conn, list(conn.receive_data(request() if data is None else data))


# ------------------------------------------------------------------------- input, one by one


def test_origin_from_nginx_params() -> None:
    _, events = started()
    origin = events[0]
    assert isinstance(origin, Origin)
    assert origin.client == ("127.0.0.1", 40312)
    assert origin.server == ("127.0.0.1", 8080) and origin.server_name == "example.test"
    # fastcgi_params send SCRIPT_NAME alone: the whole path, not a mount prefix
    assert (origin.script_name, origin.path_info, origin.root_path) == ("/hello", None, "")
    assert origin.remote_user is None
    assert [k for k, _ in origin.extra] == [
        b"DOCUMENT_ROOT",
        b"GATEWAY_INTERFACE",
        b"SERVER_SOFTWARE",
        b"REDIRECT_STATUS",
    ]


def test_get_values_answers_what_was_asked() -> None:
    conn = new_conn(max_connections=77)
    (reply,) = conn.receive_data(
        get_values(b"FCGI_MAX_CONNS", b"FCGI_OTHER", b"FCGI_MPXS_CONNS", b"FCGI_MAX_REQS")
    )
    assert isinstance(reply, Reply) and not reply.close
    ((rtype, rid, content),) = read_records(reply.data)
    assert (rtype, rid) == (VALUES_RESULT, 0)
    assert content == pairs(
        [(b"FCGI_MAX_CONNS", b"77"), (b"FCGI_MPXS_CONNS", b"0"), (b"FCGI_MAX_REQS", b"77")]
    )


def test_unknown_management_type_answer() -> None:
    (reply,) = new_conn().receive_data(record(200, b"abc", rid=0))
    assert read_records(reply.data) == [(UNKNOWN, 0, bytes((200, 0, 0, 0, 0, 0, 0, 0)))]


@pytest.mark.parametrize("keep", [True, False])
def test_unknown_role_is_refused(keep: bool) -> None:
    conn = new_conn()
    (reply,) = conn.receive_data(begin(rid=5, role=2, keep=keep))
    assert reply.data == end_request_record(5, 3) and reply.close is not keep
    assert conn.receive_data(record(PARAMS, pairs(NGINX_GET), rid=5) + record(STDIN, rid=5)) == []


def test_multiplexing_is_refused_with_cant_mpx_conn() -> None:
    conn, _ = started()
    events = conn.receive_data(begin(rid=2))
    assert events[0] == Reply(end_request_record(2, 1), False)
    assert isinstance(events[1], StreamError) and events[1].stream_id == 1


def test_request_waits_for_stdin_when_the_length_is_unknown() -> None:
    conn = new_conn()
    data = request(post(b"", CONTENT_LENGTH=b""), stdin=[b"abc"])
    head, stdin = data.split(record(PARAMS, b""))
    assert conn.receive_data(head + record(PARAMS, b"")) == []
    events = conn.receive_data(stdin)
    assert [type(e) for e in events] == [Origin, Request, Body, EndOfBody]
    assert events[1].has_body


def test_params_over_the_limit_fail_at_the_record_header() -> None:
    conn = new_conn(max_params_size=100)
    (error,) = conn.receive_data(begin() + record(PARAMS, b"x" * 200)[:8])
    assert isinstance(error, StreamError) and error.status == 431
    assert conn.receive_data(b"x" * 200) == []


def test_body_is_streamed_as_it_arrives() -> None:
    conn = new_conn()
    data = request(post(b"0123456789"), b"0123456789")
    events = conn.receive_data(data[:-18])
    assert [type(e) for e in events] == [Origin, Request, Body]
    assert events[-1].data == b"012345"
    assert conn.receive_data(data[-18:]) == [Body(1, b"6789"), EndOfBody(1, [])]


# ------------------------------------------------------------------------- output


def test_response_records() -> None:
    conn, _ = started()
    out = conn.response_start(200, [(b"Content-Type", b"text/plain")], b"hello", date=b"today")
    assert len(out) == 1  # one buffer: one write
    stdout, ended = response_of(out)
    assert stdout == (
        b"Status: 200 OK\r\nContent-Type: text/plain\r\ndate: today\r\n"
        b"content-length: 5\r\n\r\nhello"
    )
    assert ended and conn.keep_alive


def test_response_streamed_in_records_of_at_most_65535_bytes() -> None:
    conn, _ = started()
    first = conn.response_start(200, [], b"a" * 70_000, end=False)
    rest = conn.response_body(b"b" * 200_000)
    last = conn.response_end([(b"x-trailer", b"dropped")])
    stdout, ended = response_of(first + rest + last)
    assert stdout == b"Status: 200 OK\r\n\r\n" + b"a" * 70_000 + b"b" * 200_000
    assert ended
    assert b"b" * 65535 in rest  # large pieces are handed on, not joined to their headers


def test_keep_alive_serves_requests_one_after_another() -> None:
    conn = new_conn()
    for stream_id in (1, 2, 3):
        events = conn.receive_data(request(post(b"abc"), b"abc"))
        assert [type(e) for e in events] == [Origin, Request, Body, EndOfBody]
        assert {e.stream_id for e in events} == {stream_id}
        conn.response_start(200, [], b"ok")
        assert conn.keep_alive


def test_without_keep_conn_the_connection_closes() -> None:
    conn, _ = started(request(keep=False))
    conn.response_start(200, [], b"ok")
    assert not conn.keep_alive
    assert conn.receive_data(request()) == []


def test_answering_before_the_body_ended_closes() -> None:
    conn, _ = started(head(post(b"abcdef"), b"abcdef") + record(STDIN, b"abc"))
    stdout, ended = response_of(conn.response_start(413, [], b"too big"))
    assert ended and stdout.startswith(b"Status: 413 ")
    assert not conn.keep_alive


def test_abort_ends_the_request() -> None:
    conn, _ = started(request(post(b"abc"), b"abc"))
    conn.response_start(200, [], b"partial", end=False)
    assert conn.receive_data(record(ABORT)) == [Aborted(1)]
    stdout, ended = response_of(conn.abort_response())
    assert ended and stdout == b""
    assert conn.keep_alive  # the input was complete: the connection can go on
    assert [type(e) for e in conn.receive_data(request())] == [Origin, Request]
    assert conn.abort_response() == []  # nothing was aborted


def test_abort_while_the_body_comes_closes() -> None:
    conn, _ = started(head(post(b"abcdef"), b"abcdef") + record(STDIN, b"abc"))
    assert conn.receive_data(record(ABORT)) == [Aborted(1)]
    # what was already on its way is skipped
    assert conn.receive_data(record(STDIN, b"def") + record(STDIN) + record(ABORT)) == []
    assert read_records(b"".join(conn.abort_response())) == [(END, 1, struct.pack(">IB3x", 0, 0))]
    assert not conn.keep_alive


def test_error_response() -> None:
    conn = new_conn(max_params_size=10)
    (error,) = conn.receive_data(request())
    stdout, ended = response_of([conn.error_response(error.status, error.detail)])
    body = b"431 Request Header Fields Too Large\nFastCGI params larger than the limit\n"
    assert stdout == (
        b"Status: 431 Request Header Fields Too Large\r\n"
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    assert ended and not conn.keep_alive
    assert new_conn().error_response(400, "no request") == b""
    conn, _ = started()
    conn.response_start(200, [], b"", end=False)
    assert conn.error_response(400, "late") == b""


@pytest.mark.parametrize(("method", "status"), [(b"HEAD", 200), (b"GET", 304), (b"GET", 204)])
def test_response_without_body(method: bytes, status: int) -> None:
    conn, _ = started(request(nginx_vars(REQUEST_METHOD=method)))
    out = conn.response_start(status, [], b"" if status == 204 else b"body", end=False)
    out += conn.response_body(b"more", end=True)
    stdout, ended = response_of(out)
    assert stdout.endswith(b"\r\n\r\n") and ended


def test_response_misuse() -> None:
    with pytest.raises(AppError):
        new_conn().response_start(200, [])
    conn, _ = started()
    with pytest.raises(AppError):
        conn.response_start(200, [(b"content-length", b"3")], b"ab")
    assert not conn.response_started
    conn.response_start(200, [], b"")
    with pytest.raises(AppError):
        conn.response_body(b"late")


# ------------------------------------------------------------------------- behind nginx


@dataclass
class Seen:
    """One request as the upstream got it."""

    connection: int
    raw: bytearray = field(default_factory=bytearray)
    events: list[Any] = field(default_factory=list)
    body: hashlib._Hash = field(default_factory=hashlib.sha256)
    body_size: int = 0
    body_pieces: int = 0
    keep_alive: bool = False

    @property
    def origin(self) -> Origin:
        return self.events[0]

    @property
    def request(self) -> Request:
        return self.events[1]


Respond = Callable[[FastCGIConnection, Seen], Iterator[bytes | memoryview]]


@dataclass
class Side:
    """What the upstream does now; read at each request, since nginx keeps connections from
    one test to the next."""

    upstream: Upstream
    seen: list[Seen] = field(default_factory=list)
    respond: Respond | None = None
    ids: Iterator[int] = field(default_factory=itertools.count)
    #: connections busy with a request (not waiting for nginx's next one)
    busy: set[int] = field(default_factory=set)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def _busy(self, connection: int, busy: bool) -> None:
        with self.changed:
            if busy:
                self.busy.add(connection)
            else:
                self.busy.discard(connection)
            self.changed.notify_all()

    def settle(self) -> None:
        """Wait until every connection waits for nginx or has ended."""
        with self.changed:
            assert self.changed.wait_for(lambda: not self.busy, 20), "upstream still busy"

    def handle(self, sock: socket.socket) -> None:
        connection = next(self.ids)
        self._busy(connection, True)
        try:
            self._serve(sock, connection)
        finally:
            self._busy(connection, False)

    def _serve(self, sock: socket.socket, connection: int) -> None:
        conn = new_conn()
        while True:
            seen = Seen(connection)
            complete = False
            while not complete:
                if not seen.raw:  # between requests: nginx may keep the connection for long
                    self._busy(connection, False)
                    sock.settimeout(None)
                data = sock.recv(1 << 16)
                sock.settimeout(20)
                self._busy(connection, True)
                if not data:
                    assert not seen.raw, "nginx closed in the middle of a request"
                    assert conn.receive_eof() == []
                    return
                if len(seen.raw) < 1 << 20:
                    seen.raw += data
                for event in conn.receive_data(data):
                    if isinstance(event, Reply):
                        sock.sendall(event.data)
                    elif isinstance(event, Body):
                        seen.body.update(event.data)
                        seen.body_size += len(event.data)
                        seen.body_pieces += 1
                    else:
                        assert not isinstance(event, StreamError), event
                        seen.events.append(event)
                    complete = isinstance(event, EndOfBody) or (
                        isinstance(event, Request) and not event.has_body
                    )
            assert self.respond is not None
            self.seen.append(seen)
            try:
                for chunk in self.respond(conn, seen):
                    sock.sendall(chunk)
            except Abandon:
                reset(sock)
                return
            seen.keep_alive = conn.keep_alive  # read it after settle()
            if not conn.keep_alive:
                return


@pytest.fixture(scope="module")
def nginx_fastcgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Nginx, Side]]:
    def block(upstream: Upstream) -> str:
        params = f"include {PARAMS_DIR}/fastcgi_params;"
        return f"""
    upstream keep {{ server 127.0.0.1:{upstream.port}; keepalive 8; }}
    server {{
        LISTEN;
        server_name example.test;
        location / {{ {params} fastcgi_pass keep; fastcgi_keep_conn on; }}
        location /stream/ {{
            {params} fastcgi_pass keep; fastcgi_keep_conn on;
            fastcgi_buffering off; fastcgi_request_buffering off;
        }}
        location /close/ {{ {params} fastcgi_pass 127.0.0.1:{upstream.port}; }}
    }}"""

    if not Path("/etc/nginx/fastcgi_params").is_file():
        pytest.skip("nginx's fastcgi_params is missing")
    with nginx_with(tmp_path_factory.mktemp("nginx-fastcgi"), block) as (server, upstream):
        side = Side(upstream)
        upstream.handler = side.handle
        yield server, side


@pytest.fixture
def gateway(nginx_fastcgi: tuple[Nginx, Side]) -> Iterator[tuple[Nginx, Side]]:
    server, side = nginx_fastcgi
    side.upstream.errors.clear()
    side.seen.clear()
    yield server, side
    side.settle()
    if side.upstream.errors:
        raise side.upstream.errors[0]
    assert "[alert]" not in server.log and "[crit]" not in server.log


def hello(conn: FastCGIConnection, seen: Seen) -> Iterator[bytes]:
    yield from conn.response_start(200, [(b"content-type", b"text/plain")], b"hello")


@needs_nginx
def test_nginx_keep_alive_carries_requests_one_after_another(gateway: tuple[Nginx, Side]) -> None:
    server, side = gateway
    side.respond = hello
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    for i in range(4):
        client.request("GET", f"/hello?i={i}", headers={"X-Seq": str(i)})
        response = client.getresponse()
        assert (response.status, response.read()) == (200, b"hello")
        assert response.getheader("content-length") == "5"
    client.close()
    side.settle()
    assert [s.request.query_string for s in side.seen] == [b"i=0", b"i=1", b"i=2", b"i=3"]
    assert len({s.connection for s in side.seen}) == 1  # one upstream connection for all four
    assert all(s.keep_alive for s in side.seen)
    request = side.seen[0].request
    assert (request.method, request.raw_path, request.http_version) == ("GET", b"/hello", "1.1")
    assert (b"x-seq", b"0") in request.headers
    origin = side.seen[0].origin
    assert origin.client is not None and origin.client[0] == "127.0.0.1"
    assert origin.server == ("127.0.0.1", server.port)
    # the bytes nginx really sent, as a corpus entry: the same events however they are cut
    for mode in MODES:
        whole_and_split(new_conn, bytes(side.seen[0].raw), mode, "nginx")


@needs_nginx
def test_nginx_without_keep_conn_closes_after_each_request(gateway: tuple[Nginx, Side]) -> None:
    server, side = gateway
    side.respond = hello
    for _ in range(2):
        status, _, body = http_request(server.port, request_head(b"/close/x"))
        assert (status, body) == (b"HTTP/1.1 200 OK", b"hello")
    side.settle()
    assert len({s.connection for s in side.seen}) == 2
    assert not any(s.keep_alive for s in side.seen)


@needs_nginx
def test_nginx_sends_every_fastcgi_param_and_each_is_read_or_kept(
    gateway: tuple[Nginx, Side],
) -> None:
    server, side = gateway
    side.respond = hello
    http_request(server.port, request_head(b"/"))
    names = {
        line.split()[1].encode()
        for line in (PARAMS_DIR / "fastcgi_params").read_text().splitlines()
        if line.strip().startswith("fastcgi_param")
    }
    sent = set()
    params = b"".join(c for t, _, c in read_records(bytes(side.seen[0].raw)) if t == PARAMS)
    pos = 0
    while pos < len(params):
        sizes = []
        for _ in range(2):
            if params[pos] < 0x80:
                sizes.append(params[pos])
                pos += 1
            else:
                sizes.append(struct.unpack_from(">I", params, pos)[0] & 0x7FFFFFFF)
                pos += 4
        sent.add(params[pos : pos + sizes[0]])
        pos += sizes[0] + sizes[1]
    assert names - {b"HTTPS"} <= sent  # HTTPS is sent only when on (if_not_empty)
    kept = {key for key, _ in side.seen[0].origin.extra}
    assert kept == {b"DOCUMENT_ROOT", b"GATEWAY_INTERFACE", b"SERVER_SOFTWARE", b"REDIRECT_STATUS"}


@needs_nginx
def test_nginx_post_and_percent_encoded_target(gateway: tuple[Nginx, Side]) -> None:
    server, side = gateway

    def echo(conn: FastCGIConnection, seen: Seen) -> Iterator[bytes]:
        yield from conn.response_start(201, [(b"x-sha", seen.body.hexdigest().encode())], b"made")

    side.respond = echo
    payload = b"field=value&" * 1000
    head = request_head(
        b"/a%20b/%2F%C3%A9?q=%20x&y=%2F", b"Content-Length: %d\r\n" % len(payload), b"POST"
    )
    status, fields, body = http_request(server.port, head, payload)
    assert (status, body) == (b"HTTP/1.1 201 Created", b"made")
    assert fields[b"x-sha"] == hashlib.sha256(payload).hexdigest().encode()
    request = side.seen[0].request
    assert (request.raw_path, request.query_string) == (b"/a%20b/%2F%C3%A9", b"q=%20x&y=%2F")
    assert request.has_body and (b"content-length", b"%d" % len(payload)) in request.headers
    assert side.seen[0].body_size == len(payload)


@needs_nginx
@pytest.mark.parametrize("path", [b"/buffered", b"/stream/unbuffered"])
def test_nginx_streamed_and_large_responses(gateway: tuple[Nginx, Side], path: bytes) -> None:
    server, side = gateway
    parts = [b"first,", b"second," * 20_000, b"third" * 30_000]

    def stream(conn: FastCGIConnection, seen: Seen) -> Iterator[bytes]:
        yield from conn.response_start(200, [(b"content-type", b"text/plain")], b"", end=False)
        for part in parts:
            yield from conn.response_body(part)
        yield from conn.response_end()

    side.respond = stream
    status, fields, body = http_request(server.port, request_head(path))
    assert status == b"HTTP/1.1 200 OK" and body == b"".join(parts)
    assert b"content-length" not in fields


@needs_nginx
def test_nginx_accepts_status_fields_head_and_not_modified(gateway: tuple[Nginx, Side]) -> None:
    server, side = gateway

    def respond(conn: FastCGIConnection, seen: Seen) -> Iterator[bytes]:
        path = seen.request.raw_path
        status = 304 if path == b"/cached" else 418
        headers = [(b"Set-Cookie", b"a=1"), (b"X-Custom", b"yes"), (b"etag", b'"v1"')]
        yield from conn.response_start(status, headers, b"teapot", server=b"portico")

    side.respond = respond
    status, fields, body = http_request(server.port, request_head(b"/"))
    assert status.startswith(b"HTTP/1.1 418") and body == b"teapot"
    assert (fields[b"x-custom"], fields[b"set-cookie"], fields[b"server"]) == (
        b"yes",
        b"a=1",
        b"portico",
    )
    assert b"status" not in fields
    status, fields, body = http_request(server.port, request_head(b"/cached"))
    assert (status, body) == (b"HTTP/1.1 304 Not Modified", b"")
    reply = raw_reply(server.port, request_head(b"/", method=b"HEAD"))
    assert reply.startswith(b"HTTP/1.1 418") and reply.endswith(b"\r\n\r\n")
    assert b"Content-Length: 6" in reply


@needs_nginx
def test_nginx_accepts_the_error_response(gateway: tuple[Nginx, Side]) -> None:
    server, side = gateway

    def refuse(conn: FastCGIConnection, seen: Seen) -> Iterator[bytes]:
        yield conn.error_response(431, "FastCGI params larger than the limit")

    side.respond = refuse
    status, _, body = http_request(server.port, request_head(b"/"))
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert body.endswith(b"FastCGI params larger than the limit\n")
    side.settle()
    assert not side.seen[0].keep_alive


@needs_nginx
@pytest.mark.parametrize(
    ("path", "chunked"),
    [(b"/buffered", False), (b"/stream/length", False), (b"/stream/chunked", True)],
)
def test_nginx_upload_20_mib_in_pieces(
    gateway: tuple[Nginx, Side], path: bytes, chunked: bool
) -> None:
    server, side = gateway

    def digest(conn: FastCGIConnection, seen: Seen) -> Iterator[bytes]:
        yield from conn.response_start(200, [], seen.body.hexdigest().encode())

    side.respond = digest
    block = bytes(range(256)) * 256  # 64 KiB
    count = 20 * 16
    expected = hashlib.sha256(block * count).hexdigest().encode()
    if chunked:  # nginx streams it without a length: CONTENT_LENGTH is empty
        head = request_head(path, b"Transfer-Encoding: chunked\r\n", b"PUT")
        body = itertools.chain(
            (b"%x\r\n%s\r\n" % (len(block), block) for _ in range(count)), [b"0\r\n\r\n"]
        )
    else:
        head = request_head(path, b"Content-Length: %d\r\n" % (len(block) * count), b"PUT")
        body = (block for _ in range(count))
    status, _, reply = http_request(server.port, head, body)
    assert (status, reply) == (b"HTTP/1.1 200 OK", expected)
    seen = side.seen[0]
    assert seen.body_size == len(block) * count
    assert seen.body_pieces > 20  # streamed: never one buffer
    assert seen.request.has_body
    if chunked:
        assert not any(name == b"content-length" for name, _ in seen.request.headers)


@needs_nginx
@pytest.mark.parametrize("path", [b"/keep", b"/close/x"])
def test_nginx_an_abandoned_response_ends_incomplete(
    gateway: tuple[Nginx, Side], path: bytes
) -> None:
    # What the driver must do when an app fails mid-response: end the connection without
    # FCGI_END_REQUEST, by a reset. With fastcgi_keep_conn on, nginx would see a plain close
    # as premature too; without it, it would take the close for the end of the body.
    server, side = gateway

    def abandon(conn: FastCGIConnection, seen: Seen) -> Iterator[bytes]:
        yield from conn.response_start(200, [], b"partial", end=False)
        raise Abandon

    side.respond = abandon
    reply = raw_reply(server.port, request_head(path))
    assert reply.startswith(b"HTTP/1.1 200 OK") and not reply.endswith(b"0\r\n\r\n")
    side.settle()


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from([c for c in VALID if c.data]), edits=EDITS, cuts=CUTS)
def test_mutated_records_never_raise(
    case: Case, edits: list[tuple[int, int]], cuts: list[int]
) -> None:
    check_mutation(new_conn, case.data, edits, cuts)


@pytest.mark.parametrize("length", [True, False])
def test_a_large_body_is_never_held(length: bool) -> None:
    piece = record(STDIN, b"b" * 65528)
    count = 20 * 16

    def upload() -> None:
        conn = new_conn()
        size = str(count * 65528).encode() if length else b""
        items = post(b"", CONTENT_LENGTH=size)
        conn.receive_data(begin() + record(PARAMS, pairs(items)) + record(PARAMS))
        received = 0
        for _ in range(count):
            events = conn.receive_data(piece)
            received += sum(len(e.data) for e in events if isinstance(e, Body))
        events = conn.receive_data(record(STDIN))
        assert received == count * 65528 and isinstance(events[-1], EndOfBody)

    assert peak_memory_while(upload) < 1024 * 1024
