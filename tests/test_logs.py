"""Logging: escape(), the access log line, configure()."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portico import logs
from portico.logs import AccessLog, configure, escape


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain /path?q=1", "plain /path?q=1"),
        ("a\nb\r\nc", "a\\x0ab\\x0d\\x0ac"),
        ("tab\there", "tab\\x09here"),
        ("back\\slash", "back\\x5cslash"),
        ('quo"te', "quo\\x22te"),
        ("\x00\x1b[31m\x7f", "\\x00\\x1b[31m\\x7f"),
        ("café", "café"),
        ("\u202egnp.exe", "\\u202egnp.exe"),
        ("\U000e0001", "\\U000e0001"),
        (b"GET", "GET"),
        (b"/caf\xc3\xa9\n", "/caf\\xc3\\xa9\\x0a"),
        (b'a\\b"c', "a\\x5cb\\x22c"),
        ("", ""),
        (b"", ""),
    ],
)
def test_escape(value: str | bytes, expected: str) -> None:
    assert escape(value) == expected


def test_escape_truncates() -> None:
    assert escape("x" * 201) == "x" * 200 + "…"
    assert escape("x" * 200) == "x" * 200
    assert escape(b"y" * 10, limit=4) == "yyyy…"
    assert escape("\n" * 5, limit=2) == "\\x0a\\x0a…"


@given(st.one_of(st.text(), st.binary()))
def test_escape_output_is_one_safe_line(value: str | bytes) -> None:
    text = escape(value, limit=50)
    assert all(char.isprintable() for char in text)
    assert '"' not in text
    # every backslash starts an escape we wrote
    assert re.sub(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})", "", text).count("\\") == 0


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, Capture]]:
    logger = logging.getLogger("portico.test.access")
    handler = Capture()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler
    logger.removeHandler(handler)


def test_access_log_line(capture: tuple[logging.Logger, Capture]) -> None:
    logger, handler = capture
    access = AccessLog(enabled=True, logger=logger)
    access.log("10.0.0.1:5000", b"GET", b'/a b"\n?x=1', "1.1", 200, 1234, 0.0005)
    (line,) = handler.lines
    assert re.fullmatch(
        r"10\.0\.0\.1:5000 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        r'"GET /a b\\x22\\x0a\?x=1 HTTP/1\.1" 200 1234 0\.000500',
        line,
    ), line


def test_disabled_access_log_writes_nothing(capture: tuple[logging.Logger, Capture]) -> None:
    logger, handler = capture
    access = AccessLog(enabled=False, logger=logger)
    assert access.enabled is False
    access.log("-", b"GET", b"/", "1.1", 200, 0, 0.0)
    assert handler.lines == []


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    for logger, handler in logs._installed:
        logger.removeHandler(handler)
    logs._installed.clear()


@pytest.mark.usefixtures("restore_logging")
def test_configure(capsys: pytest.CaptureFixture[str]) -> None:
    configure("warning", access_log=False)
    configure("warning", access_log=False)  # idempotent: one handler, not two
    error = logging.getLogger("portico.error")
    access = logging.getLogger("portico.access")
    error.info("hidden")
    error.warning("shown %d", 1)
    assert not AccessLog(enabled=False).enabled
    access.info("not written")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "not written" not in err
    assert err.count("shown 1") == 1
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[\d+\] WARNING shown 1\n", err)

    configure("debug", access_log=True)
    error.debug("now visible")
    AccessLog(enabled=True).log("-", b"GET", b"/", "1.1", 204, 0, 0.25)
    err = capsys.readouterr().err
    assert "DEBUG now visible" in err
    assert '"GET / HTTP/1.1" 204 0 0.250000' in err
