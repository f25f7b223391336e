"""Logging: escape(), configure(), the JSON error log, the access-log sinks."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portico import logs
from portico.logs import configure, escape


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


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    for logger, handler in logs._installed:
        logger.removeHandler(handler)
    logs._installed.clear()
    if logs._sink is not None:
        logs._sink.close()
        logs._sink = None


@pytest.mark.usefixtures("restore_logging")
def test_configure(capsys: pytest.CaptureFixture[str]) -> None:
    configure("warning", access_log=False)
    configure("warning", access_log=False)  # idempotent: one handler, not two
    error = logging.getLogger("portico.error")
    error.info("hidden")
    error.warning("shown %d", 1)
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert err.count("shown 1") == 1
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[\d+\] WARNING shown 1\n", err)

    configure("debug", access_log=True)
    error.debug("now visible")
    logs.access_sink().write(['- "GET / HTTP/1.1" 204', "second"])
    assert capsys.readouterr().err.endswith('DEBUG now visible\n- "GET / HTTP/1.1" 204\nsecond\n')


@pytest.mark.usefixtures("restore_logging")
def test_json_error_log(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", access_log=False, log_format="json")
    error = logging.getLogger("portico.error")
    error.warning('a "quoted"\nline \x1b[31m é')
    try:
        raise ValueError("boom")
    except ValueError:
        error.exception("app failed")
    first, second = capsys.readouterr().err.splitlines()
    entry = json.loads(first)
    assert set(entry) == {"time", "level", "pid", "message"}
    assert entry["level"] == "warning" and entry["pid"] == os.getpid()
    assert entry["message"] == 'a "quoted"\nline \x1b[31m é'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert first.isascii()
    failed = json.loads(second)
    assert failed["message"] == "app failed" and failed["level"] == "error"
    assert failed["exception"].startswith("Traceback") and "ValueError: boom" in failed["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_the_access_file_takes_a_batch_in_one_write_and_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    configure("info", access_log=False, access_log_file=str(path))
    sink = logs.access_sink()
    sink.write([f"line {i}" for i in range(3)])
    assert path.read_text() == "line 0\nline 1\nline 2\n"
    path.rename(tmp_path / "access.log.1")
    logs.reopen()  # SIGUSR1, after logrotate moved the file
    sink.write(["new"])
    assert (tmp_path / "access.log.1").read_text().endswith("line 2\n")
    assert path.read_text() == "new\n"


def test_without_configure_lines_go_to_the_access_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=logs.ACCESS_LOGGER):
        logs.access_sink().write(["embedded", "twice"])
    assert [record.getMessage() for record in caplog.records] == ["embedded", "twice"]


@pytest.mark.usefixtures("restore_logging")
def test_dash_is_stdout_and_a_log_config_takes_the_access_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("info", access_log=False, access_log_file="-")  # gunicorn's --access-logfile -
    logs.access_sink().write(["to stdout"])
    assert capsys.readouterr().out == "to stdout\n"
    path = tmp_path / "routed.log"
    config = {
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(path)}},
        "loggers": {logs.ACCESS_LOGGER: {"handlers": ["file"], "level": "INFO"}},
    }
    access = logging.getLogger(logs.ACCESS_LOGGER)
    try:
        logs.apply_config(None, config)  # gunicorn's logconfig_dict routing the access logger
        logs.access_sink().write(["routed"])
        assert capsys.readouterr().out == ""
        for handler in access.handlers:
            handler.flush()
        assert path.read_text() == "routed\n"
    finally:
        for handler in list(access.handlers):
            access.removeHandler(handler)
            handler.close()
