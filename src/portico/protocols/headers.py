"""Field checks and status phrases shared by every HTTP version."""

from __future__ import annotations

import re
from http import HTTPStatus

from portico.errors import AppError

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
