"""The request corpus (tests/corpus, format in its README) against H1Connection and a real server.

Every file is fed to a fresh :class:`H1Connection` whole, one byte at a time and in several seeded
random splits; the events must match the expectation and be the same in every mode. Then every
file is replayed over a socket to ``asgi_apps:echo`` and the responses are checked.
"""

from __future__ import annotations

import json
import random
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from portico.config import Config
from portico.protocols.events import Body, EndOfBody, Event, Request, StreamError
from portico.protocols.http11 import H1Connection
from portico.runtime.limits import build_limits
from tests.conftest import ServerProcess

CORPUS = Path(__file__).parent / "corpus"

# ------------------------------------------------------------------------- the .http notation

_REPEAT = re.compile(r"\{\{(\d+)\*(.*?)\}\}")
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|[rnt0\\])|\\")
_SIMPLE = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\x00", "\\": b"\\"}


def _unescape(text: str) -> bytes:
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(text):
        out += text[pos : match.start()].encode("ascii")
        code = match.group(1)
        if code is None:
            raise ValueError(f"bad escape in {text!r}")
        out += bytes([int(code[1:], 16)]) if code[0] == "x" else _SIMPLE[code]
        pos = match.end()
    out += text[pos:].encode("ascii")
    return bytes(out)


def decode_http(text: str) -> bytes:
    """The bytes of a ``.http`` file: file line breaks dropped, escapes and repeats applied."""
    if not text.isascii() or "\r" in text or "\t" in text:
        raise ValueError("a .http file is ASCII, with CR and TAB written as escapes")
    out = bytearray()
    for line in text.split("\n"):
        pos = 0
        for match in _REPEAT.finditer(line):
            out += _unescape(line[pos : match.start()])
            out += _unescape(match.group(2)) * int(match.group(1))
            pos = match.end()
        out += _unescape(line[pos:])
    return bytes(out)


def test_notation() -> None:
    assert decode_http("A\\r\\n\nB\\t\\0\\x80\\\\{{3*x\\r}}\n") == b"A\r\nB\t\x00\x80\\x\rx\rx\r"
    with pytest.raises(ValueError):
        decode_http("bad \\q escape")
    with pytest.raises(ValueError):
        decode_http("tab\there")


# ------------------------------------------------------------------------- loading the corpus


@dataclass(frozen=True)
class Case:
    kind: str  # "valid" or "invalid"
    name: str
    data: bytes
    exp: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def limits(self) -> dict[str, int]:
        return dict(self.exp.get("limits", {}))


def _load(kind: str) -> list[Case]:
    cases = []
    for http in sorted((CORPUS / kind).glob("*.http")):
        exp = json.loads(http.with_suffix(".json").read_text("ascii"))
        cases.append(Case(kind, http.stem, decode_http(http.read_text("ascii")), exp))
    return cases


VALID = _load("valid")
INVALID = _load("invalid")
CASES = VALID + INVALID
B = lambda text: text.encode("latin-1")  # noqa: E731 - JSON strings stand for latin-1 bytes


def test_corpus_is_complete() -> None:
    assert len(VALID) >= 40
    assert len(INVALID) >= 60
    for kind in ("valid", "invalid"):
        stems = {p.stem for p in (CORPUS / kind).iterdir()}
        for stem in stems:
            assert (CORPUS / kind / f"{stem}.http").is_file(), stem
            assert (CORPUS / kind / f"{stem}.json").is_file(), stem
    for case in CASES:
        assert case.exp["about"], case.id
        if case.kind == "invalid":
            status = case.exp["status"]
            allowed = status if isinstance(status, list) else [status]
            known = (400, 413, 414, 417, 431, 501, 505)
            assert status == "close" or all(s in known for s in allowed)


# ------------------------------------------------------------------------- sans-I/O feeding

MODES = ["whole", "bytes", *(f"random{i}" for i in range(5))]


def pieces(data: bytes, mode: str, name: str) -> Iterator[bytes]:
    if mode == "whole":
        yield data
    elif mode == "bytes":
        for i in range(len(data)):
            yield data[i : i + 1]
    else:
        rng = random.Random(f"{name}:{mode}")
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 12))))
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            yield data[start:end]


def normalize(events: list[Event]) -> list[tuple[Any, ...]]:
    """Events as plain tuples, with consecutive Body pieces of a stream joined."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, Body):
            assert isinstance(event.data, bytes)
            if not event.data:
                continue
            if out and out[-1][0] == "body" and out[-1][1] == event.stream_id:
                out[-1] = ("body", event.stream_id, out[-1][2] + event.data)
            else:
                out.append(("body", event.stream_id, event.data))
        elif isinstance(event, Request):
            out.append(("request", *event[:5], tuple(map(tuple, event.headers)), *event[6:]))
        elif isinstance(event, EndOfBody):
            out.append(("end", event.stream_id, tuple(map(tuple, event.trailers))))
        else:
            assert isinstance(event, StreamError)
            out.append(("error", event.stream_id, event.status, event.detail))
    return out


def comparable(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The events without the body of a message that never ended.

    When the error is in a body, how much of it was handed on before the error depends on where
    the reads split; everything else must not.
    """
    ended = {event[1] for event in events if event[0] == "end"}
    return [e for e in events if e[0] != "body" or e[1] in ended]


def run(case: Case, mode: str) -> list[tuple[Any, ...]]:
    conn = H1Connection(build_limits(Config(**case.limits)).h1)
    events: list[Event] = []
    for piece in pieces(case.data, mode, case.name):
        events += conn.receive_data(piece)
    events += conn.receive_eof()
    return normalize(events)


@dataclass
class Message:
    request: tuple[Any, ...]
    body: bytes = b""
    trailers: tuple[tuple[bytes, bytes], ...] | None = None  # None: never ended
    end_event: bool = False


def messages(events: list[tuple[Any, ...]]) -> tuple[list[Message], tuple[Any, ...] | None]:
    """The messages in the events (in order) and the error, checking the event grammar."""
    result: list[Message] = []
    error = None
    for i, event in enumerate(events):
        assert error is None, f"event after a StreamError: {events[i:]}"
        if event[0] == "request":
            assert not result or result[-1].trailers is not None, "Request before EndOfBody"
            assert event[1] == len(result) + 1, "stream ids count up from 1"
            result.append(Message(event))
            if not event[7]:  # has_body False: complete with the Request (EndOfBody optional)
                result[-1].trailers = ()
        elif event[0] == "body":
            assert result and result[-1].trailers is None and event[1] == result[-1].request[1]
            result[-1].body += event[2]
        elif event[0] == "end":
            assert result and event[1] == result[-1].request[1] and not result[-1].end_event
            if result[-1].trailers is not None:  # an EndOfBody after a bodiless Request
                assert not result[-1].request[7] and not event[2]
            result[-1].trailers = event[2]
            result[-1].end_event = True
        else:
            error = event
    return result, error


def head_matches(message: Message, exp: dict[str, Any]) -> None:
    (_, _, method, raw_path, query, version, headers, has_body, expect_continue, _, scheme, _) = (
        message.request
    )
    assert method == exp["method"]
    assert raw_path == B(exp["raw_path"])
    assert query == B(exp["query_string"])
    assert version == exp["http_version"]
    assert list(headers) == [(B(n), B(v)) for n, v in exp["headers"]]
    assert scheme == exp.get("scheme")
    names = dict(headers)
    framed = b"transfer-encoding" in names or int(names.get(b"content-length", b"0")) > 0
    assert has_body == framed
    assert expect_continue == (framed and b"expect" in names)


def request_matches(message: Message, exp: dict[str, Any]) -> None:
    head_matches(message, exp)
    assert message.trailers is not None, "the request never ended"
    assert message.body == B(exp["body"])
    assert list(message.trailers) == [(B(n), B(v)) for n, v in exp["trailers"]]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", VALID, ids=lambda c: c.name)
def test_valid_sans_io(case: Case, mode: str) -> None:
    events = run(case, mode)
    if mode != "whole":
        assert events == run(case, "whole"), "feeding mode changed the events"
    found, error = messages(events)
    assert error is None, error
    assert len(found) == len(case.exp["requests"])
    for message, exp in zip(found, case.exp["requests"], strict=True):
        request_matches(message, exp)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.name)
def test_invalid_sans_io(case: Case, mode: str) -> None:
    events = run(case, mode)
    if mode != "whole":
        whole = run(case, "whole")
        assert comparable(events) == comparable(whole), "feeding mode changed the events"
    found, error = messages(events)
    before = case.exp["requests_before"]
    bad_head = case.exp.get("bad_head")
    assert len(found) == len(before) + (bad_head is not None), (
        f"requests reached the app: {[m.request[2:4] for m in found]}"
    )
    for message, exp in zip(found, before, strict=False):
        request_matches(message, exp)
    if bad_head is not None:
        # the error was found in the body: the head was reported, the message never ends
        head_matches(found[-1], bad_head)
        assert found[-1].trailers is None, "the bad message was completed"
        limit = case.limits.get("max_body_size")
        if limit:
            assert len(found[-1].body) <= limit, "more body handed on than max_body_size"
    status = case.exp["status"]
    if status == "close":
        assert error is None, error
        return
    assert error is not None, "no StreamError"
    allowed = status if isinstance(status, list) else [status]
    assert not 200 <= error[2] < 300
    assert error[2] in allowed, error


# ------------------------------------------------------------------------- socket replay

_FLAGS = {
    "max_request_line": "--max-request-line",
    "max_header_count": "--max-header-count",
    "max_header_bytes": "--max-header-bytes",
    "max_body_size": "--max-body-size",
}


class Servers:
    """One echo server per set of limits, started on first use (the default one for most)."""

    def __init__(self) -> None:
        self.started: dict[tuple[tuple[str, int], ...], ServerProcess] = {}

    def get(self, limits: dict[str, int]) -> ServerProcess:
        key = tuple(sorted(limits.items()))
        if key not in self.started:
            flags = [arg for name, value in key for arg in (_FLAGS[name], str(value))]
            args = ["asgi_apps:echo", "--bind", "127.0.0.1:0", "--log-level", "info", *flags]
            self.started[key] = ServerProcess(args)
        return self.started[key]

    def stop(self) -> None:
        for server in self.started.values():
            server.stop()
            if server.proc.stdout is not None:
                server.proc.stdout.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    pool = Servers()
    yield pool
    pool.stop()


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, and read until the server closes (a reset ends it too)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server refused early and closed: read what it said
            pass
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_responses(data: bytes, methods: list[str]) -> list[Response]:
    """Split a byte stream into final responses (1xx skipped); ``methods`` tells which were HEAD."""
    out: list[Response] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        assert end >= 0, f"truncated response head: {data[pos:]!r}"
        lines = data[pos:end].decode("latin-1").split("\r\n")
        version, status_text, *_ = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        status = int(status_text)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"repeated {name} in a response"
            headers[name.lower()] = value.strip()
        pos = end + 4
        if 100 <= status < 200:
            continue
        if (len(out) < len(methods) and methods[len(out)] == "HEAD") or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            size = int(headers["content-length"])
            body = data[pos : pos + size]
            assert len(body) == size, "truncated response body"
            pos += size
        else:
            assert "transfer-encoding" not in headers, "the echo app never streams"
            body, pos = data[pos:], len(data)
        out.append(Response(status, headers, body))
    return out


def echo_matches(response: Response, exp: dict[str, Any]) -> None:
    assert response.status == 200, response
    if exp["method"] == "HEAD":
        return
    seen = json.loads(response.body)
    assert seen["method"] == exp["method"]
    assert seen["raw_path"] == exp["raw_path"]
    assert seen["query_string"] == exp["query_string"]
    assert seen["http_version"] == exp["http_version"]
    assert seen["headers"] == exp["headers"]
    assert seen["body"] == exp["body"]
    assert seen["scheme"] == (exp.get("scheme") or "http")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_replay(case: Case, servers: Servers) -> None:
    server = servers.get(case.limits)
    reply = exchange(server.port, case.data)
    if case.kind == "valid":
        expected = case.exp["requests"]
        responses = parse_responses(reply, [r["method"] for r in expected])
        assert len(responses) == len(expected), reply[:2000]
        for response, exp in zip(responses, expected, strict=True):
            echo_matches(response, exp)
        return
    before = case.exp["requests_before"]
    assert b"/smuggled" not in reply, "a smuggled request reached the app"
    responses = parse_responses(reply, [r["method"] for r in before])
    for response, exp in zip(responses, before, strict=False):
        echo_matches(response, exp)
    status = case.exp["status"]
    if status == "close":
        assert len(responses) == len(before), reply[:2000]
        return
    assert len(responses) == len(before) + 1, reply[:2000]
    allowed = status if isinstance(status, list) else [status]
    error = responses[-1]
    assert error.status in allowed, reply[:2000]
    assert error.headers.get("connection") == "close"


# -- the WSGI side: the validator-wrapped echo app over the whole corpus ------------------------


@pytest.fixture(scope="module")
def wsgi_validated() -> Iterator[ServerProcess]:
    """The WSGI echo app inside ``wsgiref.validate.validator``, warnings turned into errors: any
    PEP 3333 breach by the server becomes a 500 and a logged traceback."""
    server = ServerProcess(
        ["wsgi_apps:validated_echo", "--interface", "wsgi", "--bind", "127.0.0.1:0"],
        env={"PYTHONWARNINGS": "error"},
    )
    yield server
    server.stop()


# wsgiref.validate warns about any method outside RFC 9110's core set (a WebDAV PROPFIND, say):
# that is the validator's opinion of the method, not of the server, so those cases are left out.
_VALIDATOR_METHODS = {"GET", "HEAD", "POST", "OPTIONS", "PATCH", "PUT", "DELETE", "TRACE"}
_VALIDATOR_CASES = [
    case
    for case in CASES
    if not case.limits
    and all(
        r["method"] in _VALIDATOR_METHODS
        for r in case.exp.get("requests", []) + case.exp.get("requests_before", [])
    )
]


@pytest.mark.parametrize("case", _VALIDATOR_CASES, ids=lambda c: c.id)
def test_wsgi_validator_over_the_corpus(case: Case, wsgi_validated: ServerProcess) -> None:
    reply = exchange(wsgi_validated.port, case.data)
    assert b" 500 " not in reply.split(b"\r\n", 1)[0], reply[:2000]
    expected = case.exp["requests"] if case.kind == "valid" else case.exp["requests_before"]
    responses = parse_responses(reply, [r["method"] for r in expected])
    for response, exp in zip(responses, expected, strict=False):
        assert response.status == 200, reply[:2000]
        if exp["method"] != "HEAD":
            environ = json.loads(response.body)
            assert environ["REQUEST_METHOD"] == exp["method"]
            assert environ["body"] == exp.get("body", "")
    if case.kind == "valid":
        assert len(responses) == len(expected), reply[:2000]


def test_wsgi_validator_found_nothing(wsgi_validated: ServerProcess) -> None:
    """Runs after the corpus (tests run in file order): no assertion, warning or app error."""
    log = wsgi_validated.log
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]
