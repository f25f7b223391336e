"""The WSGI bridge in memory: ``wsgi.input``, ``start_response`` and the sending rules, over a
fake :class:`BlockingStream` that records what the runtime would be asked to do."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portico.errors import AppError
from portico.gateways.stream import ClientDisconnected
from portico.gateways.wsgi import ErrorStream, FileWrapper, InputStream, run_wsgi
from portico.protocols.events import Headers, Request

BASE: dict[str, Any] = {"SCRIPT_NAME": "", "wsgi.file_wrapper": FileWrapper}


class FakeStream:
    """Hands the body over in the given pieces; records every call."""

    def __init__(self, pieces: list[bytes] = (), *, cut: bool = False, **request: Any) -> None:  # type: ignore[assignment]
        fields = {
            "stream_id": 1,
            "method": "GET",
            "raw_path": b"/",
            "query_string": b"",
            "http_version": "1.1",
            "headers": [(b"host", b"example.com:8080")],
            "has_body": bool(pieces),
            "expect_continue": False,
        }
        fields.update(request)
        self.request = Request(**fields)
        self.client = ("10.0.0.1", 4242)
        self.server: tuple[str, int | None] | None = ("127.0.0.1", 8000)
        self.scheme = "http"
        self.tls: dict[str, Any] | None = None
        self.pieces = list(pieces)
        self.cut = cut
        self.asked: list[int] = []
        self.calls: list[tuple[Any, ...]] = []
        self.disconnected = False
        self.sendfile = False

    def read_body(self, max_bytes: int) -> bytes:
        self.asked.append(max_bytes)
        if not self.pieces:
            if self.cut:
                raise ClientDisconnected("gone")
            return b""
        piece = self.pieces.pop(0)
        if len(piece) > max_bytes:
            self.pieces.insert(0, piece[max_bytes:])
            piece = piece[:max_bytes]
        return piece

    def start(
        self, status: int, headers: Headers, body: bytes, end: bool, reason: bytes = b""
    ) -> None:
        self.calls.append(("start", status, headers, body, end))
        self.reason = reason

    def write(self, body: bytes, end: bool) -> None:
        if self.disconnected:
            raise ClientDisconnected("gone")
        self.calls.append(("write", body, end))

    def send_file(
        self, status: int, headers: Headers, file: Any, length: int | None, reason: bytes = b""
    ) -> bool:
        if not self.sendfile:
            return False
        data = file.read() if length is None else file.read(length)
        self.calls.append(("send_file", status, headers, data))
        return True

    def abort(self) -> None:
        self.calls.append(("abort",))


# --- wsgi.input -----------------------------------------------------------------------------


def test_read_sizes_never_past_the_end() -> None:
    stream = InputStream(FakeStream([b"hello ", b"wor", b"ld"]))  # type: ignore[arg-type]
    assert stream.read(0) == b""
    assert stream.read(3) == b"hel"
    assert stream.read(5) == b"lo wo"  # waits across pieces until it has 5
    assert stream.read(100) == b"rld"
    assert stream.read(1) == b""
    assert stream.read() == b""


def test_read_all_and_prefetched_body() -> None:
    fake = FakeStream([b"b", b"c"])
    stream = InputStream(fake, b"a")  # type: ignore[arg-type]
    assert stream.read() == b"abc"
    fake = FakeStream()
    stream = InputStream(fake, b"whole", eof=True)  # type: ignore[arg-type]
    assert stream.read(-1) == b"whole"
    assert stream.read(None) == b""
    assert fake.asked == []  # a body handed over whole costs no further read


def test_readline_limits_and_iteration() -> None:
    fake = FakeStream([b"one\ntw", b"o\nthree long line\n", b"last"])
    stream = InputStream(fake)  # type: ignore[arg-type]
    assert stream.readline() == b"one\n"
    assert stream.readline(2) == b"tw"
    assert stream.readline(10) == b"o\n"
    assert stream.readline(5) == b"three"
    assert stream.readline() == b" long line\n"
    assert list(stream) == [b"last"]
    assert stream.readline() == b""
    assert all(size > 0 for size in fake.asked)


def test_readline_asks_no_more_than_the_limit() -> None:
    fake = FakeStream([b"x" * 1000])
    stream = InputStream(fake)  # type: ignore[arg-type]
    assert stream.readline(10) == b"x" * 10
    assert fake.asked == [10]


def test_readlines_hint() -> None:
    stream = InputStream(FakeStream([b"a\nb\nc\nd\n"]))  # type: ignore[arg-type]
    assert stream.readlines(3) == [b"a\n", b"b\n"]
    assert stream.readlines() == [b"c\n", b"d\n"]


def test_a_cut_body_raises() -> None:
    stream = InputStream(FakeStream([b"abc"], cut=True))  # type: ignore[arg-type]
    with pytest.raises(ClientDisconnected):
        stream.read(10)


@given(
    st.lists(st.binary(min_size=1, max_size=20), max_size=8),
    st.lists(st.integers(min_value=-1, max_value=25), min_size=1, max_size=30),
    st.booleans(),
)
def test_any_mix_of_reads_returns_the_body_in_order(
    pieces: list[bytes], sizes: list[int], lines: bool
) -> None:
    body = b"".join(pieces)
    stream = InputStream(FakeStream(pieces))  # type: ignore[arg-type]
    got = b""
    for size in sizes:
        part = stream.readline(size) if lines else stream.read(size)
        if size >= 0:
            assert len(part) <= size
        got += part
    got += stream.read()
    assert got == body


# --- responses ------------------------------------------------------------------------------


def serve(app: Any, fake: FakeStream | None = None, root_path: str = "") -> FakeStream:
    fake = fake or FakeStream()
    run_wsgi(app, fake, BASE, root_path)  # type: ignore[arg-type]
    return fake


def test_a_list_is_one_call_with_the_end() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello ", b"world"]

    assert serve(app).calls == [
        ("start", 200, [(b"Content-Type", b"text/plain")], b"hello world", True)
    ]


def test_content_length_ends_with_the_last_byte() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "5")])
        yield b""
        yield b"hel"
        yield b"lo"

    calls = serve(app).calls
    assert calls == [
        ("start", 200, [(b"Content-Length", b"5")], b"hel", False),
        ("write", b"lo", True),
    ]


def test_a_list_that_contradicts_its_content_length_is_a_500() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        return [b"short"]

    assert serve(app).calls[0][:2] == ("start", 500)
    assert serve(app, FakeStream(method="HEAD")).calls[0][:2] == ("start", 200)


def test_a_generator_may_start_the_response_lazily() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        yield b""
        start_response("200 OK", [])
        yield b"late"

    assert serve(app).calls == [("start", 200, [], b"late", False), ("write", b"", True)]


def test_generator_is_streamed_then_ended() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("201 Created", [])
        yield b"a"
        yield b"b"

    assert serve(app).calls == [
        ("start", 201, [], b"a", False),
        ("write", b"b", False),
        ("write", b"", True),
    ]


def test_empty_body() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("204 No Content", [])
        return []

    assert serve(app).calls == [("start", 204, [], b"", True)]


def test_start_response_errors() -> None:
    cases: list[tuple[str, Any]] = [
        ("200", []),
        ("OK 200", []),
        ("99 Low", []),
        ("200 OK\r\nX: y", []),
        ("200 OK", ("not", "a list")),
        ("200 OK", [("X-Bad", "a\nb")]),
        ("200 OK", [("Bad Name", "v")]),
        ("200 OK", [("X-Latin", "\u20ac")]),
        ("200 OK", [(b"X-Bytes", b"v")]),
    ]
    for status, headers in cases:
        errors: list[BaseException] = []

        def app(
            environ: dict[str, Any],
            start_response: Any,
            status: str = status,
            headers: Any = headers,
            errors: list[BaseException] = errors,
        ) -> list[bytes]:
            try:
                start_response(status, headers)
            except AppError as exc:
                errors.append(exc)
                raise
            return [b"never"]

        fake = serve(app)
        assert errors, (status, headers)
        assert fake.calls[0][:2] == ("start", 500)


def test_start_response_twice_without_exc_info() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return []

    assert serve(app).calls[0][:2] == ("start", 500)


def test_exc_info_replaces_a_response_not_yet_sent() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-First", "1")])
        try:
            raise KeyError("x")
        except KeyError:
            start_response("502 Bad Gateway", [], sys.exc_info())
        return [b"oops"]

    assert serve(app).calls == [("start", 502, [], b"oops", True)]


def test_exc_info_after_the_head_reraises() -> None:
    raised: list[BaseException] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        try:
            raise KeyError("late")
        except KeyError:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except KeyError as exc:
                raised.append(exc)
                raise

    calls = serve(app).calls
    assert raised
    assert calls == [("start", 200, [], b"partial", False), ("abort",)]


def test_close_is_always_called() -> None:
    closed: list[str] = []

    class Body:
        def __init__(self, fail: bool) -> None:
            self.fail = fail

        def __iter__(self) -> Iterator[bytes]:
            yield b"x"
            if self.fail:
                raise RuntimeError("fail")
            yield b"y"

        def close(self) -> None:
            closed.append("fail" if self.fail else "ok")

    for fail in (False, True):

        def app(environ: dict[str, Any], start_response: Any) -> Body:
            start_response("200 OK", [])
            return Body(fail)  # noqa: B023

        serve(app)
    fake = FakeStream()
    fake.disconnected = True

    def gone(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body(False)

    calls = serve(gone, fake).calls
    assert calls == [("start", 200, [], b"x", False)]  # stopped at the first write that failed
    assert closed == ["ok", "fail", "ok"]


def test_write_callable_and_bytes_only() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"w")
        return [b"r"]

    assert serve(app).calls == [
        ("start", 200, [], b"w", False),
        ("write", b"r", False),
        ("write", b"", True),
    ]

    def text(environ: dict[str, Any], start_response: Any) -> list[str]:
        start_response("200 OK", [])
        return ["not bytes"]

    assert serve(text).calls[0][:2] == ("start", 500)


def test_file_wrapper_is_sent_in_large_blocks() -> None:
    data = b"0123456789" * 100_000

    def app(environ: dict[str, Any], start_response: Any) -> FileWrapper:
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return environ["wsgi.file_wrapper"](io.BytesIO(data), 100)

    calls = serve(app).calls
    assert b"".join(call[-2] for call in calls) == data
    assert len(calls) <= 5
    assert calls[-1][-1] is True
    fake = FakeStream()
    fake.sendfile = True
    assert serve(app, fake).calls == [
        ("send_file", 200, [(b"Content-Length", str(len(data)).encode())], data)
    ]
    fake = FakeStream(method="HEAD")
    fake.sendfile = True
    assert "send_file" not in [call[0] for call in serve(app, fake).calls]  # HEAD: no body
    wrapper = FileWrapper(io.BytesIO(b"abcde"), 2)
    assert list(wrapper) == [b"ab", b"cd", b"e"]


def test_error_stream_logs_lines(caplog: pytest.LogCaptureFixture) -> None:
    errors = ErrorStream()
    with caplog.at_level(logging.ERROR, logger="portico.error"):
        errors.write("one\ntw")
        errors.writelines(["o\n", "three"])
        errors.flush()
    assert [record.getMessage() for record in caplog.records] == ["one", "two", "three"]
    with pytest.raises(TypeError):
        errors.write(b"bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "reason"),
    [("200 OK", b""), ("200 Fine", b"Fine"), ("404 ", b""), ("201 Cr\xe9\xe9", b"Cr\xe9\xe9")],
)
def test_the_apps_own_reason_phrase_is_kept(status: str, reason: bytes) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status, [("Content-Length", "2")])
        return [b"ok"]

    fake = serve(app, FakeStream())
    assert fake.reason == reason  # empty: the standard phrase, from the protocol's cache


def test_the_base_environ_holds_every_per_request_key_and_a_unix_peer_has_no_port() -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    from portico.gateways.wsgi import base_environ  # noqa: PLC0415

    base = base_environ(SimpleNamespace(root_path="", multiprocess=False))
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(dict(environ))
        start_response("200 OK", [])
        return [b""]

    tcp = FakeStream()
    unix = FakeStream()
    unix.client = None  # type: ignore[assignment]
    run_wsgi(app, tcp, base, "")
    run_wsgi(app, unix, base, "")
    # no placeholder of the shared base is left over: every per-request key got its value
    assert seen[0]["REMOTE_ADDR"] == "10.0.0.1" and seen[0]["REMOTE_PORT"] == "4242"
    assert seen[0]["SERVER_NAME"] == "example.com" and seen[0]["SERVER_PORT"] == "8080"
    assert {key for key, value in seen[0].items() if value == ""} == {"QUERY_STRING", "SCRIPT_NAME"}
    assert seen[1]["REMOTE_ADDR"] == "" and "REMOTE_PORT" not in seen[1]
    assert "REMOTE_PORT" in base  # the shared base is untouched
