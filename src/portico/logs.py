"""Observability: the error log, the access log, and making client text safe to log.

This is a small interface the layers call, not a logger subclass. The error log is the stdlib
logger ``portico.error`` (text lines, or one JSON object per line with ``--log-format json``), so
an embedding program can route it like any other. Access-log lines go to an :class:`AccessSink`:
once :func:`configure` has run, a writer to the file or stderr, to which the worker hands its lines
in batches (one ``write`` for many lines, never one per request); before that, the stdlib logger
``portico.access``. A disabled access log costs the caller one
attribute check::

    if access.enabled:
        access.log(...)

Everything a client chose (target, method, header values) goes through ``escape()`` first: a
request line carrying ``\\n`` or ``"`` must not be able to forge a log line or a field.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from portico.errors import StartupError

__all__ = [
    "ACCESS_LOGGER",
    "ERROR_LOGGER",
    "AccessSink",
    "JSONFormatter",
    "access_sink",
    "apply_config",
    "capture_output",
    "configure",
    "error_log",
    "error_stream",
    "escape",
    "reopen",
]

ERROR_LOGGER = "portico.error"
ACCESS_LOGGER = "portico.access"

#: The error log; the layers log through it (``logs.error_log.warning(...)``).
error_log = logging.getLogger(ERROR_LOGGER)

_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}

_installed: list[tuple[logging.Logger, logging.Handler]] = []


def configure(
    level: str,
    access_log: bool,
    log_file: str | None = None,
    access_log_file: str | None = None,
    log_format: str = "text",
) -> None:
    """Send ``portico.error`` (at ``level``) and, if enabled, the access log to stderr.

    ``log_file`` and ``access_log_file`` send them to files instead (opened for appending, so
    the master and its workers share them); an access log file turns the access log on. ``-``
    is gunicorn's name for the standard streams: stderr for the error log, stdout for the access
    log. ``log_format`` is ``text`` or ``json`` (the error log's lines). Calling it again
    replaces what the previous call installed.
    """
    global _sink
    for logger, handler in _installed:
        logger.removeHandler(handler)
        if isinstance(handler, logging.FileHandler):
            handler.close()
    _installed.clear()
    error_handler = _handler(log_file, sys.stderr)
    error_handler.setFormatter(
        JSONFormatter()
        if log_format == "json"
        else logging.Formatter(
            "%(asctime)s [%(process)d] %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    )
    error_log.setLevel(_LEVELS[level])
    error_log.addHandler(error_handler)
    error_log.propagate = False
    _installed.append((error_log, error_handler))

    if _sink is not None:
        _sink.close()
        _sink = None
    if access_log or access_log_file is not None:
        _sink = _FileSink(access_log_file)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``pid``, ``message``, and
    ``exception`` (the traceback's text) when there is one. ASCII only: whatever a message holds,
    the line stays one valid line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry)


class AccessSink:
    """Where access-log lines go, a batch at a time (``runtime.access`` batches them)."""

    def write(self, lines: list[str]) -> None:
        """Write ``lines`` (each without its newline)."""
        raise NotImplementedError

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


class _LoggerSink(AccessSink):
    """Each line to the logger ``portico.access``: before :func:`configure` (Portico embedded,
    tests), and when ``--log-config`` gives that logger handlers of its own."""

    def write(self, lines: list[str]) -> None:
        logger = logging.getLogger(ACCESS_LOGGER)
        for line in lines:
            logger.info("%s", line)


class _FileSink(AccessSink):
    """A batch of lines written with one ``write``: to a file opened for appending
    (``O_APPEND``, so the workers' writes of whole lines never interleave inside a line), to
    stderr (no file), or to stdout (``-``, gunicorn's ``--access-logfile -``)."""

    def __init__(self, path: str | None) -> None:
        self.path = None if path == "-" else path
        self.stream = sys.stdout if path == "-" else sys.stderr
        self.fd = -1 if self.path is None else _open_append(self.path)

    def write(self, lines: list[str]) -> None:
        text = "\n".join(lines) + "\n"
        if self.fd < 0:
            self.stream.write(text)
            self.stream.flush()
            return
        data = text.encode("utf-8", "backslashreplace")
        while data:
            try:
                written = os.write(self.fd, data)
            except InterruptedError:
                continue
            except OSError as exc:
                error_log.warning("access log: cannot write to %s: %s", self.path, exc)
                return
            data = data[written:]

    def reopen(self) -> None:
        if self.path is not None:
            old, self.fd = self.fd, _open_append(self.path)
            os.close(old)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _open_append(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StartupError(f"cannot open log file {path}: {exc.strerror or exc}") from exc


_sink: AccessSink | None = None


def access_sink() -> AccessSink:
    """The configured sink of access-log lines (or ``portico.access`` before ``configure``)."""
    return _sink if _sink is not None else _LoggerSink()


def _handler(path: str | None, stream: TextIO) -> logging.Handler:
    if path is None or path == "-":
        return logging.StreamHandler(stream)
    try:
        return logging.FileHandler(path, mode="a", encoding="utf-8")
    except OSError as exc:
        raise StartupError(f"cannot open log file {path}: {exc.strerror or exc}") from exc


def apply_config(path: str | None, config: Mapping[str, Any] | None = None) -> None:
    """``--log-config``: a ``.json`` or ``.yaml`` file for ``dictConfig``, else an ini file for
    ``fileConfig``; ``config`` is a dict (gunicorn's ``logconfig_dict``). Loggers that exist
    (``portico.error``, the app's) stay enabled, as uvicorn leaves them."""
    if config:
        _dict_config(dict(config), "logconfig_dict")
    if path is not None:
        _file_config(path)
    _route_access_to_logger()


def _route_access_to_logger() -> None:
    """When a logging configuration gave ``portico.access`` handlers, the access log's lines go
    through that logger, as gunicorn's and uvicorn's users route theirs, not to the file."""
    global _sink
    if _sink is not None and logging.getLogger(ACCESS_LOGGER).handlers:
        _sink.close()
        _sink = _LoggerSink()


def _file_config(path: str) -> None:
    import logging.config  # noqa: PLC0415 -- only with --log-config

    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as file:
                loaded = json.load(file)
            _dict_config(loaded, path)
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml  # type: ignore[import-untyped]  # noqa: PLC0415 -- optional
            except ImportError:
                raise StartupError(
                    f"--log-config {path}: YAML needs PyYAML (pip install pyyaml)"
                ) from None
            with open(path, encoding="utf-8") as file:
                _dict_config(yaml.safe_load(file), path)
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StartupError(f"--log-config {path}: {exc}") from exc


def _dict_config(config: object, source: str) -> None:
    import logging.config  # noqa: PLC0415

    if not isinstance(config, dict):
        raise StartupError(f"{source}: expected a mapping for logging.config.dictConfig")
    config.setdefault("version", 1)
    config.setdefault("disable_existing_loggers", False)
    logging.config.dictConfig(config)


def capture_output(path: str) -> None:
    """``--capture-output``: point this process's stdout and stderr (inherited by the workers)
    at the error log file, so that what the app prints is kept."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


def reopen() -> None:
    """Reopen the log files (SIGUSR1), after logrotate moved them away."""
    if _sink is not None:
        _sink.reopen()
    for _, handler in _installed:
        if isinstance(handler, logging.FileHandler):
            # Open the new file before closing the old one: a record logged meanwhile by
            # another thread lands in one file or the other, never in a closed stream.
            with handler.lock or contextlib.nullcontext():
                stream = handler._open()
                old = handler.setStream(stream)
            if old is not None:
                old.close()


def error_stream() -> TextIO:
    """Where fatal reports (``faulthandler``'s stack dumps) go: the error log's file or stderr."""
    for logger, handler in _installed:
        if logger is error_log and isinstance(handler, logging.FileHandler):
            stream = handler.stream
            if stream is not None:
                return stream
    return sys.stderr


# Printable ASCII except backslash (the escape character) and the double quote (which delimits
# fields of the access log line).
_UNSAFE_BYTES = re.compile(rb"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_BYTE_TEXT = [
    chr(b) if 0x20 <= b <= 0x7E and b not in b'\\"' else f"\\x{b:02x}" for b in range(256)
]


def _escape_char(char: str) -> str:
    if char.isprintable() and char not in '\\"':
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape(value: str | bytes, limit: int = 200) -> str:
    """``value`` made safe for one log line.

    Non-printable characters, backslashes and double quotes become ``\\xNN`` escapes (``\\uNNNN``
    beyond latin-1); bytes outside printable ASCII are escaped byte by byte. At most ``limit``
    characters (or bytes) of the input are kept; a longer value ends with "…".
    """
    truncated = len(value) > limit
    if truncated:
        value = value[:limit]
    if isinstance(value, bytes):
        if _UNSAFE_BYTES.search(value) is None:
            text = value.decode("ascii")
        else:
            text = "".join([_BYTE_TEXT[b] for b in value])
    elif value.isprintable() and "\\" not in value and '"' not in value:
        text = value
    else:
        text = "".join([_escape_char(char) for char in value])
    return text + "…" if truncated else text
