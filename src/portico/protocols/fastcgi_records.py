"""The FastCGI record layout (FastCGI Specification §3.3, §3.4, §8): reading name-value pairs and
writing the records this side sends. ``fastcgi`` keeps the connection's state machine.
"""

from __future__ import annotations

import struct
from typing import Final

from portico.errors import BadRequest, HeadersTooLarge
from portico.protocols.cgi_vars import CGIVars
from portico.protocols.exchange import COALESCE_LIMIT
from portico.protocols.headers import REASONS

# §8: record types, flags, roles, protocol statuses
VERSION: Final = 1
BEGIN_REQUEST: Final = 1
ABORT_REQUEST: Final = 2
END_REQUEST: Final = 3
PARAMS: Final = 4
STDIN: Final = 5
STDOUT: Final = 6
GET_VALUES: Final = 9
GET_VALUES_RESULT: Final = 10
UNKNOWN_TYPE: Final = 11
KEEP_CONN: Final = 1
RESPONDER: Final = 1
REQUEST_COMPLETE: Final = 0
CANT_MPX_CONN: Final = 1
UNKNOWN_ROLE: Final = 3
#: §3.3: contentLength is 16 bits
MAX_CONTENT: Final = 65535

# version, type, requestId, contentLength, paddingLength, reserved. Records are not padded: the
# spec only recommends 8-byte alignment (§3.3), nginx reads any padding, and padding costs: in
# bench/gwproto.py (both pure Python) a small response takes 2.1 us padded against 1.1 us, and
# 10 x 100 KB 51 buffers against 41 (the padding of a large piece is one more buffer).
_header: Final = struct.Struct(">BBHHBx").pack
_end_request_body: Final = struct.Struct(">IB3x").pack
_status_fields: Final[dict[int, bytes]] = {}


def record_header(record_type: int, request_id: int, length: int) -> bytes:
    return _header(VERSION, record_type, request_id, length, 0)


def status_field(status: int) -> bytes:
    """RFC 3875 §6.3.3: ``Status: 200 OK``, the CGI form of the status line."""
    line = _status_fields.get(status)
    if line is None:
        line = b"Status: %d %s\r\n" % (status, REASONS.get(status, b""))
        _status_fields[status] = line
    return line


def end_request(request_id: int, protocol_status: int) -> bytes:
    """§5.5: FCGI_END_REQUEST with appStatus 0."""
    return _header(VERSION, END_REQUEST, request_id, 8, 0) + _end_request_body(0, protocol_status)


def stdout_end(request_id: int) -> bytes:
    """The empty FCGI_STDOUT that ends the stream (§5.3), then FCGI_END_REQUEST."""
    return _header(VERSION, STDOUT, request_id, 0, 0) + end_request(request_id, REQUEST_COMPLETE)


def unknown_type(record_type: int) -> bytes:
    """§4.2: the answer to a management record of a type this side does not know."""
    return _header(VERSION, UNKNOWN_TYPE, 0, 8, 0) + bytes((record_type, 0, 0, 0, 0, 0, 0, 0))


#: what the FastCGI serializer returns: a large body is cut into 64 KiB records without a copy
Chunks = list[bytes | memoryview]


def stdout_records(request_id: int, pieces: list[bytes], end: bool) -> Chunks:
    """§5.3: the pieces as FCGI_STDOUT records (at most 65535 bytes of content each); with
    ``end``, the stream's end and FCGI_END_REQUEST.

    A small piece shares a buffer with its header (one write); a large one is handed on, and
    one over 65535 bytes is cut into memoryview slices: copying the slices would cost about
    0.4 ms per MiB, the views 4 us (bench/gwproto.py).
    """
    out: Chunks = []
    for data in pieces:
        size = len(data)
        if size <= COALESCE_LIMIT:
            out.append(_header(VERSION, STDOUT, request_id, size, 0) + data)
        elif size <= MAX_CONTENT:
            out += (_header(VERSION, STDOUT, request_id, size, 0), data)
        else:
            view = memoryview(data)
            for start in range(0, size, MAX_CONTENT):
                piece = view[start : start + MAX_CONTENT]
                out += (_header(VERSION, STDOUT, request_id, len(piece), 0), piece)
    if end:
        tail = stdout_end(request_id)
        last = out[-1] if out else None
        if type(last) is bytes and len(last) <= COALESCE_LIMIT:
            out[-1] = last + tail  # one buffer: one write for a small response
        else:
            out.append(tail)
    return out


def _length(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """§3.4: a length at ``pos`` (1 byte, or 4 with the high bit set) and where it ends."""
    if pos >= end:
        raise BadRequest("FastCGI name-value lengths do not fit the record")
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    if pos + 4 > end:
        raise BadRequest("FastCGI name-value lengths do not fit the record")
    return (first & 0x7F) << 24 | buf[pos + 1] << 16 | buf[pos + 2] << 8 | buf[pos + 3], pos + 4


def read_params(params: bytes, cgi: CGIVars, max_count: int) -> None:
    """§3.4/§5.2: every name-value pair of the params stream into ``cgi``; the lengths must tile
    the stream exactly."""
    count = 0
    pos = 0
    end = len(params)
    while pos < end:
        # most lengths are one byte: read those here, the 4-byte form in _length
        name_length = params[pos]
        if name_length < 0x80:
            pos += 1
        else:
            name_length, pos = _length(params, pos, end)
        value_length = params[pos] if pos < end else 0x80
        if value_length < 0x80:
            pos += 1
        else:
            value_length, pos = _length(params, pos, end)
        name_end = pos + name_length
        value_end = name_end + value_length
        if value_end > end:
            raise BadRequest("FastCGI name-value lengths do not fit the record")
        count += 1
        if count > max_count:
            raise HeadersTooLarge("too many FastCGI params")
        cgi.add(params[pos:name_end], params[name_end:value_end])
        pos = value_end


def get_values_result(query: bytes, values: dict[bytes, bytes]) -> bytes:
    """§4.1: FCGI_GET_VALUES_RESULT with the names of ``query`` found in ``values``; the others
    are omitted. ``values`` holds short names and values only (1-byte lengths)."""
    answer = []
    pos = 0
    end = len(query)
    while pos < end:
        name_length, pos = _length(query, pos, end)
        value_length, pos = _length(query, pos, end)
        name_end = pos + name_length
        if name_end + value_length > end:
            raise BadRequest("FastCGI name-value lengths do not fit the record")
        name = query[pos:name_end]
        value = values.get(name)
        if value is not None:
            answer.append(bytes((len(name), len(value))) + name + value)
        pos = name_end + value_length
    body = b"".join(answer)
    return _header(VERSION, GET_VALUES_RESULT, 0, len(body), 0) + body
