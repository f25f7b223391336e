"""HTTP/2 error codes (RFC 9113 §7) and the exceptions that carry them.

Each exception says what must happen to the peer: a :class:`H2ConnectionError` ends the connection
with GOAWAY and its ``error_code``; a :class:`H2StreamError` ends one stream with RST_STREAM. They
are raised on error paths only, and caught inside the connection, which turns them into frames.

This module is not compiled (it is not in ``setup.py``'s HOT_PATH) on purpose: its classes derive
from :class:`portico.errors.ProtocolError`, which lives in an uncompiled module, and mypyc's native
classes may not inherit from a class of an uncompiled module.
"""

from __future__ import annotations

from typing import Final

from portico.errors import ProtocolError

__all__ = [
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "FLOW_CONTROL_ERROR",
    "FRAME_SIZE_ERROR",
    "HTTP_1_1_REQUIRED",
    "INADEQUATE_SECURITY",
    "INTERNAL_ERROR",
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "REFUSED_STREAM",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "CompressionError",
    "H2ConnectionError",
    "H2StreamError",
    "HeaderListTooLarge",
]

NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FLOW_CONTROL_ERROR: Final = 0x3
SETTINGS_TIMEOUT: Final = 0x4
STREAM_CLOSED: Final = 0x5
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9
CONNECT_ERROR: Final = 0xA
ENHANCE_YOUR_CALM: Final = 0xB
INADEQUATE_SECURITY: Final = 0xC
HTTP_1_1_REQUIRED: Final = 0xD


class H2ConnectionError(ProtocolError):
    """The peer broke the connection as a whole: GOAWAY ``error_code``, then close (§5.4.1)."""

    def __init__(self, error_code: int, detail: str) -> None:
        super().__init__(detail)
        self.error_code = error_code


class H2StreamError(ProtocolError):
    """The peer broke one stream: RST_STREAM ``error_code`` on ``stream_id`` (§5.4.2)."""

    def __init__(self, stream_id: int, error_code: int, detail: str) -> None:
        super().__init__(detail)
        self.stream_id = stream_id
        self.error_code = error_code


class CompressionError(H2ConnectionError):
    """A header block could not be decoded (RFC 7541 §2.3.3, §4.2, §5.2): the HPACK state of the
    two ends can no longer agree, so the connection ends with COMPRESSION_ERROR (RFC 9113 §4.3)."""

    def __init__(self, detail: str) -> None:
        super().__init__(COMPRESSION_ERROR, detail)


class HeaderListTooLarge(ProtocolError):
    """A decoded header list passed the limit. The block was still decoded to its end, so the
    HPACK state stays in step and only the request is refused, with 431 (RFC 9113 §10.5.1)."""

    status = 431
