"""One request/response pair on an HTTP/1.1 connection: its state and its response framing.

Split from ``http11`` (which keeps the connection's state machine) and compiled with it.
"""

from __future__ import annotations

from typing import Final

from portico.errors import AppError
from portico.protocols.events import Headers
from portico.protocols.headers import (
    ASKS_CLOSE,
    CHECKED_LIMIT,
    HAS_DATE,
    HAS_SERVER,
    HAS_TE,
    REASONS,
    check_response_field,
    field_lines,
)

__all__ = [
    "COALESCE_LIMIT",
    "CONNECTION_CLOSE",
    "Exchange",
    "error_response",
    "status_line",
    "switching_protocols",
]

# Below this size a body is copied into the same buffer as the head, so a small response is one
# write system call; above it the body is handed on without a copy.
COALESCE_LIMIT: Final = 16 * 1024
_LAST_CHUNK: Final = b"0\r\n\r\n"
CONNECTION_CLOSE: Final = b"connection: close\r\n"
_CONNECTION_KEEP_ALIVE: Final = b"connection: keep-alive\r\n"
_TRANSFER_CHUNKED: Final = b"transfer-encoding: chunked\r\n"
# ``content-length: N\r\n`` for the lengths responses had lately (bounded; cleared when full)
_length_lines: Final[dict[int, bytes]] = {}

_status_lines: Final[dict[int, bytes]] = {}


class _FieldLine:
    """A ``name: value\r\n`` line for a value that changes seldom (Date once a second, Server
    never): built when the value changes, reused for every response in between."""

    __slots__ = ("line", "name", "value")

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.value = b""
        self.line = b""

    def line_for(self, value: bytes) -> bytes:
        if value is not self.value:
            self.value = value
            self.line = b"%s: %s\r\n" % (self.name, value)
        return self.line


_DATE_LINE: Final = _FieldLine(b"date")
_SERVER_LINE: Final = _FieldLine(b"server")


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

    def start_response(  # noqa: PLR0917 -- one call, on the hot path
        self,
        status: int,
        headers: Headers,
        body: bytes,
        end: bool,
        date: bytes,
        server: bytes,
        reason: bytes = b"",
    ) -> list[bytes]:
        """The response head, checked, and the first body piece; sets how the body is framed.

        ``date`` and ``server`` are the values of the fields added when the app did not set them
        (empty: none added).

        Marks the exchange ``response_done`` when ``end`` finished it; the connection then
        drops it. Raises :class:`AppError` before anything is committed.
        """
        # an app's own reason phrase (already checked: no CR, LF or controls) is its own line
        out = [b"HTTP/1.1 %d %s\r\n" % (status, reason) if reason else status_line(status)]
        # Transfer-Encoding is re-added below, once, when the framing really is chunked; the
        # framing logic writes the Connection field
        length, found = field_lines(headers, out)
        content_length = length if length >= 0 else None
        if found & HAS_TE and content_length is not None:
            raise AppError("response has both Content-Length and Transfer-Encoding")
        if status == 204 and content_length is not None:
            raise AppError("a 204 response must not have Content-Length")  # RFC 9110 §8.6
        has_date = found & HAS_DATE
        has_server = found & HAS_SERVER
        if not has_date and date:
            out.append(_DATE_LINE.line_for(date))
        if not has_server and server:
            out.append(_SERVER_LINE.line_for(server))
        no_body = status in (204, 304) or self.head
        if (
            content_length is not None
            and not no_body
            and (len(body) > content_length or (end and len(body) != content_length))
        ):
            # caught before anything is committed, so the app still gets a clean 500
            raise AppError(
                f"response body of {len(body)} bytes does not match Content-Length {content_length}"
            )
        self.response_started = True
        if found & ASKS_CLOSE:
            self.keep_alive = False
        # A request body the client is still sending (or will send after 100 Continue that never
        # came) cannot be skipped safely: finish this response and close (RFC 9110 §10.1.1).
        if not self.body_complete:
            self.keep_alive = False
        self.suppress_body = no_body
        if no_body:
            if end and content_length is None and self.head and body:
                # HEAD answers with the length the GET would have (RFC 9110 §9.3.2)
                out.append(b"content-length: %d\r\n" % len(body))
        elif content_length is not None:
            self.remaining = content_length
        elif end:
            size = len(body)
            length_line = _length_lines.get(size)
            if length_line is None:
                if len(_length_lines) >= CHECKED_LIMIT:
                    _length_lines.clear()
                _length_lines[size] = length_line = b"content-length: %d\r\n" % size
            out.append(length_line)
            self.remaining = size
        elif self.version == "1.1":
            self.chunked = True
            out.append(_TRANSFER_CHUNKED)
        else:
            # HTTP/1.0 has no chunked coding: the end of the body is the end of the connection
            self.keep_alive = False
        if not self.keep_alive:
            out.append(CONNECTION_CLOSE)
        elif self.version == "1.0":
            out.append(_CONNECTION_KEEP_ALIVE)
        out.append(b"\r\n")
        if no_body:
            if end:
                self.response_done = True
            return [b"".join(out)]
        if not self.chunked and len(body) <= COALESCE_LIMIT:
            # the common case: head and a small body in one buffer, one write
            if self.remaining is not None:
                self.remaining -= len(body)
            if end:
                self.check_complete()
                self.response_done = True
            out.append(body)
            return [b"".join(out)]
        framed = self.frame(body, end)
        if end:
            self.response_done = True
        return [b"".join(out), *framed]

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

    def frame_file(self, count: int, end: bool) -> tuple[bytes, bytes]:
        """Account ``count`` body bytes the driver sends itself (``sendfile``); return the
        framing to write before and after them. :class:`AppError` when they overrun the
        Content-Length, or (with ``end``) fall short of it; nothing is committed then."""
        remaining = self.remaining
        if remaining is not None:
            if count > remaining or (end and count != remaining):
                raise AppError(
                    f"file of {count} bytes does not match the Content-Length still due"
                    f" ({remaining})"
                )
            self.remaining = remaining - count
            return b"", b""
        if self.chunked:
            before = b"%x\r\n" % count if count else b""
            after = (b"\r\n" if count else b"") + (_LAST_CHUNK if end else b"")
            return before, after
        return b"", b""

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


def error_response_parts(status: int, detail: str) -> tuple[bytes, bytes]:
    """The fields (each line ended) and the body of an error response Portico writes itself,
    over any protocol (HTTP/1.1 here, uwsgi and FastCGI in ``cgi_response``).

    ``detail`` must be Portico's own words (the events guarantee it), never the peer's bytes.
    """
    body = b"%d %s\n%s\n" % (status, REASONS.get(status, b""), detail.encode("ascii", "replace"))
    extra = b"retry-after: 1\r\n" if status == 503 else b""
    fields = b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n%s" % (
        len(body),
        extra,
    )
    return fields, body


def error_response(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 error response with ``Connection: close``, for the server's own errors.

    ``detail`` must be Portico's own words (the events guarantee it), never client bytes.
    """
    fields, body = error_response_parts(status, detail)
    return b"%s%s%s\r\n%s" % (status_line(status), fields, CONNECTION_CLOSE, body)


def switching_protocols(headers: Headers, date: bytes, server: bytes) -> bytes:
    """A ``101 Switching Protocols`` head with ``headers`` and the Date and Server fields."""
    out = [b"HTTP/1.1 101 Switching Protocols\r\n"]
    for name, value in headers:
        out += (name, b": ", value, b"\r\n")
    if date:
        out += (b"date: ", date, b"\r\n")
    if server:
        out += (b"server: ", server, b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)
