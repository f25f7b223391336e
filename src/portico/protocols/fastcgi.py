"""FastCGI (nginx's ``fastcgi_pass``): bytes in → events out, responses in → bytes out.

The FastCGI Specification (Open Market, 1996), Responder role only, one request at a time:

* records (§3.3): version 1, type, 16-bit request id, 16-bit content length, padding length, a
  reserved byte, the content, the padding. Another version is an error;
* ``FCGI_BEGIN_REQUEST`` (§5.1) starts a request; a role other than ``FCGI_RESPONDER`` is answered
  at once with ``FCGI_END_REQUEST``/``FCGI_UNKNOWN_ROLE`` and the records of that request id are
  then ignored (§3.3: records of an inactive request id are ignored). ``FCGI_KEEP_CONN`` (nginx's
  ``fastcgi_keep_conn on``) keeps the connection for the next request; without it the connection
  closes after ``FCGI_END_REQUEST`` (§3.5);
* ``FCGI_PARAMS`` (§5.2): name-value pairs with 1- or 4-byte lengths (§3.4), possibly split across
  records, ended by an empty record; they become the request (``protocols.cgi_vars``);
* ``FCGI_STDIN`` (§5.3): the body, streamed as ``Body`` events as it arrives, ended by an empty
  record. With a ``CONTENT_LENGTH`` the body must have exactly that length; without one (nginx's
  ``fastcgi_request_buffering off`` with a chunked upload) the ``Request`` waits for the first
  ``FCGI_STDIN`` record: empty means no body, data means a body of unknown length;
* ``FCGI_ABORT_REQUEST`` (§5.4) becomes :class:`Aborted` (the driver treats it as a client
  disconnect, then writes :meth:`FastCGIConnection.abort_response`); before the ``Request`` was
  sent it is answered at once. One for a request already ended is ignored (§3.3);
* management records (request id 0, §4): ``FCGI_GET_VALUES`` is answered with
  ``FCGI_GET_VALUES_RESULT`` for the names asked that Portico knows (``FCGI_MAX_CONNS``,
  ``FCGI_MAX_REQS``, ``FCGI_MPXS_CONNS`` = 0); any other type gets ``FCGI_UNKNOWN_TYPE``;
* multiplexing is not supported (``FCGI_MPXS_CONNS`` = 0): a ``FCGI_BEGIN_REQUEST`` while a
  request is active is answered ``FCGI_CANT_MPX_CONN`` and ends the connection, as do records
  for another request id, records out of order and ``FCGI_DATA`` (Filter role only).

The response is ``FCGI_STDOUT`` records carrying a CGI response (RFC 3875 §6): ``Status: 200 OK``,
the fields, a blank line, the body; then an empty ``FCGI_STDOUT`` and ``FCGI_END_REQUEST``
(appStatus 0, ``FCGI_REQUEST_COMPLETE``). nginx reads the head with its HTTP field parser, refuses
a first record that is not ``FCGI_STDOUT``/``FCGI_STDERR`` or an empty ``FCGI_STDOUT`` before the
head, passes a chunked body through undecoded, and keeps the connection only when
``FCGI_END_REQUEST`` ends a read; so nothing is ever written after ``FCGI_END_REQUEST`` until the
next request. Records are not padded: the spec only recommends 8-byte alignment (§3.3), nginx
parses any padding byte by byte, and padding would add a buffer to every large write.

When an app fails after its response started, the driver ends the connection by a reset, without
``FCGI_END_REQUEST``: nginx then ends the client's response incomplete (without
``fastcgi_keep_conn`` it would take a plain close for the end of the body).

Any protocol error returns a ``StreamError`` (never raises); the connection ends after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

from portico.errors import AppError, BadRequest, ContentTooLarge, HeadersTooLarge, ProtocolError
from portico.protocols.cgi_response import CGIResponse
from portico.protocols.cgi_vars import CGIVars, Origin
from portico.protocols.events import Body, EndOfBody, Headers, Request, StreamError
from portico.protocols.exchange import COALESCE_LIMIT, error_response_parts
from portico.protocols.fastcgi_records import (
    ABORT_REQUEST,
    BEGIN_REQUEST,
    CANT_MPX_CONN,
    GET_VALUES,
    KEEP_CONN,
    PARAMS,
    REQUEST_COMPLETE,
    RESPONDER,
    STDIN,
    STDOUT,
    UNKNOWN_ROLE,
    VERSION,
    Chunks,
    end_request,
    get_values_result,
    read_params,
    record_header,
    status_field,
    stdout_end,
    stdout_records,
    unknown_type,
)

__all__ = ["Aborted", "FastCGIConnection", "FastCGIEvent", "FastCGILimits", "Reply"]


@dataclass(frozen=True, slots=True)
class FastCGILimits:
    """Bounds on what one request may make the server hold.

    Each one is a setting; the values (and their defaults) come from the settings table, built in
    one place (``portico.runtime.limits``), never spelled here.
    """

    #: bytes of ``FCGI_PARAMS`` content for one request, all records together
    max_params_size: int
    #: name-value pairs: about 20 from ``fastcgi_params`` plus one per request header
    max_param_count: int
    #: body bytes; 0 means unlimited
    max_body_size: int
    #: content of a management record that must be read whole (``FCGI_GET_VALUES``)
    max_management_size: int
    #: what ``FCGI_MAX_CONNS`` and ``FCGI_MAX_REQS`` report (one request per connection, so the
    #: two are the same): the worker's connection limit
    max_connections: int


class Aborted(NamedTuple):
    """The web server aborted the request (``FCGI_ABORT_REQUEST``): like a client disconnect.

    The driver stops the app and writes :meth:`FastCGIConnection.abort_response`.
    """

    stream_id: int


class Reply(NamedTuple):
    """Records the protocol answers by itself (management, a refused request): write them now.

    ``close``: the connection ends once they are written.
    """

    data: bytes
    close: bool


FastCGIEvent = Origin | Request | Body | EndOfBody | StreamError | Aborted | Reply

# The request's state: which records may come next. A (state, type) pair missing from
# _TRANSITIONS is a record out of order, and ends the connection.
_IDLE: Final = 0  # no active request: waiting for FCGI_BEGIN_REQUEST
_IN_PARAMS: Final = 1
_IN_STDIN: Final = 2
_INPUT_DONE: Final = 3  # the empty FCGI_STDIN came (or the request was aborted)
_CLOSED: Final = 4  # an error, or the connection ends after the response: input is ignored
_ABORTED: Final = 5  # aborted before its input ended: the rest of it is skipped

# What a record does in a state (the table key is ``state << 8 | type``).
_A_BEGIN: Final = 1
_A_PARAMS: Final = 2
_A_STDIN: Final = 3
_A_ABORT: Final = 4
_A_SKIP: Final = 5
_A_SECOND_BEGIN: Final = 6

_TRANSITIONS: Final[dict[int, int]] = {
    _IDLE << 8 | BEGIN_REQUEST: _A_BEGIN,
    # §3.3: a record of an inactive request is ignored (an abort that crossed our END_REQUEST)
    _IDLE << 8 | ABORT_REQUEST: _A_SKIP,
    _IN_PARAMS << 8 | PARAMS: _A_PARAMS,
    _IN_PARAMS << 8 | ABORT_REQUEST: _A_ABORT,
    _IN_PARAMS << 8 | BEGIN_REQUEST: _A_SECOND_BEGIN,
    _IN_STDIN << 8 | STDIN: _A_STDIN,
    _IN_STDIN << 8 | ABORT_REQUEST: _A_ABORT,
    _IN_STDIN << 8 | BEGIN_REQUEST: _A_SECOND_BEGIN,
    _INPUT_DONE << 8 | ABORT_REQUEST: _A_ABORT,
    _INPUT_DONE << 8 | BEGIN_REQUEST: _A_SECOND_BEGIN,
    # records the web server sent before it saw its own abort (§5.4)
    _ABORTED << 8 | STDIN: _A_SKIP,
    _ABORTED << 8 | ABORT_REQUEST: _A_SKIP,
    _ABORTED << 8 | BEGIN_REQUEST: _A_SECOND_BEGIN,
}

# Where the content of the record being read goes.
_SINK_SKIP: Final = 0
_SINK_BODY: Final = 1
_SINK_COLLECT: Final = 2  # kept in _collected; _after says what happens at its end
_AFTER_NONE: Final = 0
_AFTER_BEGIN: Final = 1
_AFTER_VALUES: Final = 2

_new_tuple: Final = tuple.__new__


class FastCGIConnection:
    """One FastCGI connection, without I/O: requests one after another (``FCGI_KEEP_CONN``).

    Input: :meth:`receive_data` and :meth:`receive_eof` return the events the bytes completed:
    ``Origin`` then ``Request``, ``Body`` pieces and ``EndOfBody`` when it has a body; ``Aborted``;
    ``Reply`` (bytes to write now); ``StreamError`` ends the connection. Output:
    :meth:`response_start`, :meth:`response_body`, :meth:`response_end` return the bytes of the
    response to the active request; when it ends, :attr:`keep_alive` says whether the connection
    may carry another one.
    """

    def __init__(self, limits: FastCGILimits) -> None:
        self.limits = limits
        self._max_params_size = limits.max_params_size
        self._max_param_count = limits.max_param_count
        self._max_body_size = limits.max_body_size
        self._events: list[FastCGIEvent] = []
        self._state = _IDLE
        self._stream_id = 0
        self._active_stream = 0  # the stream id of the announced active request, 0 if none
        # the record being read
        self._header_part = bytearray()  # a record header split across reads
        self._content_left = 0
        self._padding_left = 0
        self._sink = _SINK_SKIP
        self._after = _AFTER_NONE
        self._collected: list[bytes] = []
        # the active request
        self._request_id = 0
        self._ignored_id = 0  # an ended request whose remaining records are skipped (§3.3)
        self._keep_conn = False
        self._params: list[bytes] = []
        self._params_size = 0
        self._deferred: CGIVars | None = None  # the Request waits for the first FCGI_STDIN
        self._content_length: int | None = None
        self._has_body = False
        self._received = 0
        self._aborted = False
        self._response: CGIResponse | None = None
        self._closing = False

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> list[FastCGIEvent]:
        """Feed bytes from the web server; return the events they complete (possibly none)."""
        events: list[FastCGIEvent] = []
        if self._state == _CLOSED:
            return events
        self._events = events
        pos = 0
        size = len(data)
        try:
            while pos < size:
                left = self._content_left
                if left:
                    take = min(size - pos, left)
                    self._content(data, pos, take)
                    pos += take
                    self._content_left = left - take
                    if take == left:
                        self._content_end()
                elif self._padding_left:
                    take = min(self._padding_left, size - pos)
                    pos += take
                    self._padding_left -= take
                elif self._header_part:
                    part = self._header_part
                    take = min(8 - len(part), size - pos)
                    part += data[pos : pos + take]
                    pos += take
                    if len(part) == 8:
                        self._header_part = bytearray()
                        self._header(bytes(part), 0)
                elif size - pos >= 8:
                    self._header(data, pos)
                    pos += 8
                else:
                    self._header_part = bytearray(data[pos:])
                    pos = size
                if self._state == _CLOSED:
                    break
        except ProtocolError as exc:
            self._fail(exc.status, exc.detail)
        return events

    def receive_eof(self) -> list[FastCGIEvent]:
        """The web server closed its sending side. A request body cut short is an error."""
        events: list[FastCGIEvent] = []
        self._events = events
        if self._state == _IN_STDIN and self._active_stream and self._has_body:
            self._fail(400, "connection closed before the request body was complete")
        else:
            self._closing = True
            if not self._active_stream:
                self._state = _CLOSED
        return events

    def _fail(self, status: int, detail: str) -> None:
        # a request that was never announced gets the next stream id, as in http11
        stream_id = self._active_stream or self._stream_id + 1
        self._state = _CLOSED
        self._closing = True
        self._events.append(_new_tuple(StreamError, (stream_id, status, detail)))

    def _header(self, buf: bytes, at: int) -> None:
        """A record header (§3.3) at ``buf[at:at + 8]``: decide where its content goes."""
        if buf[at] != VERSION:
            raise BadRequest("unsupported FastCGI version")
        record_type = buf[at + 1]
        request_id = buf[at + 2] << 8 | buf[at + 3]
        length = buf[at + 4] << 8 | buf[at + 5]
        self._content_left = length
        self._padding_left = buf[at + 6]
        self._sink = _SINK_SKIP
        self._after = _AFTER_NONE
        if request_id == 0:
            self._management(record_type, length)
            return
        state = self._state
        if state == _IDLE:
            if request_id == self._ignored_id and record_type != BEGIN_REQUEST:
                return
        elif request_id != self._request_id:
            if record_type == BEGIN_REQUEST:
                # §5.5: refuse it as the spec says, then end the connection
                self._events.append(
                    _new_tuple(Reply, (end_request(request_id, CANT_MPX_CONN), False))
                )
                raise BadRequest("FastCGI multiplexing is not supported")
            raise BadRequest("FastCGI record for a request that is not active")
        action = _TRANSITIONS.get(state << 8 | record_type)
        if action is None:
            raise BadRequest("FastCGI record out of order")
        if action == _A_STDIN:
            self._stdin(length)
        elif action == _A_PARAMS:
            if length == 0:
                self._params_end()
            else:
                self._params_size += length
                if self._params_size > self._max_params_size:
                    raise HeadersTooLarge("FastCGI params larger than the limit")
                self._sink = _SINK_COLLECT
                self._collected = self._params
        elif action == _A_BEGIN:
            if length != 8:
                raise BadRequest("malformed FCGI_BEGIN_REQUEST")
            self._request_id = request_id
            self._sink = _SINK_COLLECT
            self._collected = []
            self._after = _AFTER_BEGIN
        elif action == _A_ABORT:
            self._abort()
        elif action == _A_SECOND_BEGIN:
            raise BadRequest("FCGI_BEGIN_REQUEST for a request already active")
        # _A_SKIP: the content is skipped

    def _management(self, record_type: int, length: int) -> None:
        if record_type == GET_VALUES:
            if length > self.limits.max_management_size:
                raise BadRequest("FastCGI management record larger than the limit")
            self._sink = _SINK_COLLECT
            self._collected = []
            self._after = _AFTER_VALUES
            if length == 0:
                self._content_end()
            return
        # §4.2: a management record of a type this side does not know
        self._events.append(_new_tuple(Reply, (unknown_type(record_type), False)))

    def _content(self, data: bytes, pos: int, take: int) -> None:
        sink = self._sink
        if sink == _SINK_SKIP:
            return
        piece = data if pos == 0 and take == len(data) else data[pos : pos + take]
        if sink == _SINK_BODY:
            self._events.append(_new_tuple(Body, (self._stream_id, piece)))
        else:
            self._collected.append(piece)

    def _content_end(self) -> None:
        after = self._after
        if after == _AFTER_NONE:
            return
        content = b"".join(self._collected)
        self._collected = []
        if after == _AFTER_BEGIN:
            self._begin(content)
        else:
            self._get_values(content)

    def _begin(self, content: bytes) -> None:
        """§5.1: FCGI_BeginRequestBody is role (2 bytes), flags, 5 reserved bytes."""
        role = content[0] << 8 | content[1]
        self._keep_conn = keep = bool(content[2] & KEEP_CONN)
        request_id = self._request_id
        if role != RESPONDER:
            self._ignored_id = request_id
            self._request_id = 0
            close = not keep
            self._events.append(_new_tuple(Reply, (end_request(request_id, UNKNOWN_ROLE), close)))
            if close:
                self._state = _CLOSED
                self._closing = True
            return
        self._ignored_id = 0
        self._state = _IN_PARAMS
        self._params = []
        self._params_size = 0
        self._content_length = None
        self._received = 0
        self._aborted = False
        self._response = None

    def _params_end(self) -> None:
        params = b"".join(self._params)
        self._params = []
        cgi = CGIVars()
        read_params(params, cgi, self._max_param_count)
        cgi.finish(self._max_body_size)
        self._state = _IN_STDIN
        self._content_length = length = cgi.content_length
        if length is None:
            self._deferred = cgi  # the first FCGI_STDIN tells whether there is a body
        else:
            self._announce(cgi, length > 0)

    def _announce(self, cgi: CGIVars, has_body: bool) -> None:
        self._stream_id = stream_id = self._stream_id + 1
        self._active_stream = stream_id
        self._has_body = has_body
        origin = cgi.origin(stream_id)
        request = cgi.request(stream_id, has_body)
        self._response = CGIResponse(request.method == "HEAD")
        self._events.append(origin)
        self._events.append(request)

    def _stdin(self, length: int) -> None:
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            self._announce(deferred, length > 0)
        if length == 0:
            expected = self._content_length
            if expected is not None and self._received != expected:
                raise BadRequest("FastCGI stdin shorter than CONTENT_LENGTH")
            self._state = _INPUT_DONE
            if self._has_body:
                self._events.append(_new_tuple(EndOfBody, (self._stream_id, [])))
            return
        received = self._received + length
        expected = self._content_length
        if expected is not None:
            if received > expected:
                raise BadRequest("FastCGI stdin longer than CONTENT_LENGTH")
        elif self._max_body_size and received > self._max_body_size:
            raise ContentTooLarge("request body larger than the limit")
        self._received = received
        self._sink = _SINK_BODY

    def _abort(self) -> None:
        """§5.4: the web server gives the request up."""
        if self._aborted:
            return
        if self._state == _IN_PARAMS or self._deferred is not None:
            # no Request was announced: nothing to stop, answer now
            request_id = self._request_id
            self._deferred = None
            self._ignored_id = request_id
            self._request_id = 0
            self._state = _IDLE
            close = not self._keep_conn
            if close:
                self._state = _CLOSED
                self._closing = True
            self._events.append(
                _new_tuple(Reply, (end_request(request_id, REQUEST_COMPLETE), close))
            )
            return
        self._aborted = True
        if self._state != _INPUT_DONE:
            self._closing = True  # the rest of its input may still come: do not reuse
            self._state = _ABORTED
        self._events.append(_new_tuple(Aborted, (self._stream_id,)))

    def _get_values(self, content: bytes) -> None:
        """§4.1: answer the variables asked that this side knows, omit the others."""
        limits = self.limits
        values = {
            b"FCGI_MAX_CONNS": b"%d" % limits.max_connections,
            b"FCGI_MAX_REQS": b"%d" % limits.max_connections,
            b"FCGI_MPXS_CONNS": b"0",
        }
        self._events.append(_new_tuple(Reply, (get_values_result(content, values), False)))

    # ------------------------------------------------------------------ output

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another request after the responses written so far."""
        return self._keep_conn and not self._closing

    @property
    def response_started(self) -> bool:
        return self._response is not None and self._response.started

    def _current(self) -> CGIResponse:
        response = self._response
        if response is None or response.done:
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
    ) -> Chunks:
        """Serialize the response head (and, if given, the first body piece) as FCGI_STDOUT.

        ``date`` and ``server`` are values for the ``Date`` and ``Server`` fields, added when the
        app did not set them (``reason``: the app's own reason phrase, else the standard one); nginx
        adds its own when they are empty. Raises :class:`AppError` for an invalid response; nothing
        was produced then.
        """
        response = self._current()
        # an app's own reason phrase (checked by the bridge: no CR, LF or controls) goes out as is
        first = b"Status: %d %s\r\n" % (status, reason) if reason else status_field(status)
        head = response.head(first, status, headers, body, end, date, server)
        if response.suppress_body or not body:
            content = head
        elif len(body) <= COALESCE_LIMIT:
            content = head + body
        else:
            return self._stdout([head, body], end)
        return self._stdout([content], end)

    def response_body(self, data: bytes, *, end: bool = False) -> Chunks:
        """Serialize a piece of the body of the current response as FCGI_STDOUT records."""
        response = self._current()
        response.body(data, end)
        if response.suppress_body or not data:
            return self._stdout([], end) if end else []
        return self._stdout([data], end)

    def response_end(self, trailers: Headers | None = None) -> Chunks:
        """End the response. ``trailers`` are dropped: FastCGI (and nginx) carry none."""
        return self.response_body(b"", end=True)

    def _stdout(self, pieces: list[bytes], end: bool) -> Chunks:
        out = stdout_records(self._request_id, pieces, end)
        if end:
            self._finish()
        return out

    def _finish(self) -> None:
        """FCGI_END_REQUEST is written: the request id is inactive (§3.3)."""
        if self._state != _INPUT_DONE:
            self._closing = True  # the web server may still be sending the body
        if self._closing or not self._keep_conn:
            self._closing = True
            self._state = _CLOSED
        else:
            self._state = _IDLE
            self._ignored_id = self._request_id
        self._request_id = 0
        self._active_stream = 0

    def abort_response(self) -> Chunks:
        """After :class:`Aborted`: end the request (§5.4 wants an FCGI_END_REQUEST)."""
        response = self._response
        if response is None or response.done or not self._aborted:
            return []
        response.done = True
        request_id = self._request_id
        if response.started:
            data = stdout_end(request_id)
        else:
            data = end_request(request_id, REQUEST_COMPLETE)
        self._finish()
        return [data]

    def error_response(self, status: int, detail: str) -> bytes:
        """After a ``StreamError``: a complete error response for the active request when its
        response has not started, else ``b""``. The connection ends after it.

        ``detail`` must be Portico's own words (the events guarantee it), never the peer's bytes.
        """
        self._closing = True
        self._state = _CLOSED
        response = self._response
        request_id = self._request_id
        if request_id == 0 or (response is not None and response.started):
            return b""
        self._response = done = CGIResponse(False)
        done.started = done.done = True
        fields, body = error_response_parts(status, detail)
        content = b"%s%s\r\n%s" % (status_field(status), fields, body)
        return record_header(STDOUT, request_id, len(content)) + content + stdout_end(request_id)
