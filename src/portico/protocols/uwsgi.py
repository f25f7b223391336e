"""The uwsgi protocol (nginx's ``uwsgi_pass``): bytes in → events out, responses in → bytes out.

The request ("The uwsgi Protocol", uWSGI docs; what ``ngx_http_uwsgi_module`` writes):

* a 4-byte header: ``modifier1`` (0: a WSGI/HTTP request; nginx's ``uwsgi_modifier1`` default),
  the size of the vars block as a 16-bit little-endian number, ``modifier2`` (0). Any other
  modifier asks for something Portico does not do (PSGI, Rack, strip SCRIPT_NAME, ...): refused;
* the vars block: pairs of (2-byte LE key size, key, 2-byte LE value size, value) whose sizes
  must tile the block exactly; the variables become the request (``protocols.cgi_vars``);
* the body, exactly ``CONTENT_LENGTH`` bytes (nginx buffers a chunked request body and sends its
  length), streamed as ``Body`` events as it arrives. The protocol carries one request per
  connection, so a byte after the body is an error.

The response is an HTTP/1.1 head and the body. What nginx 1.22 accepts (read from
``ngx_http_uwsgi_module`` and checked by ``tests/test_uwsgi.py`` against the real nginx):

* a status line ``HTTP/1.1 200 OK`` (a CGI ``Status:`` field works too, but nginx then passes the
  ``Status`` field on to the client, so the status line is used);
* no chunked coding: nginx drops ``Transfer-Encoding`` and passes the chunk framing to the client
  as body bytes; ``Connection`` and ``Keep-Alive`` are ignored;
* the body ends at the ``Content-Length`` if there is one (nginx stops reading there, and logs a
  truncation as "upstream prematurely closed connection"), else when the connection closes.

So the framing is: the app's Content-Length, or one added when the whole body comes in one piece,
else the body is close-delimited. nginx never reuses a uwsgi connection, so a streamed body costs
nothing in connection reuse; the connection always closes after the response (``keep_alive`` is
always ``False``). A body without Content-Length that the app abandons midway cannot be told from a
complete one by nginx after a plain close: the driver resets such a connection (SO_LINGER 0), and
nginx then ends the client's response incomplete (``tests/test_uwsgi.py`` checks both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from portico.errors import AppError, BadRequest, HeadersTooLarge, ProtocolError
from portico.protocols.cgi_response import CGIResponse
from portico.protocols.cgi_vars import CGIVars, Origin
from portico.protocols.events import Body, EndOfBody, Headers, Request, StreamError
from portico.protocols.exchange import COALESCE_LIMIT, error_response_parts, status_line

__all__ = ["UwsgiConnection", "UwsgiEvent", "UwsgiLimits"]


@dataclass(frozen=True, slots=True)
class UwsgiLimits:
    """Bounds on what one request may make the server hold.

    Each one is a setting; the values (and their defaults) come from the settings table, built in
    one place (``portico.runtime.limits``), never spelled here.
    """

    #: bytes in the vars block (the protocol's own bound is 65535, a 16-bit size)
    max_vars_size: int
    #: variables in the block: about 15 from ``uwsgi_params`` plus one per request header
    max_var_count: int
    #: body bytes (``CONTENT_LENGTH``); 0 means unlimited
    max_body_size: int


UwsgiEvent = Origin | Request | Body | EndOfBody | StreamError

_STREAM: Final = 1  # one request per connection
_HEAD: Final = 0  # reading the packet header and the vars block
_BODY: Final = 1
_DONE: Final = 2  # the request is complete; nothing more may come
_FAILED: Final = 3
_new_tuple: Final = tuple.__new__


class UwsgiConnection:
    """One uwsgi connection (one request), without I/O.

    Input: :meth:`receive_data` and :meth:`receive_eof` return the events the bytes completed:
    ``Origin`` then ``Request``, then ``Body`` pieces and ``EndOfBody`` when it has a body; a
    ``StreamError`` ends it (nothing is parsed after one). Output: :meth:`response_start`,
    :meth:`response_body`, :meth:`response_end` return the bytes to write.
    """

    def __init__(self, limits: UwsgiLimits) -> None:
        self.limits = limits
        self._max_vars_size = limits.max_vars_size
        self._max_var_count = limits.max_var_count
        self._max_body_size = limits.max_body_size
        self._state = _HEAD
        self._pending: bytearray | None = None  # a head that came in pieces
        self._need = 4  # bytes the head needs before it can be parsed further
        self._remaining = 0  # body bytes still to come
        self._response: CGIResponse | None = None

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> list[UwsgiEvent]:
        """Feed bytes from nginx; return the events they complete (possibly none)."""
        events: list[UwsgiEvent] = []
        state = self._state
        if state == _BODY:
            self._body(data, 0, events)
        elif state == _HEAD:
            pending = self._pending
            if pending is not None:
                pending += data
                if len(pending) >= self._need:
                    self._pending = None
                    self._head(bytes(pending), events)
            else:
                self._head(data, events)
        elif state == _DONE and data:
            self._fail(events, 400, "data after the end of the uwsgi request")
        return events

    def receive_eof(self) -> list[UwsgiEvent]:
        """nginx closed its sending side. A request cut short is an error."""
        events: list[UwsgiEvent] = []
        if self._state == _BODY:
            self._fail(events, 400, "connection closed before the request body was complete")
        elif self._state == _HEAD:
            self._state = _FAILED  # no request began: nothing to answer
        return events

    def _fail(self, events: list[UwsgiEvent], status: int, detail: str) -> None:
        self._state = _FAILED
        events.append(_new_tuple(StreamError, (_STREAM, status, detail)))

    def _head(self, buf: bytes, events: list[UwsgiEvent]) -> None:
        size = len(buf)
        if size < 4:
            self._pending = bytearray(buf)
            return
        if buf[0] != 0 or buf[3] != 0:
            self._fail(events, 400, "unsupported uwsgi packet modifiers")
            return
        vars_size = buf[1] | buf[2] << 8
        if vars_size > self._max_vars_size:
            self._fail(events, 431, "uwsgi vars block larger than the limit")
            return
        end = 4 + vars_size
        if size < end:
            self._pending = bytearray(buf)
            self._need = end
            return
        try:
            cgi = self._vars(buf, end)
            cgi.finish(self._max_body_size)
            length = cgi.content_length or 0
            origin = cgi.origin(_STREAM)
            request = cgi.request(_STREAM, length > 0)
        except ProtocolError as exc:
            self._fail(events, exc.status, exc.detail)
            return
        self._response = CGIResponse(request.method == "HEAD")
        events.append(origin)
        events.append(request)
        if length:
            self._state = _BODY
            self._remaining = length
            self._body(buf, end, events)
        else:
            self._state = _DONE
            if size > end:
                self._fail(events, 400, "data after the end of the uwsgi request")

    def _vars(self, buf: bytes, end: int) -> CGIVars:
        """The pairs of the vars block ``buf[4:end]``: sizes must tile it exactly."""
        cgi = CGIVars()
        limit = self._max_var_count
        count = 0
        pos = 4
        while pos < end:
            key_at = pos + 2
            if key_at > end:
                raise BadRequest("uwsgi var sizes do not fit the vars block")
            value_size_at = key_at + (buf[pos] | buf[pos + 1] << 8)
            value_at = value_size_at + 2
            if value_at > end:
                raise BadRequest("uwsgi var sizes do not fit the vars block")
            pos = value_at + (buf[value_size_at] | buf[value_size_at + 1] << 8)
            if pos > end:
                raise BadRequest("uwsgi var sizes do not fit the vars block")
            count += 1
            if count > limit:
                raise HeadersTooLarge("too many uwsgi vars")
            cgi.add(buf[key_at:value_size_at], buf[value_at:pos])
        return cgi

    def _body(self, data: bytes, offset: int, events: list[UwsgiEvent]) -> None:
        size = len(data) - offset
        if size <= 0:
            return
        remaining = self._remaining
        if size < remaining:
            self._remaining = remaining - size
            events.append(_new_tuple(Body, (_STREAM, data[offset:] if offset else data)))
            return
        piece = data if offset == 0 and size == remaining else data[offset : offset + remaining]
        self._remaining = 0
        self._state = _DONE
        events.append(_new_tuple(Body, (_STREAM, piece)))
        events.append(_new_tuple(EndOfBody, (_STREAM, [])))
        if size > remaining:
            self._fail(events, 400, "data after the end of the uwsgi request")

    # ------------------------------------------------------------------ output

    @property
    def keep_alive(self) -> bool:
        """Always ``False``: a uwsgi connection carries one request (nginx never reuses it)."""
        return False

    @property
    def response_started(self) -> bool:
        return self._response is not None and self._response.started

    @property
    def response_done(self) -> bool:
        return self._response is not None and self._response.done

    def _current(self) -> CGIResponse:
        response = self._response
        if response is None:
            raise AppError("no request to answer")
        return response

    def response_start(
        self,
        status: int,
        headers: Headers,
        body: bytes = b"",
        *,
        end: bool = True,
        date: bytes = b"",
        server: bytes = b"",
        reason: bytes = b"",
    ) -> list[bytes]:
        """Serialize the response head (and, if given, the first body piece).

        ``date`` and ``server`` are values for the ``Date`` and ``Server`` fields, added when the
        app did not set them (``reason``: the app's own reason phrase, else the standard one); nginx
        adds its own ``Date`` (and ``Server``) when they are empty. Raises :class:`AppError` for an
        invalid response; nothing was produced then.
        """
        response = self._current()
        # an app's own reason phrase (checked by the bridge: no CR, LF or controls) goes out as is
        first = b"HTTP/1.1 %d %s\r\n" % (status, reason) if reason else status_line(status)
        head = response.head(first, status, headers, body, end, date, server)
        if response.suppress_body or not body:
            return [head]
        if len(body) <= COALESCE_LIMIT:
            return [head + body]  # head and a small body in one buffer, one write
        return [head, body]

    def response_body(self, data: bytes, *, end: bool = False) -> list[bytes]:
        """Serialize a piece of the body; the body is sent as it is (no chunked coding)."""
        response = self._current()
        response.body(data, end)
        if response.suppress_body or not data:
            return []
        return [data]

    def response_end(self, trailers: Headers | None = None) -> list[bytes]:
        """End the response. ``trailers`` are dropped: uwsgi (and nginx) carry none."""
        return self.response_body(b"", end=True)

    def error_response(self, status: int, detail: str) -> bytes:
        """A complete error response, or ``b""`` once a response has started.

        ``detail`` must be Portico's own words (the events guarantee it), never nginx's bytes.
        """
        response = self._response
        if response is not None and response.started:
            return b""
        self._response = done = CGIResponse(False)
        done.started = done.done = True
        fields, body = error_response_parts(status, detail)
        return b"%s%s\r\n%s" % (status_line(status), fields, body)
