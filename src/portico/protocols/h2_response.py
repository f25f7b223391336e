"""An app's response head as an HTTP/2 header block (RFC 9113 §8.3.2, RFC 7541).

The app gives header pairs as it would for HTTP/1.1. Each distinct pair is checked once with
:func:`portico.protocols.headers.check_response_field`, lower-cased (§8.2: upper case is malformed
in HTTP/2), HPACK-encoded, and cached with what the connection must know of it (a content-length,
or a date or server field that replaces the driver's default). Connection-specific fields are
dropped rather than refused (§8.2.2): an app written for HTTP/1.1 may well set ``connection`` or
``transfer-encoding``, and they mean nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from portico.errors import AppError
from portico.protocols.headers import check_response_field, check_status
from portico.protocols.hpack import NEVER_INDEXED, encode_field

__all__ = ["encode_response_head", "encode_trailers"]

_NORMAL: Final = 0
_DROP: Final = 1
_CONTENT_LENGTH: Final = 2
_DATE: Final = 3
_SERVER: Final = 4
_KINDS: Final[dict[bytes, int]] = {
    b"connection": _DROP,
    b"keep-alive": _DROP,
    b"proxy-connection": _DROP,
    b"transfer-encoding": _DROP,
    b"upgrade": _DROP,
    b"content-length": _CONTENT_LENGTH,
    b"date": _DATE,
    b"server": _SERVER,
}

# (name, value) as the app gave it -> (HPACK bytes, kind, content-length or -1). Bounded.
_fields: Final[dict[tuple[bytes, bytes], tuple[bytes, int, int]]] = {}
_FIELDS_ENTRIES: Final = 4096
_status_fields: Final[dict[int, bytes]] = {}


def _field(name: bytes, value: bytes) -> tuple[bytes, int, int]:
    key = (name, value)
    entry = _fields.get(key)
    if entry is not None:
        return entry
    check_response_field(name, value)
    lower = name.lower()
    kind = _KINDS.get(lower, _NORMAL)
    length = -1
    if kind == _CONTENT_LENGTH:
        if not value.isdigit() or len(value) > 18:
            raise AppError(f"invalid content-length {value!r}")
        length = int(value)
        value = b"%d" % length
    # RFC 9110 §5.5: leading and trailing whitespace is not part of a value, and §8.2.1 of
    # RFC 9113 makes it malformed on the wire
    value = value.strip(b" \t")
    entry = (b"" if kind == _DROP else encode_field(lower, value), kind, length)
    if lower not in NEVER_INDEXED:  # credentials are neither cached nor indexed
        if len(_fields) >= _FIELDS_ENTRIES:
            _fields.clear()
        _fields[key] = entry
    return entry


def _status(status: int) -> bytes:
    field = _status_fields.get(status)
    if field is None:
        status = check_status(status)  # 200-599: interim responses are not offered
        field = encode_field(b":status", b"%d" % status)
        _status_fields[status] = field
    return field


def encode_response_head(
    status: int, headers: Iterable[tuple[bytes, bytes]], date: bytes, server: bytes
) -> tuple[bytes, int]:
    """The header block of a response and its declared content-length (-1 if none).

    ``date`` and ``server`` are the driver's defaults, added unless the app sent its own (an empty
    default adds nothing). Raises :class:`AppError` for a field the app may not send.
    """
    parts = [_status(status)]
    content_length = -1
    own_date = own_server = False
    for name, value in headers:
        encoded, kind, length = _field(name, value)
        if kind:
            if kind == _DROP:
                continue
            if kind == _CONTENT_LENGTH:
                if content_length >= 0 and length != content_length:
                    raise AppError("conflicting content-length response headers")
                if content_length >= 0:
                    continue
                content_length = length
            elif kind == _DATE:
                own_date = True
            else:
                own_server = True
        parts.append(encoded)
    if date and not own_date:
        parts.append(encode_field(b"date", date))
    if server and not own_server:
        parts.append(encode_field(b"server", server))
    return b"".join(parts), content_length


def encode_trailers(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A trailer block: regular fields only; connection-specific ones are dropped."""
    parts = []
    for name, value in headers:
        encoded, kind, _length = _field(name, value)
        if kind != _DROP:
            parts.append(encoded)
    return b"".join(parts)
