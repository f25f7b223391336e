"""The response head and body bookkeeping shared by the uwsgi and FastCGI protocols.

Both answer nginx with an HTTP-like head made from the app's header pairs: uwsgi with an HTTP/1.1
status line, FastCGI with a CGI ``Status:`` field (RFC 3875 §6.3.3). Neither has a chunked coding
or trailers: nginx's uwsgi and FastCGI modules pass a chunked body through undecoded and drop the
``Transfer-Encoding`` field, so the body goes as it is and its end is the protocol's (the end of
the connection for uwsgi, the empty ``FCGI_STDOUT`` record for FastCGI). A ``Content-Length``, the
app's or the one added when the whole body is known at once, lets nginx check the body and
send the length on. The checks are those of HTTP/1.1 (``protocols/exchange.py``): the same field
validation, the same Content-Length rules, no body for HEAD, 204 and 304.
"""

from __future__ import annotations

from portico.errors import AppError
from portico.protocols.events import Headers
from portico.protocols.headers import HAS_DATE, HAS_SERVER, field_lines

__all__ = ["CGIResponse"]


class CGIResponse:
    """The response to one request: its head, then how much body is still owed.

    Defaults live on the class so that creating one (once per request) sets only what differs.
    """

    started = False
    done = False
    #: HEAD, 204 and 304: body pieces are accepted and dropped
    suppress_body = False
    #: bytes still owed by a response that declared Content-Length (``None`` when it did not)
    remaining: int | None = None

    def __init__(self, head_request: bool) -> None:
        self.head_request = head_request

    def head(  # noqa: PLR0917 -- one call per request, on the hot path
        self,
        first_line: bytes,
        status: int,
        headers: Headers,
        body: bytes,
        end: bool,
        date: bytes,
        server: bytes,
    ) -> bytes:
        """The head (``first_line``, the fields, the blank line), all checked before anything is
        committed: raises :class:`AppError` and changes nothing for an invalid response.

        Then accounts for ``body``, the first piece, like :meth:`body`; the caller sends it unless
        :attr:`suppress_body`. ``date`` and ``server`` are values added when the app did not set
        those fields (empty: not added).
        """
        if self.started:
            raise AppError("response already started")
        out = [first_line]
        # the checks and lines of HTTP/1.1's; Transfer-Encoding and Connection are left out: the
        # protocol frames the body (nginx would not decode chunks), and Connection is hop-by-hop
        # (nginx ignores it from these upstreams)
        length, found = field_lines(headers, out)
        content_length = length if length >= 0 else None
        has_date = found & HAS_DATE
        has_server = found & HAS_SERVER
        if not has_date and date:
            out += (b"date: ", date, b"\r\n")
        if not has_server and server:
            out += (b"server: ", server, b"\r\n")
        no_body = status in (204, 304) or self.head_request
        if status == 204 and content_length is not None:
            raise AppError("a 204 response must not have Content-Length")  # RFC 9110 §8.6
        if (
            content_length is not None
            and not no_body
            and (len(body) > content_length or (end and len(body) != content_length))
        ):
            # caught before anything is committed, so the app still gets a clean 500
            raise AppError(
                f"response body of {len(body)} bytes does not match Content-Length {content_length}"
            )
        if no_body:
            if end and content_length is None and self.head_request and body:
                # HEAD answers with the length the GET would have (RFC 9110 §9.3.2)
                out.append(b"content-length: %d\r\n" % len(body))
        elif content_length is not None:
            self.remaining = content_length - len(body)
        elif end:
            out.append(b"content-length: %d\r\n" % len(body))
            self.remaining = 0
        out.append(b"\r\n")
        self.started = True
        self.suppress_body = no_body
        self.done = end
        return b"".join(out)

    def body(self, data: bytes, end: bool) -> None:
        """Account for a piece of the body; raises :class:`AppError` when it breaks the
        declared Content-Length."""
        if not self.started or self.done:
            raise AppError("response body outside a started response")
        remaining = self.remaining
        if remaining is not None and not self.suppress_body:
            if len(data) > remaining:
                raise AppError("response body longer than its Content-Length")
            remaining -= len(data)
            self.remaining = remaining
            if end and remaining:
                raise AppError("response body shorter than its Content-Length")
        self.done = end
