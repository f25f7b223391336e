"""HTTP/2 frame types, flags and the frames a server writes (RFC 9113 §4.1, §6).

Parsing is not here: the connection reads the 9-byte header in place from its receive buffer and
dispatches on the type, so no object is made per frame. What is here writes frames as ``bytes``.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "ACK",
    "CONTINUATION",
    "DATA",
    "END_HEADERS",
    "END_STREAM",
    "FRAME_HEADER",
    "GOAWAY",
    "HEADERS",
    "PADDED",
    "PING",
    "PREFACE",
    "PRIORITY",
    "PRIORITY_FLAG",
    "PUSH_PROMISE",
    "RST_STREAM",
    "SETTINGS",
    "SETTINGS_ACK_FRAME",
    "WINDOW_UPDATE",
    "frame_header",
    "goaway_frame",
    "header_frames",
    "ping_frame",
    "rst_stream_frame",
    "settings_frame",
    "window_update_frame",
]

#: §3.4: the client connection preface, before its SETTINGS frame
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# §6 frame types
DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

# flags
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20

#: §4.1: length (24 bits, as a byte and a 16-bit half), type, flags, R + stream id (31 bits)
FRAME_HEADER: Final = struct.Struct(">BHBBL")
_pack_header = FRAME_HEADER.pack
_u32: Final = struct.Struct(">L")
_setting: Final = struct.Struct(">HL")
_goaway: Final = struct.Struct(">LL")


def frame_header(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    return _pack_header(length >> 16, length & 0xFFFF, frame_type, flags, stream_id)


def settings_frame(pairs: list[tuple[int, int]]) -> bytes:
    payload = b"".join([_setting.pack(ident, value) for ident, value in pairs])
    return frame_header(len(payload), SETTINGS, 0, 0) + payload


SETTINGS_ACK_FRAME: Final = frame_header(0, SETTINGS, ACK, 0)


def ping_frame(opaque: bytes, ack: bool) -> bytes:
    return frame_header(8, PING, ACK if ack else 0, 0) + opaque


def goaway_frame(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    payload = _goaway.pack(last_stream_id, error_code) + debug
    return frame_header(len(payload), GOAWAY, 0, 0) + payload


def rst_stream_frame(stream_id: int, error_code: int) -> bytes:
    return frame_header(4, RST_STREAM, 0, stream_id) + _u32.pack(error_code)


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return frame_header(4, WINDOW_UPDATE, 0, stream_id) + _u32.pack(increment)


def header_frames(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> list[bytes]:
    """A header block as HEADERS, then CONTINUATION frames if it exceeds ``max_frame`` (§6.10)."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return [frame_header(len(block), HEADERS, flags | END_HEADERS, stream_id), block]
    out = [frame_header(max_frame, HEADERS, flags, stream_id), block[:max_frame]]
    pos = max_frame
    while pos < len(block):
        piece = block[pos : pos + max_frame]
        pos += len(piece)
        last = END_HEADERS if pos >= len(block) else 0
        out.append(frame_header(len(piece), CONTINUATION, last, stream_id))
        out.append(piece)
    return out
