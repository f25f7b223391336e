"""One request/response pair on an HTTP/1.1 connection: its state and its response framing.

Split from ``http11`` (which keeps the connection's state machine) and compiled with it.
"""

from __future__ import annotations

from typing import Final

from portico.errors import AppError
from portico.protocols.events import Headers
from portico.protocols.headers import REASONS, check_response_field

__all__ = ["COALESCE_LIMIT", "Exchange", "status_line"]

# Below this size a body is copied into the same buffer as the head, so a small response is one
# write system call; above it the body is handed on without a copy.
COALESCE_LIMIT: Final = 16 * 1024
_LAST_CHUNK: Final = b"0\r\n\r\n"

_status_lines: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    line = _status_lines.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))
        _status_lines[status] = line
    return line


class Exchange:
    """The state of one request/response pair, oldest first in ``H1Connection._exchanges``.

    Defaults live on the class so that creating one (once per request) sets only what differs.
    """

    continue_sent = False
    body_complete = True
    response_started = False
    response_done = False
    chunked = False
    close_delimited = False
    suppress_body = False
    #: bytes still owed by a response that declared Content-Length (None when it did not)
    remaining: int | None = None

    def __init__(
        self, stream_id: int, version: str, head: bool, keep_alive: bool, expect: bool
    ) -> None:
        self.stream_id = stream_id
        self.version = version
        self.head = head
        self.keep_alive = keep_alive
        self.expect_continue = expect

    def frame(self, data: bytes, end: bool) -> list[bytes]:
        """Frame a piece of the response body (Content-Length, chunked or close-delimited)."""
        out: list[bytes] = []
        if data:
            remaining = self.remaining
            if remaining is not None:
                if len(data) > remaining:
                    raise AppError("response body longer than its Content-Length")
                self.remaining = remaining - len(data)
                out.append(data)
            elif self.chunked:
                if len(data) <= COALESCE_LIMIT:
                    out.append(b"%x\r\n%b\r\n" % (len(data), data))
                else:
                    out += (b"%x\r\n" % len(data), data, b"\r\n")
            else:
                out.append(data)
        if end:
            self.check_complete()
            if self.chunked:
                out.append(_LAST_CHUNK)
        return out

    def check_complete(self) -> None:
        if self.remaining:
            raise AppError("response body shorter than its Content-Length")

    def last_chunk_with(self, trailers: Headers) -> bytes:
        """The last chunk of a chunked body with a trailer section (RFC 9112 §7.1.2)."""
        for name, value in trailers:
            check_response_field(name, value)
        lines = [b"0\r\n"]
        for name, value in trailers:
            lines += (name, b": ", value, b"\r\n")
        lines.append(b"\r\n")
        self.check_complete()
        return b"".join(lines)
