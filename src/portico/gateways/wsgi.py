"""The WSGI (PEP 3333) bridge, written once for every HTTP version over :class:`BlockingStream`.

Spec: https://peps.python.org/pep-3333/. The app runs in a thread of the runtime's pool; this module
only sees a small *synchronous* seam that the runtime implements by handing each call to the event
loop and blocking until it is done (or, for the last piece of a response, not waiting at all). No
I/O module is imported here.

Rules kept here:
* ``wsgi.input`` streams the body as the app reads it: never past the body, never all of it at once
  unless the app asks for all of it;
* the head is held until the first non-empty body chunk (or ``write()``), so a small response goes
  out in one write; a response whose whole ``Content-Length`` is in its first chunk, or a list of
  chunks, is sent and ended in one hand-off to the loop;
* without ``Content-Length`` the protocol frames the body (chunked for HTTP/1.1);
* the iterable's ``close()`` is always called: after success, on errors and when the client left;
* an exception before anything was sent is a 500 with the traceback logged once; after, the
  connection is closed (the client must not take a truncated body for a whole one).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from portico.errors import AppError
from portico.gateways.blocking import BlockingStream
from portico.gateways.stream import IO_UNIT, ClientDisconnected
from portico.gateways.wsgi_environ import (
    ErrorStream,
    FileWrapper,
    InputStream,
    WSGIContext,
    base_environ,
    build_environ,
)
from portico.logs import error_log as log
from portico.protocols.events import Headers
from portico.protocols.headers import REASONS, check_response_field, check_status

__all__ = [
    "BlockingStream",
    "ErrorStream",
    "FileWrapper",
    "InputStream",
    "WSGIApp",
    "WSGIContext",
    "base_environ",
    "build_environ",
    "run_wsgi",
]


StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Lists of chunks up to this size are joined and sent in one piece, with a Content-Length.
_JOIN_LIMIT = 64 * 1024

_ERROR_BODY = b"Internal Server Error\n"
_ERROR_HEADERS: Headers = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"%d" % len(_ERROR_BODY)),
]

# "200 OK": three digits, a space, a reason phrase without control characters (PEP 3333).
_STATUS = re.compile(r"([1-9][0-9][0-9]) [^\x00-\x08\x0a-\x1f\x7f]*")


# --- the response -------------------------------------------------------------------------------


def _latin1(text: object, what: str) -> bytes:
    if type(text) is not str:
        raise AppError(f"response {what} must be str, got {type(text).__name__}: {text!r}")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise AppError(f"response {what} {text!r} is not latin-1") from None


# Apps send the same statuses and header fields over and over: checked once, remembered (bounded).
_CACHE_LIMIT = 4096
#: status line as the app gives it -> (code, its reason phrase when it is not the standard one)
_statuses: dict[str, tuple[int, bytes]] = {}
#: (name, value) as the app gives it -> the checked latin-1 pair, and its Content-Length (-1 for
#: other fields), so a cached field costs neither a lower() nor an int() per response. The pair
#: is typed Any so that, compiled, it stays the one tuple object (the protocol's own cache of
#: checked fields then finds it by identity) instead of being unpacked and built anew.
_fields: dict[tuple[str, str], tuple[Any, int]] = {}


def _parse_status(status: object) -> tuple[int, bytes]:
    match = _STATUS.fullmatch(status) if type(status) is str else None
    if match is None:
        raise AppError(f"invalid WSGI status {status!r}: expected '200 OK' form")
    code = check_status(int(match.group(1)))
    # the app's own reason phrase is sent as it gave it ("200 Fine"), as gunicorn does; the
    # standard one (or none) is the protocol's cached status line
    phrase = _latin1(match.group(0)[4:], "reason phrase")
    reason = b"" if not phrase or phrase == REASONS.get(code) else phrase
    parsed = (code, reason)
    if len(_statuses) >= _CACHE_LIMIT:
        _statuses.clear()
    _statuses[match.group(0)] = parsed
    return parsed


def _check_field(field: object) -> tuple[Any, int]:
    if type(field) is not tuple or len(field) != 2:
        raise AppError(f"response header must be a (name, value) tuple, got {field!r}")
    name = _latin1(field[0], "header name")
    value = _latin1(field[1], "header value")
    check_response_field(name, value)
    length = -1
    if name.lower() == b"content-length":
        if not value.isdigit():
            raise AppError(f"invalid response Content-Length {value!r}")
        length = int(value)
    if len(_fields) >= _CACHE_LIMIT:
        _fields.clear()
    _fields[field] = entry = ((name, value), length)
    return entry


class Response:
    """One request served to a WSGI app: ``start_response``, ``write`` and the sending rules."""

    __slots__ = ("_headers", "_length", "_pending", "_reason", "_sent", "_status", "done", "stream")

    def __init__(self, stream: BlockingStream) -> None:
        self.stream = stream
        self._status = 0
        self._reason = b""
        self._headers: Headers = []
        self._pending = False  # start_response was called; its head is not sent yet
        self._sent = False  # the head went out
        self._length: int | None = None  # body bytes still due under a Content-Length
        self.done = False

    # The app's arguments are typed ``object`` (``Any`` for exc_info) on purpose: this module is
    # compiled, and a typed parameter would make a wrong argument a bare TypeError at the call
    # instead of the AppError below that says what PEP 3333 expects.
    def start_response(
        self,
        status: object,
        headers: object,
        exc_info: Any = None,  # (type, exception, traceback) from sys.exc_info()
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self._sent:
                    # PEP 3333: too late to change the response; let the error through.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self._pending or self._sent:
            raise AppError("start_response called a second time without exc_info")
        parsed = _statuses.get(status) if type(status) is str else None
        if parsed is None:
            parsed = _parse_status(status)
        if type(headers) is not list:
            raise AppError(f"response headers must be a list, got {type(headers).__name__}")
        encoded: list[Any] = []  # of the cached pairs, as they are (see _fields)
        length: int | None = None
        fields = _fields
        for field in headers:
            try:
                entry = fields.get(field)
            except TypeError:  # unhashable: certainly not a (str, str) tuple
                entry = None
            if entry is None:
                entry = _check_field(field)
            encoded.append(entry[0])
            if entry[1] >= 0:
                length = entry[1]
        self._status, self._reason = parsed
        self._headers = encoded
        self._length = length
        self._pending = True
        return self.write

    def write(self, chunk: object) -> None:
        """The ``write()`` callable (and the path of every body chunk)."""
        data: bytes
        if type(chunk) is bytes:
            data = chunk
        elif isinstance(chunk, bytes | bytearray | memoryview):
            data = bytes(chunk)
        else:
            raise AppError(f"WSGI body chunks must be bytes, got {type(chunk).__name__}")
        if self.done:
            if data:
                raise AppError("response body longer than its Content-Length")
            return
        if not self._sent and not self._pending:
            if data:
                raise AppError("write() or a body chunk before start_response")
            return  # an empty chunk may come first (a generator that starts the response late)
        length = self._length
        end = False
        if length is not None:
            length -= len(data)
            self._length = length
            end = length == 0
        if self._sent:
            if data or end:
                self.stream.write(data, end)
        elif data or end:
            self.stream.start(self._status, self._headers, data, end, self._reason)
            self._sent = True  # after: a response the runtime refused still gets its 500
        self.done = end

    def finish(self) -> None:
        """The app's iterable is exhausted: end the response."""
        if self.done:
            return
        if self._sent:
            self.done = True
            self.stream.write(b"", True)
        elif self._pending:
            self.stream.start(self._status, self._headers, b"", True, self._reason)
            self._sent = self.done = True
        else:
            raise AppError("WSGI app returned without calling start_response")

    def send_chunks(self, chunks: list[bytes] | tuple[bytes, ...]) -> None:
        """A list body: its size is known, so a small one is sent and ended in one piece (with
        a Content-Length), and one that contradicts its Content-Length is a 500, not a cut."""
        total = -1  # the body's size, when every chunk is bytes
        if self._pending and not self._sent:
            count = len(chunks)
            if count == 1:
                first = chunks[0]
                if type(first) is bytes:
                    total = len(first)
            else:
                total = 0
                for chunk in chunks:
                    if type(chunk) is not bytes:
                        total = -1
                        break
                    total += len(chunk)
        if total >= 0:
            length = self._length
            if (
                length is not None
                and total != length
                and self._status != 304  # may carry the length of what a 200 would send
                and self.stream.request.method != "HEAD"
            ):
                raise AppError(
                    f"response body of {total} bytes does not match Content-Length {length}"
                )
            if total <= _JOIN_LIMIT:
                body = chunks[0] if count == 1 else b"".join(chunks)
                self.stream.start(self._status, self._headers, body, True, self._reason)
                self._sent = self.done = True
                return
        for chunk in chunks:
            self.write(chunk)
        self.finish()

    def send_file(self, wrapper: FileWrapper) -> None:
        if (
            self._pending
            and not self._sent
            and self._status not in (204, 304)
            and self.stream.request.method != "HEAD"
            and self.stream.send_file(
                self._status, self._headers, wrapper.filelike, self._length, self._reason
            )
        ):
            self._sent = self.done = True
            return
        read = wrapper.filelike.read
        block = max(wrapper.block_size, IO_UNIT)
        while data := read(block):
            self.write(data)
            if self.done:
                break
        self.finish()

    def fail(self) -> None:
        """The app raised: a 500 if nothing was sent, else close the connection."""
        if self.stream.disconnected or (self.done and self._sent):
            return  # gone, or complete (a failure while ending is the runtime's to handle)
        self.done = True
        if self._sent:
            self.stream.abort()
        else:
            self._sent = True
            self.stream.start(500, list(_ERROR_HEADERS), _ERROR_BODY, True)


def run_wsgi(
    app: WSGIApp,
    stream: BlockingStream,
    base: dict[str, Any],
    root_path: str,
    *,
    body: bytes = b"",
    eof: bool = False,
    mount_path: str = "",
) -> None:
    """Serve one request to ``app`` in the calling (pool) thread. Never raises an ``Exception``.

    ``body``/``eof``: request body the runtime already had when the request was dispatched.
    """
    response = Response(stream)
    result: Iterable[bytes] | None = None
    try:
        environ = build_environ(stream, base, root_path, InputStream(stream, body, eof), mount_path)
        result = app(environ, response.start_response)
        if type(result) is FileWrapper:
            response.send_file(result)
        elif type(result) is list or type(result) is tuple:
            response.send_chunks(result)
        else:
            write = response.write
            for chunk in result:
                write(chunk)
                if response.done:
                    break
            response.finish()
    except ClientDisconnected:
        pass  # the client left; nothing to answer and nothing the app did wrong
    except Exception as exc:
        log.error("Exception in WSGI application", exc_info=exc)
        _fail(response)
    finally:
        # A list or tuple (what most apps return) has no close(): asking would raise and drop an
        # AttributeError per request, 3% of a plain-text request's instructions.
        kind = type(result)
        close = (
            None
            if kind is list or kind is tuple or result is None
            else getattr(result, "close", None)
        )
        if close is not None:
            try:
                close()
            except Exception as exc:
                log.error("Exception in the close() of a WSGI response", exc_info=exc)
                if not response.done:
                    _fail(response)


def _fail(response: Response) -> None:
    try:
        response.fail()
    except Exception as exc:  # the connection went away while failing: nothing left to do
        log.debug("could not answer a failed WSGI request: %r", exc)
