"""An HTTP/2 request head, checked by RFC 9113 §8 and turned into the version-neutral ``Request``.

A request that breaks §8 is *malformed*: :class:`H2StreamError` PROTOCOL_ERROR, so the stream is
reset and the connection carries on (§8.1.1). What is checked:

* pseudo-header fields (§8.3): only ``:method``, ``:scheme``, ``:path``, ``:authority`` (and
  ``:protocol`` for extended CONNECT, RFC 8441 §4), each at most once, all before the regular
  fields; ``:method``, ``:scheme`` and a non-empty ``:path`` present (``:path`` starts with ``/``,
  or is ``*`` for OPTIONS); a CONNECT without ``:protocol`` has ``:authority`` and no ``:scheme``
  or ``:path`` (§8.5);
* field names (§8.2.1): lower-case tokens (a stricter reading than §8.2.1's byte ranges: a name
  that is no RFC 9110 token has no meaning for any app); values without NUL, CR or LF and without
  leading or trailing SP or HTAB;
* connection-specific fields (§8.2.2): ``connection``, ``keep-alive``, ``proxy-connection``,
  ``transfer-encoding`` and ``upgrade`` are malformed; ``te`` may only be ``trailers``;
* ``content-length`` (§8.1.1): digits, one value; the DATA that follows must add up to it;
* ``host`` and ``:authority`` (§8.3.1): when both are sent they must agree; ``:authority`` alone
  becomes a ``host`` field (first among the fields) so apps see one place for the host;
* ``cookie`` (§8.2.3): the crumbs a client may split into several fields are joined with "; ".
"""

from __future__ import annotations

import re
from typing import Final

from portico.protocols.events import Headers, Request, StreamError
from portico.protocols.h2_errors import PROTOCOL_ERROR, H2StreamError
from portico.protocols.request_line import method_cache, valid_host

__all__ = ["check_trailers", "request_from_headers"]

_valid_name = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch
_invalid_value = re.compile(rb"[\x00\r\n]|^[ \t]|[ \t]$").search
_valid_method = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_valid_scheme = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*").fullmatch

# Regular fields that need a look; every other valid field passes straight through.
_HOST: Final = 1
_COOKIE: Final = 2
_CONTENT_LENGTH: Final = 3
_TE: Final = 4
_CONNECTION_SPECIFIC: Final = 5
_SPECIAL: Final[dict[bytes, int]] = {
    b"host": _HOST,
    b"cookie": _COOKIE,
    b"content-length": _CONTENT_LENGTH,
    b"te": _TE,
    b"connection": _CONNECTION_SPECIFIC,
    b"keep-alive": _CONNECTION_SPECIFIC,
    b"proxy-connection": _CONNECTION_SPECIFIC,
    b"transfer-encoding": _CONNECTION_SPECIFIC,
    b"upgrade": _CONNECTION_SPECIFIC,
}

# Fields already found valid: clients send the same ones on every request, and the dynamic table
# hands back the very same bytes objects, so a set look-up replaces two regular expressions.
# Bounded; cleared when full.
_valid_fields: Final[set[tuple[bytes, bytes]]] = set()
_valid_pseudo: Final[set[tuple[bytes, bytes]]] = set()
_VALID_FIELDS_ENTRIES: Final = 4096
_schemes: Final[dict[bytes, str]] = {b"https": "https", b"http": "http"}
_new_tuple: Final = tuple.__new__


def _malformed(stream_id: int, detail: str) -> H2StreamError:
    return H2StreamError(stream_id, PROTOCOL_ERROR, detail)


def _check_field(stream_id: int, field: tuple[bytes, bytes]) -> None:
    if field in _valid_fields:
        return
    name, value = field
    if not _valid_name(name):
        raise _malformed(stream_id, "invalid or upper-case header field name")
    if _invalid_value(value):
        raise _malformed(stream_id, "invalid header field value")
    _remember(_valid_fields, field)


def _remember(valid: set[tuple[bytes, bytes]], field: tuple[bytes, bytes]) -> None:
    if len(valid) >= _VALID_FIELDS_ENTRIES:
        valid.clear()
    valid.add(field)


def _method(stream_id: int, raw: bytes) -> str:
    method = method_cache.get(raw)
    if method is None:
        if not _valid_method(raw):
            raise _malformed(stream_id, "invalid :method")
        method = raw.decode("ascii")
        if len(method_cache) < 64:
            method_cache[raw] = method
    return method


def _content_length(stream_id: int, value: bytes, previous: int) -> int:
    if not value.isdigit() or len(value) > 18:
        raise _malformed(stream_id, "invalid content-length")
    length = int(value)
    if previous >= 0 and previous != length:
        raise _malformed(stream_id, "conflicting content-length fields")
    return length


def request_from_headers(
    stream_id: int, headers: Headers, end_stream: bool, extended_connect: bool
) -> tuple[Request | StreamError, int]:
    """The event for a request head, and its content-length (-1 if none).

    A well-formed request the server will not serve (plain CONNECT, an extended CONNECT protocol
    other than WebSocket) is a :class:`StreamError` with the status to answer.
    """
    method_raw: bytes | None = None
    scheme_raw: bytes | None = None
    path: bytes | None = None
    authority: bytes | None = None
    protocol: bytes | None = None
    out: Headers = []
    cookies: list[bytes] | None = None
    cookie_at = 0
    content_length = -1
    host: bytes | None = None
    count = len(headers)
    index = 0
    # pseudo-header fields first (§8.3)
    while index < count:
        field = headers[index]
        name = field[0]
        if name[:1] != b":":
            break
        index += 1
        value = field[1]
        if field not in _valid_pseudo:  # kept apart: a pseudo-field is never a valid regular one
            if _invalid_value(value):
                raise _malformed(stream_id, "invalid pseudo-header field value")
            _remember(_valid_pseudo, field)
        if name == b":path":
            if path is not None:
                raise _malformed(stream_id, "repeated :path")
            path = value
        elif name == b":method":
            if method_raw is not None:
                raise _malformed(stream_id, "repeated :method")
            method_raw = value
        elif name == b":scheme":
            if scheme_raw is not None:
                raise _malformed(stream_id, "repeated :scheme")
            scheme_raw = value
        elif name == b":authority":
            if authority is not None:
                raise _malformed(stream_id, "repeated :authority")
            authority = value
        elif name == b":protocol" and extended_connect:
            if protocol is not None:
                raise _malformed(stream_id, "repeated :protocol")
            protocol = value
        else:
            raise _malformed(stream_id, "unknown or response pseudo-header field")
    if authority is not None:
        if not authority or not valid_host(authority):
            raise _malformed(stream_id, "invalid :authority")
        out.append((b"host", authority))
    while index < count:
        field = headers[index]
        index += 1
        _check_field(stream_id, field)  # also refuses ":" in a name: a pseudo-field too late
        special = _SPECIAL.get(field[0], 0)
        if special:
            value = field[1]
            if special == _HOST:
                if host is not None:
                    raise _malformed(stream_id, "repeated host")
                host = value
                if authority is not None:
                    if value != authority:
                        raise _malformed(stream_id, "host differs from :authority")
                    continue  # already first in the list
                if not valid_host(value):
                    raise _malformed(stream_id, "invalid host")
            elif special == _COOKIE:
                if cookies is None:
                    cookies = [value]
                    cookie_at = len(out)
                else:
                    cookies.append(value)
                    continue
            elif special == _CONTENT_LENGTH:
                content_length = _content_length(stream_id, value, content_length)
            elif special == _TE:
                if value != b"trailers":
                    raise _malformed(stream_id, "te other than trailers")
            else:
                raise _malformed(stream_id, "connection-specific header field")
        out.append(field)
    if cookies is not None and len(cookies) > 1:
        out[cookie_at] = (b"cookie", b"; ".join(cookies))

    if method_raw is None:
        raise _malformed(stream_id, "missing :method")
    method = _method(stream_id, method_raw)
    upgrade: bytes | None = None
    if method == "CONNECT":
        if protocol is None:  # §8.5: only :method and :authority
            if scheme_raw is not None or path is not None or authority is None:
                raise _malformed(stream_id, "CONNECT with :scheme or :path, or no :authority")
            return StreamError(stream_id, 501, "CONNECT is not supported"), content_length
        # RFC 8441 §4: extended CONNECT carries the target URI like any request
        if scheme_raw is None or path is None or authority is None:
            raise _malformed(stream_id, "extended CONNECT without :scheme, :path or :authority")
        if protocol != b"websocket":
            return StreamError(stream_id, 501, "unsupported :protocol"), content_length
        upgrade = protocol
    elif protocol is not None:
        raise _malformed(stream_id, ":protocol without CONNECT")
    if scheme_raw is None or path is None:
        raise _malformed(stream_id, "missing :scheme or :path")
    scheme = _schemes.get(scheme_raw)
    if scheme is None:
        if not _valid_scheme(scheme_raw):
            raise _malformed(stream_id, "invalid :scheme")
        scheme = scheme_raw.decode("ascii")
    if path[:1] != b"/" and (path != b"*" or method != "OPTIONS"):
        raise _malformed(stream_id, "empty or invalid :path")
    query_at = path.find(b"?")
    if query_at < 0:
        raw_path, query = path, b""
    else:
        raw_path, query = path[:query_at], path[query_at + 1 :]
    if end_stream and content_length > 0:
        raise _malformed(stream_id, "content-length without DATA")
    request: Request = _new_tuple(
        Request,
        (
            stream_id,
            method,
            raw_path,
            query,
            "2",
            out,
            not end_stream,
            False,
            upgrade,
            scheme,
            None,  # proxy_fields: not told; the runtime looks when the peer is a trusted proxy
        ),
    )
    return request, content_length


def check_trailers(stream_id: int, headers: Headers) -> Headers:
    """A trailer section (§8.1): regular fields only, by the same rules as the head."""
    for field in headers:
        if field[0][:1] == b":":
            raise _malformed(stream_id, "pseudo-header field in trailers")
        _check_field(stream_id, field)
        special = _SPECIAL.get(field[0], 0)
        if special == _CONNECTION_SPECIFIC or (special == _TE and field[1] != b"trailers"):
            raise _malformed(stream_id, "connection-specific field in trailers")
    return headers
