"""The access log: formats compiled once (named fields, presets, gunicorn's atoms, json), and
whatever a client sends staying inside its field, for text and JSON lines alike."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portico.config import Config
from portico.config.observability import FIELDS, GUNICORN_ATOMS, JSON_FIELDS, parse_access_format
from portico.protocols.events import Request
from portico.runtime.access import AccessFormatter
from portico.runtime.context import WorkerContext
from portico.runtime.http1 import H1Driver
from portico.runtime.http1_stream import H1Stream

GUNICORN_DEFAULT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
CLF_TIME = r"\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}"


@pytest.fixture
def driver() -> Iterator[H1Driver]:
    loop = asyncio.new_event_loop()
    ctx = WorkerContext(Config(), loop)
    yield H1Driver(ctx)
    ctx.stop()
    loop.close()


def stream_of(
    driver: H1Driver,
    *,
    method: str = "GET",
    path: bytes = b"/a/b",
    query: bytes = b"q=1",
    headers: list[tuple[bytes, bytes]] | None = None,
    client: tuple[str, int] | None = ("203.0.113.7", 51234),
) -> H1Stream:
    driver.client = client
    request = Request(1, method, path, query, "1.1", headers or [], False, False)
    stream = H1Stream(driver, request)
    stream.sent_bytes = 1234
    stream.response_headers = [(b"Content-Type", b"text/plain"), (b"X-Cache", b"hit")]
    return stream


# --- compiling formats --------------------------------------------------------------------------


def test_the_default_is_the_line_of_earlier_releases(driver: H1Driver) -> None:
    line = AccessFormatter(Config().access_log_format).line(stream_of(driver), 200, 512_000)
    assert re.fullmatch(
        rf'203\.0\.113\.7:51234 - - \[{CLF_TIME}\] "GET /a/b\?q=1 HTTP/1\.1" 200 1234 0\.000512',
        line,
    ), line


def test_the_default_lines_remembered_per_connection_match_the_field_walk(
    driver: H1Driver,
) -> None:
    """The default line keeps each connection's last line up to its duration; whatever changes
    (request, status, size, the second, the connection) the line is the one the general walk
    over the default's fields makes."""
    fast = AccessFormatter(Config().access_log_format)
    walk = AccessFormatter(Config().access_log_format)
    walk.default = False
    first = ("203.0.113.7", 51234)
    second = ("198.51.100.2", 4000)
    cases = [
        (first, "GET", b"/a", b"", 200, 13, 1_000, 1_700_000_000.25),
        (first, "GET", b"/a", b"", 200, 13, 2_499, 1_700_000_000.5),  # all from the cache
        (first, "GET", b"/a", b"", 404, 13, 1_000, 1_700_000_000.5),  # status
        (first, "GET", b"/a", b"", 404, 14, 1_000, 1_700_000_000.5),  # size
        (first, "POST", b"/a", b"x=1", 404, 14, 1_000, 1_700_000_000.5),  # request line
        (second, "POST", b"/a", b"x=1", 404, 14, 1_000, 1_700_000_000.5),  # connection
        (first, "POST", b"/a", b"x=1", 404, 14, 7_200_000_000_000, 1_700_000_001.0),  # second
        (first, "POST", b"/a", b"x=1", 1000, 0, 999_999_500, 1_700_000_001.0),  # 1.000000 s
    ]
    for client, method, path, query, status, sent, duration, wall in cases:
        stream = stream_of(driver, method=method, path=path, query=query, client=client)
        stream.sent_bytes = sent
        expected = walk.line(stream, status, duration, wall)
        assert fast.line(stream, status, duration, wall) == expected
        assert fast.line(stream, status, duration, wall) == expected  # and again, remembered


def test_gunicorns_default_format_and_every_atom(driver: H1Driver) -> None:
    headers = [
        (b"referer", b"https://example.com/"),
        (b"user-agent", b"curl/8.5"),
        (b"authorization", b"Basic YWxpY2U6c2VjcmV0"),  # alice:secret
        (b"x-forwarded-for", b"10.1.1.1"),
    ]
    stream = stream_of(driver, headers=headers)
    line = AccessFormatter(GUNICORN_DEFAULT).line(stream, 404, 250_000_000)
    assert re.fullmatch(
        rf'203\.0\.113\.7 - alice \[{CLF_TIME}\] "GET /a/b\?q=1 HTTP/1\.1" 404 1234 '
        r'"https://example\.com/" "curl/8\.5"',
        line,
    ), line
    every = "%(m)s %(U)s %(q)s %(H)s %(B)s %(T)s %(M)s %(D)s %(L)s %(p)s %({X-Forwarded-For}i)s"
    every += " %({x-cache}o)s %({missing}i)s %({HOME}e)s 100%%"
    line = AccessFormatter(every).line(stream, 200, 1_500_000_000)
    assert line == (
        f"GET /a/b q=1 HTTP/1.1 1234 1 1500 1500000 1.500000 <{os.getpid()}> 10.1.1.1 hit - - 100%"
    )


def test_named_fields_presets_and_literals(driver: H1Driver) -> None:
    stream = stream_of(driver, headers=[(b"x-request-id", b"abc-1")], client=None)
    template = (
        "{client} {client_addr}:{client_port} {method} {target} {path} {query} {protocol} "
        "{status} {bytes} {bytes_clf} {duration_us} {duration_ms} {duration_s} {request_id} "
        "{pid} {user} {{braces}} {request_header:X-Request-ID} {response_header:content-type}"
    )
    line = AccessFormatter(template).line(stream, 304, 2_000_400)
    assert line == (
        "- -:- GET /a/b?q=1 /a/b q=1 HTTP/1.1 304 1234 1234 2000 2 0.002000 abc-1 "
        f"{os.getpid()} - {{braces}} abc-1 text/plain"
    )
    stream.sent_bytes = 0
    common = AccessFormatter("common").line(stream, 204, 0)
    assert re.fullmatch(rf'- - - \[{CLF_TIME}\] "GET /a/b\?q=1 HTTP/1\.1" 204 -', common)
    combined = AccessFormatter("combined").line(stream, 204, 0)
    assert combined.endswith(' 204 - "-" "-"')


def test_json_lines(driver: H1Driver) -> None:
    stream = stream_of(driver, headers=[(b"user-agent", b"ua"), (b"x-request-id", b"r1")])
    entry = json.loads(AccessFormatter("json").line(stream, 201, 1_500_000))
    assert list(entry) == [{"time_iso": "time"}.get(name, name) for name in JSON_FIELDS]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry.pop("time"))
    assert entry == {
        "client_addr": "203.0.113.7",
        "client_port": 51234,
        "method": "GET",
        "target": "/a/b?q=1",
        "protocol": "HTTP/1.1",
        "status": 201,
        "bytes": 1234,
        "duration_us": 1500,
        "referer": None,
        "user_agent": "ua",
        "request_id": "r1",
        "pid": os.getpid(),
    }
    chosen = AccessFormatter("json:status,request_header:user-agent,response_header:x-cache")
    assert json.loads(chosen.line(stream, 500, 0)) == {
        "status": 500,
        "request_header:user-agent": "ua",
        "response_header:x-cache": "hit",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{nope}", "unknown field {nope}"),
        ("{status", "a lone '{'"),
        ("status}", "a lone '}'"),
        ("{request_header:bad name}", "is not a header name"),
        ("{cookie:x}", "a header is {request_header:NAME}"),
        ("%(h)s %(z)s", "unknown gunicorn atom %(z)s"),
        ("%(h)s 100%", "a lone '%'"),
        ("json:status,status", "listed twice"),
        ("json:nope", "unknown field {nope}"),
        ("{status}\n{method}", "one line"),
    ],
)
def test_bad_formats_are_refused_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_access_format(spec)


def test_the_readme_lists_every_field_and_atom() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.partition("## Logs and metrics")[2].partition("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    fields = {name for row in rows for name in re.findall(r"`([a-z_]+)(?::NAME)?`", row)}
    assert set(FIELDS) <= fields
    atoms = {atom for row in rows for atom in re.findall(r"`([A-Za-z])`", row.split(" | ")[1])}
    assert set(GUNICORN_ATOMS) - {"l"} <= atoms  # %(l)s is always "-"


def test_a_bad_format_is_a_setting_error() -> None:
    from portico.config import resolve  # noqa: PLC0415

    with pytest.raises(Exception, match=r"--access-log-format: unknown field \{nope\}"):
        resolve(["--access-log-format", "{nope}"], {}, lambda path: "", "/")


def test_gunicorns_spellings_carry_a_gunicorn_format(driver: H1Driver) -> None:
    """--access-logformat and a gunicorn.conf.py's access_log_format are the setting itself."""
    from portico.config import resolve  # noqa: PLC0415

    conf = f"access_log_format = {GUNICORN_DEFAULT!r}\n"
    by_flag = resolve(["--access-logformat", GUNICORN_DEFAULT], {}, lambda path: "", "/")
    by_file = resolve(["-c", "g.py"], {}, lambda path: conf, "/w")
    for resolved in (by_flag, by_file):
        spec = resolved.config.access_log_format
        assert spec == GUNICORN_DEFAULT
        line = AccessFormatter(spec).line(
            stream_of(driver, headers=[(b"user-agent", b"x")]), 200, 0
        )
        assert line.startswith("203.0.113.7 - - [") and line.endswith(' 200 1234 "-" "x"')
    with pytest.raises(Exception, match=r"--access-logformat: unknown gunicorn atom %\(z\)s"):
        resolve(["--access-logformat", "%(z)s"], {}, lambda path: "", "/")


# --- hostile input ------------------------------------------------------------------------------

HOSTILE = [
    b'/x" 200 0 "-" "-"\n203.0.113.9 - - [01/Jan/2000:00:00:00 +0000] "GET /forged HTTP/1.1',
    b"/\r\n\x00\x1b[2J\x7f\\\xff\xfe\xc3\xa9",
    b'"}{"status":200,"forged":true}',
    b"\xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf",  # a surrogate, beyond U+10FFFF, overlong
]


def _fields_of(line: str) -> list[str]:
    return line.split('"')


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("spec", [GUNICORN_DEFAULT, "combined", Config().access_log_format])
def test_hostile_bytes_stay_in_their_field_of_a_text_line(
    driver: H1Driver, spec: str, value: bytes
) -> None:
    formatter = AccessFormatter(spec)
    calm = formatter.line(stream_of(driver), 200, 1_000_000)
    headers = [(b"referer", value), (b"user-agent", value), (b"authorization", b"Basic " + value)]
    line = formatter.line(
        stream_of(driver, path=value, query=value, headers=headers), 200, 1_000_000
    )
    assert "\n" not in line and "\r" not in line
    assert line.isascii() and line.isprintable()
    assert len(_fields_of(line)) == len(_fields_of(calm))  # no field opened or closed
    assert "forged" not in line.split('"', 1)[0]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_bytes_stay_in_their_member_of_a_json_line(driver: H1Driver, value: bytes) -> None:
    formatter = AccessFormatter("json:target,user_agent,referer,status,request_header:x-a")
    headers = [(b"user-agent", value), (b"referer", value), (b"x-a", value)]
    line = formatter.line(stream_of(driver, path=value, query=b"", headers=headers), 200, 0)
    assert "\n" not in line and line.isascii()
    entry = json.loads(line)
    assert set(entry) == {"target", "user_agent", "referer", "status", "request_header:x-a"}
    assert entry["status"] == 200
    expected = value.decode("utf-8", "backslashreplace")
    assert entry["user_agent"] == entry["referer"] == entry["request_header:x-a"] == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.text(max_size=50))
def test_any_bytes_make_one_valid_line_in_every_format(raw: bytes, method: str) -> None:
    loop = asyncio.new_event_loop()
    ctx = WorkerContext(Config(), loop)
    try:
        stream = stream_of(
            H1Driver(ctx),
            method=method,
            path=raw,
            query=raw,
            headers=[(b"user-agent", raw), (b"referer", raw), (b"x-request-id", raw)],
            client=(method, 1),
        )
        for spec, quotes in ((GUNICORN_DEFAULT, 6), ("combined", 6), ("common", 2)):
            line = AccessFormatter(spec).line(stream, 200, 0)
            assert line.isprintable()  # no control character, no line break
            line.encode("utf-8")  # valid UTF-8 once written (no lone surrogate)
            assert line.count('"') == quotes
        line = AccessFormatter("json").line(stream, 200, 0)
        assert line.isascii() and "\n" not in line
        assert json.loads(line)["user_agent"] == raw.decode("utf-8", "backslashreplace")[:1024] + (
            "…" if len(raw.decode("utf-8", "backslashreplace")) > 1024 else ""
        )
    finally:
        ctx.stop()
        loop.close()
