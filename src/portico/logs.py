"""Observability: the error log, the access log, and making client text safe to log.

This is a small interface the layers call, not a logger subclass. Two stdlib loggers carry the
output — ``portico.error`` and ``portico.access`` — so an embedding program can route them like any
other. A disabled access log costs the caller one attribute check::

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
    "AccessLog",
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
) -> None:
    """Send ``portico.error`` (at ``level``) and, if enabled, ``portico.access`` to stderr.

    ``log_file`` and ``access_log_file`` send them to files instead (opened for appending, so
    the master and its workers share them); an access log file turns the access log on. ``-``
    is gunicorn's name for the standard streams: stderr for the error log, stdout for the access
    log. Calling it again replaces what the previous call installed.
    """
    for logger, handler in _installed:
        logger.removeHandler(handler)
        if isinstance(handler, logging.FileHandler):
            handler.close()
    _installed.clear()
    error_handler = _handler(log_file, sys.stderr)
    error_handler.setFormatter(
        logging.Formatter(
            "%(asctime)s [%(process)d] %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    )
    error_log.setLevel(_LEVELS[level])
    error_log.addHandler(error_handler)
    error_log.propagate = False
    _installed.append((error_log, error_handler))

    access_log = access_log or access_log_file is not None
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)
    access.propagate = False
    if access_log:
        access_handler = _handler(access_log_file, sys.stdout if access_log_file else sys.stderr)
        access_handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(access_handler)
        _installed.append((access, access_handler))


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
    import logging.config  # noqa: PLC0415 -- only with --log-config

    if config:
        _dict_config(dict(config), "logconfig_dict")
    if path is None:
        return
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


class AccessLog:
    """One line per response on ``portico.access``, in a common-log-like format::

        127.0.0.1:51234 - - [23/Nov/2025:12:14:00 +0000] "GET /path?q=1 HTTP/1.1" 200 1234 0.000512

    The last field is the time from the request head to the last byte, in seconds.
    """

    __slots__ = ("_logger", "enabled")

    def __init__(self, enabled: bool, logger: logging.Logger | None = None) -> None:
        self.enabled = enabled
        self._logger = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    def log(  # noqa: PLR0917 -- one positional call per response, on the hot path
        self,
        client: str,
        method: bytes,
        target: bytes,
        version: str,
        status: int,
        size: int,
        duration_s: float,
    ) -> None:
        """Write the line for one response (callers check ``enabled`` first)."""
        if not self.enabled:
            return
        self._logger.info(
            '%s - - [%s] "%s %s HTTP/%s" %d %d %.6f',
            escape(client),
            time.strftime("%d/%b/%Y:%H:%M:%S %z"),
            escape(method, 32),
            escape(target, 2048),
            escape(version, 8),
            status,
            size,
            duration_s,
        )
