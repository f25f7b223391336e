"""``portico call``: what does my app answer to this request? Asked in process, without a socket.

    portico call [OPTIONS] APP [METHOD] TARGET [-H 'Name: value']... [-d DATA | -d @FILE]
                 [--exchange]

The app is served by ``portico.testing`` (the server's own parser, router, gateways and
response checks, lifespan startup and shutdown included), so every server option applies
(``--mount``, ``--static``, ``--root-path``, ``--interface``…). The response is printed as
``curl -i`` prints it; ``--exchange`` prints the raw exchange instead (the ASGI scope and every
message, or the WSGI environ, ``start_response`` and each chunk). ``-d`` works as curl's: it
makes the request a POST unless METHOD says otherwise, and sends the form content type unless
``-H`` gives one; ``@FILE`` sends the file's bytes (``@-``: standard input).

Exit codes: 0, 1 for a 5xx response, an error the app made or a response cut short, and the
server's own for the rest (2 a setting, 3 lifespan startup, 4 the app does not load).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from portico import logs
from portico.config import SETTINGS, resolve
from portico.errors import EXIT_OK, ConfigError, StartupError

__all__ = ["main"]

USAGE = """\
usage: portico call [OPTIONS] APP [METHOD] TARGET [-H 'Name: value']... [-d DATA | -d @FILE]
                    [--exchange]

Call APP in process, with no socket, and print the response as `curl -i` does.

  METHOD            GET, or POST with -d
  TARGET            /path?query, or http://host/path?query (the host becomes Host)
  -H, --header      a request header 'Name: value' (repeatable)
  -d, --data        the request body: DATA, @FILE, or @- for standard input
  --exchange        print the raw ASGI or WSGI exchange instead of the response
  OPTIONS           any server setting (`portico --help`): --mount, --static, --root-path, ...

Exit status: 0; 1 for a 5xx response, an app error or a response cut short; 2 for a bad
setting, 3 when lifespan startup fails, 4 when the app does not load.
"""

_METHOD = re.compile(r"[A-Z]+")
#: option strings of settings that take a value (the others are flags)
_VALUED = frozenset(
    flag for s in SETTINGS if not s.kind.is_flag and not s.positional for flag in s.flags
)


class _Request:
    def __init__(self) -> None:
        self.settings: list[str] = []
        self.positionals: list[str] = []
        self.headers: list[tuple[str, str]] = []
        self.data: bytes | None = None
        self.exchange = False
        self.help = False


def _value(argv: list[str], index: int, option: str) -> str:
    if index + 1 >= len(argv):
        raise ConfigError(f"portico call: {option} needs a value")
    return argv[index + 1]


def _data(spec: str) -> bytes:
    if not spec.startswith("@"):
        return spec.encode("utf-8")
    if spec == "@-":
        return sys.stdin.buffer.read()
    try:
        return Path(spec[1:]).read_bytes()
    except OSError as exc:
        raise ConfigError(f"portico call: -d {spec}: {exc.strerror or exc}") from None


def _parse(argv: list[str]) -> _Request:
    """Split the call's own options from the server settings, which ``resolve`` converts."""
    request = _Request()
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("-H", "--header"):
            name, colon, value = _value(argv, index, arg).partition(":")
            if not colon or not name.strip():
                raise ConfigError(
                    f"portico call: {arg} {argv[index + 1]!r}: expected 'Name: value'"
                )
            request.headers.append((name.strip(), value.strip()))
            index += 1
        elif arg in ("-d", "--data"):
            request.data = _data(_value(argv, index, arg))
            index += 1
        elif arg == "--exchange":
            request.exchange = True
        elif arg in ("-h", "--help"):
            request.help = True
        elif arg.startswith("-") and arg != "-":
            request.settings.append(arg)
            if "=" not in arg and arg in _VALUED:
                request.settings.append(_value(argv, index, arg))
                index += 1
        else:
            request.positionals.append(arg)
        index += 1
    return request


def _write(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except BrokenPipeError:  # `portico call ... | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: list[str]) -> int:
    """Run ``portico call`` with ``argv`` (after ``call``); returns the exit code."""
    try:
        request = _parse(argv)
        if request.help:
            print(USAGE, end="")
            return EXIT_OK
        positionals = request.positionals
        if not 1 <= len(positionals) <= 3:
            raise ConfigError("portico call: expected [APP] [METHOD] TARGET (see --help)")
        target = positionals[-1]
        app: str | None = None
        method = "POST" if request.data is not None else "GET"
        rest = positionals[:-1]
        if rest and _METHOD.fullmatch(rest[-1]) and len(rest[-1]) > 1:
            method = rest.pop()
        if rest:
            app = rest.pop()
        if rest:
            raise ConfigError(f"portico call: unexpected argument {rest[0]!r}")
        resolved = resolve(
            [*request.settings, *([app] if app else [])],
            os.environ,
            lambda path: Path(path).read_text(encoding="utf-8"),
            os.getcwd(),
        )
        for warning in resolved.warnings:
            print(f"portico: warning: {warning}", file=sys.stderr)
        config = resolved.config
        logs.configure(
            config.log_level,
            config.access_log,
            config.log_file,
            config.access_log_file,
            config.log_format,
        )
        headers = request.headers
        body = request.data or b""
        if request.data is not None and not any(n.lower() == "content-type" for n, _ in headers):
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        from portico.testing import call, describe_exchange  # noqa: PLC0415 -- the runtime

        try:
            response = call(
                None,
                method,
                target,
                headers,
                body,
                config=config,
                raise_app_errors=False,
                record=request.exchange,
            )
        except ValueError as exc:
            raise ConfigError(f"portico call: {exc}") from None
        if request.exchange:
            _write(describe_exchange(response.exchange).encode("utf-8", "backslashreplace"))
        else:
            _write(response.head + response.body)
        if not response.complete:
            print("portico call: the response was cut short", file=sys.stderr)
        return 1 if response.failed else EXIT_OK
    except StartupError as error:
        print(f"portico: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
