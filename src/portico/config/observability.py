"""The observability settings' kinds: access-log formats, parsed once, and the metrics address.

An access-log format is compiled here, at configuration time, into a tuple of :class:`Field`
operations that ``runtime.access`` renders per response, so a typo is an exit-2 error naming the
flag, and the per-request work is a walk over a tuple. Three spellings are accepted:

* a preset: ``common``, ``combined`` (Apache's), ``json``, or ``json:FIELD,FIELD,...``;
* a template of named fields: ``{client_addr} "{request_line}" {status} {duration_us}``, with
  ``{request_header:NAME}`` and ``{response_header:NAME}`` for any header, ``{{`` and ``}}`` for
  braces;
* gunicorn's atoms, recognised by ``%(``: ``%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s``,
  ``%({x-forwarded-for}i)s``, ``%%`` for a percent sign, so a gunicorn user's format keeps
  working. An atom gunicorn does not know is an error here (gunicorn prints ``-`` for it).

This module does no I/O and knows no request: it only turns text into operations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from portico.config.kinds import Kind, bind_protocol, validate_bind

__all__ = [
    "ACCESS_LOG_FORMAT",
    "DEFAULT_ACCESS_FORMAT",
    "FIELDS",
    "GUNICORN_ATOMS",
    "JSON_FIELDS",
    "METRICS_BIND",
    "AccessFormat",
    "Field",
    "parse_access_format",
]

# Operation codes (``Field.code``). LITERAL carries its text; the header codes carry a name.
LITERAL: Final = 0
CLIENT: Final = 1
CLIENT_ADDR: Final = 2
CLIENT_PORT: Final = 3
METHOD: Final = 4
TARGET: Final = 5
PATH: Final = 6
QUERY: Final = 7
PROTOCOL: Final = 8
REQUEST_LINE: Final = 9
STATUS: Final = 10
BYTES: Final = 11
BYTES_CLF: Final = 12
DURATION_US: Final = 13
DURATION_MS: Final = 14
DURATION_S: Final = 15
DURATION_WHOLE_S: Final = 16
TIME: Final = 17
TIME_ISO: Final = 18
REFERER: Final = 19
USER_AGENT: Final = 20
REQUEST_ID: Final = 21
PID: Final = 22
USER: Final = 23
REQUEST_HEADER: Final = 24
RESPONSE_HEADER: Final = 25

#: named field -> (code, what it shows); the README's table is this one
FIELDS: dict[str, tuple[int, str]] = {
    "client": (CLIENT, "client address and port, `203.0.113.7:51234` (`-` on a unix socket)"),
    "client_addr": (CLIENT_ADDR, "client address (after trusted proxy headers)"),
    "client_port": (CLIENT_PORT, "client port"),
    "method": (METHOD, "request method"),
    "target": (TARGET, "request target as sent: path and query"),
    "path": (PATH, "path, without the query"),
    "query": (QUERY, "query string, without `?`"),
    "protocol": (PROTOCOL, "`HTTP/1.1`, `HTTP/1.0`"),
    "request_line": (REQUEST_LINE, "`GET /path?q=1 HTTP/1.1`"),
    "status": (STATUS, "response status"),
    "bytes": (BYTES, "response body bytes"),
    "bytes_clf": (BYTES_CLF, "response body bytes, `-` for none (the Common Log Format's)"),
    "duration_us": (DURATION_US, "request time in microseconds, admission to last byte"),
    "duration_ms": (DURATION_MS, "request time in whole milliseconds"),
    "duration_s": (DURATION_S, "request time in seconds, 6 decimals"),
    "time": (TIME, "local time at the end, `23/Nov/2025:12:14:00 +0000`"),
    "time_iso": (TIME_ISO, "UTC time at the end, `2025-11-23T12:14:00.123Z`"),
    "referer": (REFERER, "the `Referer` header"),
    "user_agent": (USER_AGENT, "the `User-Agent` header"),
    "request_id": (REQUEST_ID, "the `X-Request-ID` (see `request_id`)"),
    "pid": (PID, "the worker's process id"),
    "user": (USER, "the user of `Authorization: Basic`, else `-`"),
}
_HEADER_FIELDS = {"request_header": REQUEST_HEADER, "response_header": RESPONSE_HEADER}

#: gunicorn atom -> the named fields it becomes (literal text in quotes)
GUNICORN_ATOMS: dict[str, tuple[str, ...]] = {
    "h": ("client_addr",),
    "l": ("'-'",),
    "u": ("user",),
    "t": ("'['", "time", "']'"),
    "r": ("request_line",),
    "m": ("method",),
    "U": ("path",),
    "q": ("query",),
    "H": ("protocol",),
    "s": ("status",),
    "B": ("bytes",),
    "b": ("bytes_clf",),
    "f": ("referer",),
    "a": ("user_agent",),
    "T": ("duration_whole_s",),
    "M": ("duration_ms",),
    "D": ("duration_us",),
    "L": ("duration_s",),
    "p": ("'<'", "pid", "'>'"),
}
_GUNICORN_ONLY = {"duration_whole_s": DURATION_WHOLE_S}

#: Portico's line since 0.1: the Common Log Format's shape with the client's port and the time
DEFAULT_ACCESS_FORMAT = '{client} - - [{time}] "{request_line}" {status} {bytes} {duration_s}'
_PRESETS = {
    "common": '{client_addr} - {user} [{time}] "{request_line}" {status} {bytes_clf}',
    "combined": '{client_addr} - {user} [{time}] "{request_line}" {status} {bytes_clf} '
    '"{referer}" "{user_agent}"',
}
#: the fields of ``json`` without a list
JSON_FIELDS = (
    "time_iso",
    "client_addr",
    "client_port",
    "method",
    "target",
    "protocol",
    "status",
    "bytes",
    "duration_us",
    "referer",
    "user_agent",
    "request_id",
    "pid",
)
_JSON_KEYS = {"time_iso": "time"}

_TEMPLATE_PART = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_GUNICORN_PART = re.compile(r"%%|%\(([^()]*)\)s|%")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True, slots=True)
class Field:
    """One operation of a compiled format: literal text, or a field to render."""

    code: int
    #: the literal text; for a header field, its name (lower case); else empty
    text: str = ""
    #: the key of a ``json`` format's member
    key: str = ""


@dataclass(frozen=True, slots=True)
class AccessFormat:
    fields: tuple[Field, ...]
    json: bool = False

    def uses(self, *codes: int) -> bool:
        return any(field.code in codes for field in self.fields)


def _named(spec: str) -> Field:
    name, colon, header = spec.partition(":")
    if colon:
        code = _HEADER_FIELDS.get(name)
        if code is None:
            raise ValueError(
                f"unknown field {{{spec}}}: a header is {{request_header:NAME}} or "
                "{response_header:NAME}"
            )
        if not _HEADER_NAME.fullmatch(header):
            raise ValueError(f"{{{spec}}}: {header!r} is not a header name")
        return Field(code, header.lower(), spec)
    if name in FIELDS:
        return Field(FIELDS[name][0], "", _JSON_KEYS.get(name, name))
    if name in _GUNICORN_ONLY:
        return Field(_GUNICORN_ONLY[name], "", name)
    known = ", ".join(FIELDS)
    raise ValueError(
        f"unknown field {{{spec}}}; known fields: {known}, request_header:NAME, "
        "response_header:NAME"
    )


def _literal(parts: list[Field], text: str) -> None:
    if not text:
        return
    if parts and parts[-1].code == LITERAL:
        text = parts.pop().text + text
    parts.append(Field(LITERAL, text))


def _template(spec: str) -> tuple[Field, ...]:
    parts: list[Field] = []
    position = 0
    for match in _TEMPLATE_PART.finditer(spec):
        _literal(parts, spec[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            _literal(parts, token[0])
        elif match.group(1) is None:
            raise ValueError(f"a lone {token!r} at {match.start()}: write {token * 2} for one")
        else:
            parts.append(_named(match.group(1).strip()))
    _literal(parts, spec[position:])
    return tuple(parts)


def _gunicorn(spec: str) -> tuple[Field, ...]:
    parts: list[Field] = []
    position = 0
    for match in _GUNICORN_PART.finditer(spec):
        _literal(parts, spec[position : match.start()])
        position = match.end()
        atom = match.group(1)
        if match.group(0) == "%%":
            _literal(parts, "%")
        elif atom is None:
            raise ValueError(f"a lone '%' at {match.start()}: write %% for one, or %(atom)s")
        elif atom.startswith("{") and atom[-1:] in ("i", "o", "e") and atom[-2:-1] == "}":
            name, kind = atom[1:-2], atom[-1]
            if kind == "e":
                _literal(parts, "-")  # gunicorn's WSGI environ variable: no environ here
            else:
                which = "request_header" if kind == "i" else "response_header"
                parts.append(_named(f"{which}:{name}"))
        elif atom in GUNICORN_ATOMS:
            for piece in GUNICORN_ATOMS[atom]:
                if piece.startswith("'"):
                    _literal(parts, piece.strip("'"))
                else:
                    parts.append(_named(piece))
        else:
            raise ValueError(
                f"unknown gunicorn atom %({atom})s; known: "
                + " ".join(GUNICORN_ATOMS)
                + " {header}i {header}o {variable}e"
            )
    _literal(parts, spec[position:])
    return tuple(parts)


def _json(spec: str) -> tuple[Field, ...]:
    names = spec.partition(":")[2]
    if not names.strip():
        return tuple(_named(name) for name in JSON_FIELDS)
    fields = tuple(_named(name.strip()) for name in names.split(","))
    keys = [field.key for field in fields]
    if len(set(keys)) != len(keys):
        raise ValueError("json: a field is listed twice")
    return fields


def parse_access_format(spec: str) -> AccessFormat:
    """Compile an access-log format (see the module docstring); ``ValueError`` says why not."""
    spec = _PRESETS.get(spec, spec)
    if spec == "json" or spec.startswith("json:"):
        return AccessFormat(_json(spec), json=True)
    fields = _gunicorn(spec) if "%(" in spec else _template(spec)
    if any(
        field.code == LITERAL and ("\n" in field.text or "\r" in field.text) for field in fields
    ):
        raise ValueError("a format is one line: no line breaks")
    return AccessFormat(fields)


def _convert_format(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {type(raw).__name__}")
    parse_access_format(raw)
    return raw


def _convert_metrics_bind(raw: object) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise ValueError(f"expected an address, got {type(raw).__name__}")
    # a scraper speaks HTTP to a socket the master binds itself: no inherited descriptor, and
    # no uwsgi: or fastcgi: protocol in front of the address
    if raw.startswith("fd://") or bind_protocol(raw)[0] != "http":
        raise ValueError(f"{raw!r}: the metrics address is HOST:PORT, [IPv6]:PORT or unix:PATH")
    return validate_bind(raw.strip())


ACCESS_LOG_FORMAT: Kind[str] = Kind(
    "`common`, `combined`, `json`, `json:FIELD,...`, a template of `{field}`s or a gunicorn format",
    _convert_format,
    metavar="FORMAT",
)
METRICS_BIND: Kind[str | None] = Kind(
    "address: `HOST:PORT`, `[IPv6]:PORT` or `unix:PATH`", _convert_metrics_bind, metavar="ADDRESS"
)
