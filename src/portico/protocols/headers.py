"""Field checks and status phrases shared by every HTTP version."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any, Final

from portico.errors import AppError
from portico.protocols.events import Headers

# RFC 9110 §5.6.2: a field name is a token.
_token = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
is_token = _token.fullmatch

# RFC 9110 §5.5: CR, LF and NUL are never allowed in a field value. An app that puts one there
# would split the response (header injection), so it is an app error, never passed through.
_forbidden_in_value = re.compile(rb"[\x00\r\n]").search

#: RFC 9110 §15: reason phrases for the status line; unknown codes get an empty phrase.
REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


def check_response_field(name: bytes, value: bytes) -> None:
    """Raise :class:`AppError` unless ``name: value`` is a field the app may send."""
    if not isinstance(name, bytes) or not isinstance(value, bytes):
        raise AppError(f"response header names and values must be bytes, got {name!r}: {value!r}")
    if not _token.fullmatch(name):
        raise AppError(f"invalid response header name {name!r}")
    if _forbidden_in_value(value):
        raise AppError(f"response header {name!r} has a CR, LF or NUL in its value")


def check_status(status: object) -> int:
    """Return a valid final status code, or raise :class:`AppError`."""
    if type(status) is not int or not 200 <= status <= 599:
        if isinstance(status, int) and not isinstance(status, bool) and 200 <= status <= 599:
            return int(status)
        raise AppError(f"invalid response status {status!r}: expected an int from 200 to 599")
    return status


# Response fields the framing logic of every protocol owns.
_R_CL: Final = b"content-length"
_R_TE: Final = b"transfer-encoding"
_R_CONN: Final = b"connection"
_R_DATE: Final = b"date"
_R_SERVER: Final = b"server"
_R_WATCHED: Final = frozenset({_R_CL, _R_TE, _R_CONN, _R_DATE, _R_SERVER})

# Response fields already found valid: apps send the same fields over and over, so each is checked
# once, and its line (``name: value\r\n``) is built once. The code says what the field is to the
# framing logic: a Content-Length (its value, parsed: >= 0) or one of the kinds below. Keyed by
# the app's own ``(name, value)`` tuple; bounded, cleared when full.
_F_PLAIN: Final = -1
_F_TE: Final = -2
_F_CONNECTION: Final = -3
_F_CONNECTION_CLOSE: Final = -4
_F_DATE: Final = -5
_F_SERVER: Final = -6
CHECKED_LIMIT: Final = 4096
_checked: Final[dict[tuple[bytes, bytes], tuple[bytes, int]]] = {}

#: What :func:`field_lines` found among an app's fields, besides its Content-Length.
HAS_TE: Final = 1  # Transfer-Encoding: chunked
ASKS_CLOSE: Final = 2  # Connection: close
HAS_DATE: Final = 4
HAS_SERVER: Final = 8


def field_lines(headers: Headers, out: list[bytes]) -> tuple[int, int]:
    """Append the line of each of an app's response fields to ``out``, every field checked
    (:class:`AppError` for one the app may not send), except Transfer-Encoding and Connection,
    which the protocol's framing writes (or, for uwsgi and FastCGI, leaves out). Returns the
    Content-Length (-1: none) and what else was there (``HAS_TE``, ``ASKS_CLOSE``,
    ``HAS_DATE``, ``HAS_SERVER``)."""
    content_length = -1
    found = 0
    checked = _checked
    # Iterated as list[Any]: compiled, the items of a list[tuple[bytes, bytes]] are unpacked
    # and each is built anew as a tuple to be looked up.
    fields: list[Any] = headers
    for field in fields:
        entry = checked.get(field) if type(field) is tuple else None
        if entry is None:
            name, value = field
            entry = _check_field(name, value)
        line, code = entry
        if code != _F_PLAIN:
            if code >= 0:
                if content_length >= 0:
                    raise AppError("a response must have at most one Content-Length")
                content_length = code
            elif code == _F_TE:
                found |= HAS_TE
                continue
            elif code == _F_CONNECTION_CLOSE:
                found |= ASKS_CLOSE
                continue
            elif code == _F_CONNECTION:
                continue
            elif code == _F_DATE:
                found |= HAS_DATE
            else:
                found |= HAS_SERVER
        out.append(line)
    return content_length, found


def _check_field(name: bytes, value: bytes) -> tuple[bytes, int]:
    """Check a response field not seen lately; return (and remember) its line and its code.
    Raises :class:`AppError` (and remembers nothing) for a field the app may not send."""
    check_response_field(name, value)
    lname = name.lower()
    code = _F_PLAIN
    if lname in _R_WATCHED:
        if lname == _R_CL:
            if not value.isdigit():
                raise AppError(f"invalid response Content-Length {value!r}")
            code = int(value)
        elif lname == _R_TE:
            if value.strip().lower() != b"chunked":
                raise AppError("the app may only set Transfer-Encoding: chunked")
            code = _F_TE
        elif lname == _R_CONN:
            # find(), not ``in``: CPython's bytes.__contains__ first tries the operand as an
            # integer and builds (then drops) a TypeError message
            code = _F_CONNECTION_CLOSE if value.lower().find(b"close") >= 0 else _F_CONNECTION
        elif lname == _R_DATE:
            code = _F_DATE
        else:
            code = _F_SERVER
    entry = (b"%s: %s\r\n" % (name, value), code)
    if len(_checked) >= CHECKED_LIMIT:
        _checked.clear()
    _checked[(name, value)] = entry
    return entry
