"""HTTP/1.1 as bytes in → events out, responses in → bytes out (RFC 9110, RFC 9112).

Parsing is llhttp (through ``httptools``), which already rejects most of what request smuggling
needs: Content-Length together with Transfer-Encoding, duplicate or malformed Content-Length, bad
chunk sizes and extensions, bare CR or LF, obsolete line folding, whitespace before the colon and
control characters in fields. This module adds what llhttp leaves to the server:

* the HTTP version: only 1.0 and 1.1 here (0.9 and 2.0 heads get 505, RFC 9110 §15.6.6);
* ``Host``: exactly one on HTTP/1.1, at most one on 1.0, and well formed (RFC 9112 §3.2);
* ``Transfer-Encoding``: only ``chunked``, once, last; other codings get 501 (RFC 9112 §6.1), and
  any Transfer-Encoding on an HTTP/1.0 request is faulty framing (RFC 9112 §6.1);
* the request-target form must fit the method (RFC 9112 §3.2): ``*`` only for OPTIONS,
  authority-form only for CONNECT (which Portico does not tunnel: 501);
* ``Expect``: only ``100-continue`` (RFC 9110 §10.1.1, otherwise 417);
* limits on the request-target, the header count and bytes, and the body size.

Any error ends the connection: the error response is the last thing written, and the bytes after
the bad message are never parsed as another request (RFC 9112 §11.2).

Pipelined requests are parsed as they arrive but answered strictly in order: responses always go to
the oldest unanswered request. The driver bounds buffering by not reading while requests wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import httptools

from portico.errors import (
    AppError,
    BadRequest,
    ContentTooLarge,
    HeadersTooLarge,
    ProtocolError,
    URITooLong,
    VersionNotSupported,
)
from portico.protocols.events import Body, EndOfBody, Event, Headers, Request, StreamError
from portico.protocols.exchange import Exchange, error_response, switching_protocols
from portico.protocols.request_line import (
    DROP,
    PROXY_FIELD,
    WATCH,
    check_transfer_encoding,
    field_kind,
    method_cache,
    method_name,
    name_kinds,
    origin_form,
    other_target_form,
    parser_detail,
    valid_host,
)

__all__ = ["H1Connection", "H1Limits"]


@dataclass(frozen=True, slots=True)
class H1Limits:
    """Bounds on what one request may make the server hold.

    Each one is a setting; the values (and their defaults) come from the settings table, built in
    one place (``portico.runtime.limits``), never spelled here.
    """

    max_request_line: int
    max_header_count: int
    max_header_bytes: int
    max_body_size: int  # 0 means unlimited


_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
# Request header names that need a look on arrival; every other field passes straight through.
_HOST: Final = b"host"
_TE: Final = b"transfer-encoding"
_EXPECT: Final = b"expect"
_CL: Final = b"content-length"
_UPGRADE: Final = b"upgrade"
_CT: Final = b"content-type"
# One dict look-up a field says what to do with its name (``request_line.field_kind``).
_NAME_KINDS: Final = name_kinds((_HOST, _TE, _EXPECT, _CL, _UPGRADE, _CT))
_new_tuple: Final = tuple.__new__
# ``_events`` between calls: keeping the list a call returned would keep its last Request alive on
# every idle connection. Only the parser's callbacks append, inside receive_data/receive_eof.
_NO_EVENTS: Final[list[Event]] = []


class H1Connection:
    """One HTTP/1.1 server connection, without I/O.

    Input: :meth:`receive_data` and :meth:`receive_eof` return the events the bytes completed.
    Output: :meth:`response_start`, :meth:`response_body`, :meth:`response_end` return the bytes to
    write for the response to the oldest unanswered request. After the response ends,
    :attr:`keep_alive` says whether the connection may carry another one.
    """

    def __init__(self, limits: H1Limits) -> None:
        self.limits = limits
        # read on every request: plain attributes instead of self.limits.x
        self._max_request_line = limits.max_request_line
        self._max_header_count = limits.max_header_count
        self._max_header_bytes = limits.max_header_bytes
        self._max_body_size = limits.max_body_size
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = _NO_EVENTS
        # a list: one exchange, a few while pipelined requests wait (reading stops then); an
        # empty deque costs ~600 bytes on every idle connection, a list 56
        self._exchanges: list[Exchange] = []
        self._stream_id = 0
        self._failed = False  # an error was reported; input is ignored from now on
        self._closing = False  # the connection ends after the current response
        # graceful shutdown: the next response says Connection: close; one already sent with
        # keep-alive is honoured (its client may be sending the next request already)
        self._draining = False
        self._in_head = False
        self._raw_head_bytes = 0
        self._checked_host = b""
        #: the stream id of a WebSocket upgrade request (RFC 6455 §4.1) whose answer decides
        #: what the bytes after it are; 0 when there is none (see :meth:`release_upgrade`)
        self.upgrade_held = 0
        self._held = b""
        self._ws_candidate = 0
        #: the read that began the message being parsed, if one did (see _version)
        self._head_data = b""
        self._reset_message()

    # ------------------------------------------------------------------ input

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: Headers = []
        self._header_bytes = 0
        self._host_count = 0
        self._ct_count = 0
        self._proxy_fields = False
        #: fields dropped for an underscore in the name (still counted against the limits)
        self._dropped = 0
        self._host = b""
        self._chunked = False
        self._content_length = 0
        self._expect = False
        self._upgrade: bytes | None = None
        self._trailers: Headers | None = None
        self._body_size = 0
        self._has_body = False

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the client; return the events they complete (possibly none)."""
        if self._failed:
            return []
        if self.upgrade_held:
            self._held += data  # the driver stops reading while it holds: bounded by one read
            return []
        events: list[Event] = []
        # _NO_EVENTS, or the list of the call that is parsing a declined upgrade's tail
        outer = self._events
        self._events = events
        started_in_head = self._in_head
        if not started_in_head and not self._has_body:
            self._head_data = data  # a read that starts a message: see _version
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._declined_upgrade(data[upgrade.args[0] :])
        except ProtocolError as exc:  # pragma: no cover - httptools wraps callback errors
            self._fail(exc.status, exc.detail)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, ProtocolError):
                self._fail(cause.status, cause.detail)
            else:  # a bug of ours; still never guess the framing
                self._fail(400, "malformed request")
        except httptools.HttpParserInvalidMethodError:
            # RFC 9110 §9.1: a method the server does not know is 501. llhttp stops at the
            # first byte no known method starts with, before the token ends, so telling an
            # unknown token from garbage would depend on how the bytes were split: 501 always.
            self._fail(501, "unknown request method")
        except httptools.HttpParserError as exc:
            detail = parser_detail(exc)
            # llhttp refuses versions it cannot parse as 1.x/0.9/2.0 itself (RFC 9110 §15.6.6)
            self._fail(505 if detail == "Invalid HTTP version" else 400, detail)
        else:
            if self._in_head:
                # llhttp holds a partial header line in its own buffer until the line ends, so a
                # client sending one endless line could grow it without bound: count raw bytes of
                # a head that spans reads. A head that began in this read is checked from the
                # next read on (so the bound is the limit plus one read).
                if started_in_head:
                    self._raw_head_bytes += len(data)
                limit = self.limits.max_header_bytes + self.limits.max_request_line + 4096
                if self._raw_head_bytes > limit:
                    self._fail(431, "request head too large")
        self._events = outer
        return events

    def receive_eof(self) -> list[Event]:
        """The client closed its sending side. A half-received message is an error."""
        if self._failed:
            return []
        if self._in_head and self._raw_head_bytes:
            self._fail_quietly()
            return []
        if self._exchanges and not self._exchanges[-1].body_complete:
            events: list[Event] = []
            self._events = events
            self._fail(400, "connection closed before the request body was complete")
            self._events = _NO_EVENTS
            return events
        return []

    def _fail(self, status: int, detail: str) -> None:
        # Input stops here; the requests parsed before the error are still answered in order,
        # and the error response (which closes the connection) comes after them.
        self._failed = True
        # a head error belongs to the request being parsed, a body error to the last one
        in_body = self._has_body and not self._in_head
        stream_id = self._stream_id if in_body else self._stream_id + 1
        self._events.append(StreamError(stream_id, status, detail))

    def _fail_quietly(self) -> None:
        self._failed = True
        self._closing = True

    def _declined_upgrade(self, tail: bytes) -> None:
        """llhttp stopped after an Upgrade (or CONNECT) head; ``tail`` is what followed it."""
        method = self._parser.get_method()
        if method == b"CONNECT":
            # Portico is not a forward proxy; the request never reached the app.
            self._fail(501, "CONNECT is not supported")
            return
        if self._failed:
            return
        exchange = self._exchanges[-1] if self._exchanges else None
        if exchange is not None and not exchange.body_complete:
            # llhttp stops *before* the body of an Upgrade request: parsing on would read the
            # body as the next request. Without a protocol to switch to, refuse instead of guess.
            self._fail(400, "request body with Upgrade is not supported")
            return
        if self._ws_candidate == self._stream_id:
            # A WebSocket handshake: if the app accepts it, what follows is WebSocket frames,
            # never HTTP. Hold it until the driver knows (take_upgrade or release_upgrade).
            self.upgrade_held = self._stream_id
            self._held = tail
            return
        # RFC 9110 §7.8: a server may ignore Upgrade and answer as usual. The message ended at
        # the offset llhttp reported, so the tail is the next request; go on with a new parser.
        self._parser = httptools.HttpRequestParser(self)
        if tail:
            self._events.extend(self.receive_data(tail))

    def take_upgrade(self) -> bytes:
        """The protocol switched (RFC 9110 §15.2.2): return the held bytes; HTTP ends here."""
        tail = self._held
        self._held = b""
        self.upgrade_held = 0
        self._failed = True  # nothing more is parsed as HTTP
        self._closing = True
        return tail

    def release_upgrade(self) -> list[Event]:
        """The held upgrade is answered as an ordinary request (a WSGI app): parse on."""
        if not self.upgrade_held:
            return []
        tail = self._held
        self._held = b""
        self.upgrade_held = 0
        self._parser = httptools.HttpRequestParser(self)
        return self.receive_data(tail) if tail else []

    # httptools callbacks -------------------------------------------------

    # No on_message_begin: httptools skips callbacks a protocol does not define, and the first
    # piece of the request-target marks the start of a head just as well, one call cheaper.

    def on_url(self, url: bytes) -> None:
        if not self._in_head:
            self._in_head = True
            self._raw_head_bytes = 0
        self._url += url
        if len(self._url) > self._max_request_line:
            raise URITooLong("request-target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Kept to the minimum: it runs once per field of every request. The limits are checked
        # when the head (or trailers) are complete; until then receive_data bounds raw bytes.
        entry = _NAME_KINDS.get(name)
        if entry is None:
            entry = field_kind(_NAME_KINDS, name)
        name, kind = entry
        if kind == WATCH and self._trailers is None:
            self._watch_header(name, value)  # sees the raw value: framing checks need it
        # llhttp drops leading whitespace; trailing OWS is not part of the value (RFC 9110 §5.5).
        # Looked at before calling rstrip: a method call costs more than the test, and values
        # almost never end in blanks.
        if value:
            last = value[-1]
            if last in (32, 9):  # a tuple: compiled to two comparisons
                value = value.rstrip(b" \t")
        self._header_bytes += len(name) + len(value)
        if kind == PROXY_FIELD:
            self._proxy_fields = True
        elif kind == DROP:
            # Dropped, as nginx, Apache and gunicorn do: CGI-style maps (WSGI's environ, Django's
            # META from ASGI headers too) fold "_" and "-" together, so X-Forwarded_For could pass
            # for the X-Forwarded-For a proxy vouches for. Counted against the limits all the same.
            self._dropped += 1
            return
        self._headers.append((name, value))

    def _watch_header(self, name: bytes, value: bytes) -> None:
        if name == _CT:
            # RFC 9110 §8.3: a singleton field; two values would let a filter in front and the
            # app each see a different media type (gunicorn and waitress refuse it too)
            self._ct_count += 1
            if self._ct_count > 1:
                raise BadRequest("a request must have at most one Content-Type header")
        elif name == _HOST:
            self._host_count += 1
            self._host = value.rstrip(b" \t")
        elif name == _CL:
            # llhttp already checked the digits and refused duplicates
            self._content_length = int(value.rstrip(b" \t"))
            limit = self._max_body_size
            if limit and self._content_length > limit:
                raise ContentTooLarge("request body larger than the limit")
        elif name == _TE:
            check_transfer_encoding(value, self._chunked)
            self._chunked = True
        elif name == _EXPECT:
            if value.rstrip(b" \t").lower() != b"100-continue":
                raise ProtocolError("unsupported expectation", 417)
            self._expect = True
        elif name == _UPGRADE:
            self._upgrade = value.rstrip(b" \t")

    def _check_field_limits(self, what: str) -> None:
        if len(self._headers) + self._dropped > self._max_header_count:
            raise HeadersTooLarge(f"too many {what} fields")
        if self._header_bytes > self._max_header_bytes:
            raise HeadersTooLarge(f"request {what} fields too large")

    def on_headers_complete(self) -> None:
        self._in_head = False
        headers = self._headers
        if (
            len(headers) + self._dropped > self._max_header_count
            or self._header_bytes > self._max_header_bytes
        ):
            self._check_field_limits("header")
        parser = self._parser
        raw_method = parser.get_method()
        version = self._version(raw_method)
        if version == "1.1":
            if self._host_count != 1:
                raise BadRequest("a request must have exactly one Host header")
        elif version == "1.0":
            if self._host_count > 1:
                raise BadRequest("a request must have at most one Host header")
            if self._chunked:
                raise BadRequest("Transfer-Encoding is not allowed in HTTP/1.0")
        else:
            raise VersionNotSupported("HTTP version not supported")
        host = self._host
        if host != self._checked_host and host:
            if not valid_host(host):
                raise BadRequest("invalid Host header")
            self._checked_host = host  # clients repeat their Host: check it once per connection
        method = method_cache.get(raw_method) or method_name(raw_method)
        url = self._url
        scheme: str | None = None
        if url.startswith(b"/") and method != "CONNECT":
            path, query = origin_form(url)
        else:
            path, query, scheme = other_target_form(url, method)
        chunked = self._chunked
        has_body = chunked or self._content_length > 0
        if has_body and parser.should_upgrade():
            # llhttp stops *before* the body of an Upgrade request (it reports the message
            # complete first), so what follows the head would be parsed as the next request:
            # a smuggling vector. With no protocol to switch to, refuse instead of guessing.
            raise BadRequest("request body with Upgrade is not supported")
        self._stream_id = stream_id = self._stream_id + 1
        if self._upgrade is not None:
            self._note_upgrade(method, version, stream_id)
        exchange = Exchange(
            stream_id,
            version,
            method == "HEAD",
            not self._closing and parser.should_keep_alive(),
            self._expect,
        )
        self._exchanges.append(exchange)
        if has_body:
            exchange.body_complete = False
            self._has_body = True
        # tuple.__new__ skips NamedTuple's Python-level __new__ (a measurable cost per request)
        self._events.append(
            _new_tuple(
                Request,
                (
                    stream_id,
                    method,
                    path,
                    query,
                    version,
                    headers,
                    has_body,
                    self._expect and has_body,
                    self._upgrade,
                    scheme,
                    self._proxy_fields,
                ),
            )
        )
        if chunked:
            # fields after the body are the trailer section; collect them apart (RFC 9112 §7.1.2)
            self._trailers = self._headers = []
            self._header_bytes = 0

    def _version(self, raw_method: bytes) -> str:
        """The HTTP version of the head just parsed.

        httptools gives it only as a newly formatted string (about 1 us per request). When the
        read that began this message holds its whole request line, the version is at a known
        place: llhttp accepted ``method SP request-target SP HTTP-version CRLF`` (RFC 9112 §3)
        and reported the method and the target. Anything else still asks llhttp.
        """
        head = self._head_data
        if head:
            self._head_data = b""
            at = len(raw_method) + len(self._url) + 2
            line_end = head[at : at + 10]
            if line_end == b"HTTP/1.1\r\n":
                return "1.1"
            if line_end == b"HTTP/1.0\r\n":
                return "1.0"
        version: str = self._parser.get_http_version()
        return version

    def _note_upgrade(self, method: str, version: str, stream_id: int) -> None:
        # RFC 6455 §4.1: a GET on HTTP/1.1 or later, with Connection: upgrade (llhttp reports
        # should_upgrade only then) and websocket among the Upgrade tokens
        upgrade = self._upgrade
        if (
            method == "GET"
            and version == "1.1"
            and upgrade is not None
            and self._parser.should_upgrade()
            and b"websocket" in [token.strip().lower() for token in upgrade.split(b",")]
        ):
            self._ws_candidate = stream_id

    def on_body(self, body: bytes) -> None:
        limit = self._max_body_size
        if limit:
            self._body_size += len(body)
            if self._body_size > limit:
                raise ContentTooLarge("request body larger than the limit")
        self._events.append(_new_tuple(Body, (self._stream_id, body)))

    def on_message_complete(self) -> None:
        if self._has_body:
            # a request without a body is complete with its Request event (has_body=False)
            trailers = self._trailers or []
            if trailers:
                self._check_field_limits("trailer")
            self._exchanges[-1].body_complete = True
            self._events.append(_new_tuple(EndOfBody, (self._stream_id, trailers)))
        self._reset_message()

    # ------------------------------------------------------------------ output

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may go on after the responses written so far."""
        return not self._closing

    def continue_response(self) -> bytes:
        """The interim ``100 Continue``, once, if the current request asked for it.

        Sent only when the app starts reading the body (RFC 9110 §10.1.1), so an app that
        rejects a large upload on its headers never makes the client send it.
        """
        if not self._exchanges:
            return b""
        exchange = self._exchanges[0]
        if (
            exchange.expect_continue
            and not exchange.body_complete
            and not exchange.continue_sent
            and not exchange.response_started
        ):
            exchange.continue_sent = True
            return _CONTINUE
        return b""

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

        ``date`` and ``server`` are the values of the ``Date`` and ``Server`` fields added when
        the app did not send them (empty: not added). Raises :class:`AppError` for an invalid
        response, in which case nothing was produced and the connection must be closed.
        """
        exchange = self._exchanges[0]
        if exchange.response_started:
            raise AppError("response already started")
        if self._closing or self._draining:
            exchange.keep_alive = False
        try:
            out = exchange.start_response(status, headers, body, end, date, server, reason)
        finally:
            if not exchange.keep_alive:  # even when the response proved invalid midway
                self._closing = True
        if exchange.response_done:
            self._exchanges.pop(0)
        return out

    def response_body(self, data: bytes, *, end: bool = False) -> list[bytes]:
        """Serialize a piece of the body of the current response."""
        exchange = self._exchanges[0]
        if not exchange.response_started or exchange.response_done:
            raise AppError("response body outside a started response")
        if exchange.suppress_body:
            if end:
                self._finish(exchange)
            return []
        return self._frame(exchange, data, end)

    def response_file(self, count: int, *, end: bool) -> tuple[bytes, bytes] | None:
        """Account ``count`` body bytes of the current response that the driver sends itself
        (``sendfile``): the framing to write before and after them, or ``None`` when this
        response carries no body (HEAD, 204, 304) and the bytes must not be sent at all.
        Raises :class:`AppError` when they disagree with the response's Content-Length."""
        exchange = self._exchanges[0]
        if not exchange.response_started or exchange.response_done:
            raise AppError("response body outside a started response")
        if exchange.suppress_body:
            if end:
                self._finish(exchange)
            return None
        framing = exchange.frame_file(count, end)
        if end:
            self._finish(exchange)
        return framing

    def switch_response(self, headers: Headers, *, date: bytes = b"", server: bytes = b"") -> bytes:
        """The ``101 Switching Protocols`` head of the held upgrade (RFC 9110 §15.2.2), with
        ``headers`` (already checked by the upgrade's protocol) and the Date and Server fields;
        the protocol is switched once it is written (see :meth:`take_upgrade`)."""
        return switching_protocols(headers, date, server)

    def response_end(self, trailers: Headers | None = None) -> list[bytes]:
        """End the current response, with a chunked trailer section if ``trailers`` is given."""
        exchange = self._exchanges[0]
        if trailers and exchange.chunked and not exchange.suppress_body:
            last = exchange.last_chunk_with(trailers)
            self._finish(exchange)
            return [last]
        return self.response_body(b"", end=True)

    def _frame(self, exchange: Exchange, data: bytes, end: bool) -> list[bytes]:
        out = exchange.frame(data, end)
        if end:
            self._finish(exchange)
        return out

    def _finish(self, exchange: Exchange) -> None:
        exchange.response_done = True
        self._exchanges.pop(0)
        if not exchange.keep_alive:
            self._closing = True

    def error_response(self, status: int, detail: str) -> bytes:
        """A complete error response that ends the connection (see :func:`error_response`)."""
        self._closing = True
        return error_response(status, detail)

    def close_after_response(self) -> None:
        """Graceful shutdown: the next response that starts ends the connection.

        A response already under way keeps what its head promised: if that was keep-alive, the
        connection stays open for one more request, answered with ``Connection: close``.
        """
        self._draining = True
