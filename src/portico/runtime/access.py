"""What the worker context does with every finished response: its access-log line, its metrics.

The format is compiled once (``config.observability``) into a tuple of fields; a line is a walk
over that tuple (compiled with mypyc), each field read off the stream it describes. Whatever a
client chose (target, method, header values, a forwarded address) is escaped: in a text format
by ``logs.escape`` (no control byte, no ``"`` or ``\\``, ASCII), in ``json`` by the JSON string
encoding (``ensure_ascii``; bytes that are not UTF-8 become ``\\xNN``), so it can neither leave
its field nor forge a line. The time a line shows is formatted once a second, not per line.

Lines go to the sink ``logs.configure`` set up, in batches: at most 50 ms or 4096 lines after
the first one waiting, so a busy worker writes many lines with one system call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import time
from json.encoder import encode_basestring_ascii
from time import perf_counter_ns
from typing import Any, Final

from portico.config import Config
from portico.config.observability import (
    BYTES,
    BYTES_CLF,
    CLIENT,
    CLIENT_ADDR,
    CLIENT_PORT,
    DEFAULT_ACCESS_FORMAT,
    DURATION_MS,
    DURATION_S,
    DURATION_US,
    DURATION_WHOLE_S,
    LITERAL,
    METHOD,
    PATH,
    PID,
    PROTOCOL,
    QUERY,
    REFERER,
    REQUEST_HEADER,
    REQUEST_ID,
    REQUEST_LINE,
    RESPONSE_HEADER,
    STATUS,
    TARGET,
    TIME,
    TIME_ISO,
    USER,
    USER_AGENT,
    parse_access_format,
)
from portico.gateways.stream import Stream
from portico.logs import AccessSink, access_sink, escape
from portico.protocols.events import Request
from portico.runtime.metrics import WorkerMetrics

__all__ = ["AccessFormatter", "Observer"]

# Most characters of a client's text kept in a field (a longer one ends with "…").
_TARGET_LIMIT: Final = 2048
_VALUE_LIMIT: Final = 1024
_NUMERIC: Final = frozenset(
    {
        CLIENT_PORT,
        STATUS,
        BYTES,
        DURATION_US,
        DURATION_MS,
        DURATION_S,
        DURATION_WHOLE_S,
        PID,
    }
)


# Clients send the same few targets, methods and user agents over and over: their escaped forms
# are remembered (short values only, bounded, cleared when full, like the protocol's caches).
_CACHE_LIMIT: Final = 4096
_CACHED_SIZE: Final = 256
_escaped: Final[dict[str | bytes, str]] = {}


def _escape(value: str | bytes, limit: int) -> str:
    """``logs.escape(value, limit)``, remembered for short values."""
    text = _escaped.get(value)
    if text is None:
        text = escape(value, limit)
        if len(value) <= _CACHED_SIZE and limit >= _CACHED_SIZE:
            if len(_escaped) >= _CACHE_LIMIT:
                _escaped.clear()
            _escaped[value] = text
    return text


def _header(request: Request, name: bytes) -> bytes | None:
    """A request header's value (repeated fields joined with ``, ``), or ``None``."""
    found: bytes | None = None
    for field_name, value in request.headers:
        if field_name == name:
            found = value if found is None else found + b", " + value
    return found


def _target(request: Request) -> bytes:
    query = request.query_string
    return request.raw_path + b"?" + query if query else request.raw_path


def _basic_user(request: Request) -> bytes | None:
    credentials = _header(request, b"authorization")
    if credentials is None or credentials[:6].lower() != b"basic ":
        return None
    try:
        decoded = base64.b64decode(credentials[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded.partition(b":")[0] or None


_json_texts: Final[dict[str | bytes, str]] = {}


def _json_text(value: str | bytes | None, limit: int) -> str:
    """A JSON string (or ``null``): ASCII, one line, whatever the client sent."""
    if value is None:
        return "null"
    text = _json_texts.get(value)
    if text is not None:
        return text
    key = value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if len(value) > limit:
        value = value[:limit] + "…"
    text = encode_basestring_ascii(value)
    if len(key) <= _CACHED_SIZE and limit >= _CACHED_SIZE:
        if len(_json_texts) >= _CACHE_LIMIT:
            _json_texts.clear()
        _json_texts[key] = text
    return text


def _response_header(stream: Stream, name: bytes) -> bytes | None:
    """A response header's value as the app sent it (any case), or ``None``; the request id
    the driver added counts as one."""
    headers = stream.response_headers
    found: bytes | None = None
    if headers is not None:
        for field_name, value in headers:
            if len(field_name) == len(name) and field_name.lower() == name:
                found = value if found is None else found + b", " + value
    if found is None and name == b"x-request-id" and stream.request_id:
        return stream.request_id
    return found


_STATUSES: Final = tuple(str(status) for status in range(1000))
_request_lines: Final[dict[tuple[str, bytes, bytes, str], str]] = {}
#: keyed by the connection's own address tuple (typed Any: compiled, a ``tuple[str, int]`` would
#: be unpacked and built anew, and its hash computed again, for every look-up)
_clients: Final[dict[Any, str]] = {}


#: ``GET path HTTP/1.1`` lines by their path: most lines, found without building a tuple key
_get_lines: Final[dict[bytes, str]] = {}


def _request_line(request: Request) -> str:
    """``GET /path?q HTTP/1.1``, escaped; remembered (bounded) for short targets."""
    if request.method == "GET" and not request.query_string and request.http_version == "1.1":
        line = _get_lines.get(request.raw_path)
        if line is not None:
            return line
        line = _build_request_line(request)
        if len(request.raw_path) <= _CACHED_SIZE:
            if len(_get_lines) >= _CACHE_LIMIT:
                _get_lines.clear()
            _get_lines[request.raw_path] = line
        return line
    key = (request.method, request.raw_path, request.query_string, request.http_version)
    line = _request_lines.get(key)
    if line is None:
        line = _build_request_line(request)
        if len(request.raw_path) + len(request.query_string) <= _CACHED_SIZE:
            if len(_request_lines) >= _CACHE_LIMIT:
                _request_lines.clear()
            _request_lines[key] = line
    return line


def _build_request_line(request: Request) -> str:
    method = _escape(request.method, _CACHED_SIZE)
    target = _escape(_target(request), _TARGET_LIMIT)
    return f"{method} {target} HTTP/{_escape(request.http_version, _CACHED_SIZE)}"


#: the zeros that pad a fraction of ``n`` digits to six
_ZEROS: Final = tuple("0" * (6 - digits) for digits in range(7))


def _seconds(duration: int) -> str:
    """Nanoseconds as ``%.6f`` seconds, from integers (a float's format is slow compiled)."""
    micros = (duration + 500) // 1000
    fraction = str(micros % 1_000_000)
    return f"{micros // 1_000_000}.{_ZEROS[len(fraction)]}{fraction}"


def _client(client: Any) -> str:
    """``address:port`` of a ``(str, int)`` client, escaped (a trusted proxy chose the
    address); remembered (bounded)."""
    if client is None:
        return "-"
    text = _clients.get(client)
    if text is None:
        address: tuple[str, int] = client
        text = f"{_escape(address[0], _CACHED_SIZE)}:{address[1]}"
        if len(_clients) >= _CACHE_LIMIT:
            _clients.clear()
        _clients[client] = text
    return text


class _Recent:
    """A connection's last default line up to its duration: the line's start (client and
    time), and the request's parts, status and size the rest was built from."""

    __slots__ = ("client", "head", "method", "path", "query", "sent", "start", "status", "version")

    def __init__(self, client: object, start: str) -> None:
        self.client = client
        self.start = start
        self.head = ""
        # the request's parts ``head`` was built from, held (so that identity means equality)
        self.path: object = None
        self.query: object = None
        self.method: object = None
        self.version: object = None
        self.status = -1
        self.sent = -1


class AccessFormatter:
    """Renders the lines of one compiled access-log format."""

    def __init__(self, spec: str) -> None:
        compiled = parse_access_format(spec)
        fields = compiled.fields
        self.json = compiled.json
        #: the default line is one f-string below, not a walk over its eleven fields
        self.default = spec == DEFAULT_ACCESS_FORMAT
        self.codes = tuple(field.code for field in fields)
        self.texts = tuple(field.text for field in fields)
        self.names = tuple(field.text.encode("latin-1") for field in fields)
        #: for json: ``"key":`` of each member, the first without its comma
        self.keys = tuple(
            ("" if i == 0 else ",") + encode_basestring_ascii(field.key) + ":"
            for i, field in enumerate(fields)
        )
        self.pid = str(os.getpid())
        self._second = -1
        self._local = ""
        #: the default line up to its duration, per connection (by the identity of the
        #: client's address tuple, kept in the entry so that the id cannot be reused while it
        #: is here): a keep-alive client repeats its request, so most lines are this text and
        #: the duration; emptied when the second changes
        self._recent: dict[int, _Recent] = {}
        self._iso_second = -1
        self._iso = ""

    def line(self, stream: Stream, status: int, duration: int, wall: float = 0.0) -> str:
        """The line of one response, ``duration`` nanoseconds after its admission, ending at
        ``wall`` (``time.time()``; 0: now)."""
        if not wall:
            wall = time.time()
        if self.default:
            client = stream.client
            recent_lines = self._recent
            if int(wall) != self._second:
                recent_lines.clear()
            recent = recent_lines.get(id(client))
            if recent is None or recent.client is not client:
                # an int key and an identity test: cheaper than hashing the address tuple
                recent = _Recent(client, f'{_client(client)} - - [{self._local_time(wall)}] "')
                if len(recent_lines) >= _CACHE_LIMIT:
                    recent_lines.clear()
                recent_lines[id(client)] = recent
            request = stream.request
            sent = stream.sent_bytes
            # identity: the parser hands out the same path, method and version objects for a
            # target it has seen lately (the same value is all this needs, and ``is`` is cheaper)
            if (
                request.raw_path is not recent.path
                or request.query_string is not recent.query
                or request.method is not recent.method
                or request.http_version is not recent.version
                or status != recent.status
                or sent != recent.sent
            ):
                status_text = _STATUSES[status] if 100 <= status < 1000 else str(status)
                recent.head = f'{recent.start}{_request_line(request)}" {status_text} {sent} '
                recent.path = request.raw_path
                recent.query = request.query_string
                recent.method = request.method
                recent.version = request.http_version
                recent.status = status
                recent.sent = sent
            micros = (duration + 500) // 1000  # _seconds, inlined: one string built, not two
            if micros < 1_000_000:  # most responses: no whole seconds to divide out and print
                fraction = str(micros)
                return f"{recent.head}0.{_ZEROS[len(fraction)]}{fraction}"
            fraction = str(micros % 1_000_000)
            return f"{recent.head}{micros // 1_000_000}.{_ZEROS[len(fraction)]}{fraction}"
        codes = self.codes
        out: list[str] = []
        if self.json:
            keys = self.keys
            out.append("{")
            for index in range(len(codes)):
                out.append(keys[index])
                out.append(self._json_value(codes[index], index, stream, status, duration, wall))
            out.append("}")
        else:
            texts = self.texts
            for index in range(len(codes)):
                code = codes[index]
                if code == LITERAL:
                    out.append(texts[index])
                else:
                    out.append(self._text(code, index, stream, status, duration, wall))
        return "".join(out)

    def _text(  # noqa: PLR0917 -- per field, on the logging path
        self, code: int, index: int, stream: Stream, status: int, duration: int, wall: float
    ) -> str:
        if code == STATUS:
            return _STATUSES[status] if 100 <= status < 1000 else str(status)
        if code == REQUEST_LINE:
            return _request_line(stream.request)
        if code == TIME:
            return self._local_time(wall)
        if code == CLIENT:
            return _client(stream.client)
        if code == BYTES:
            return str(stream.sent_bytes)
        if code in _NUMERIC or code == BYTES_CLF:
            return self._number(code, stream, status, duration)
        value = self._raw(code, index, stream, wall)
        if value is None:
            return "-"
        limit = _TARGET_LIMIT if code in (TARGET, PATH, QUERY) else _VALUE_LIMIT
        return _escape(value, limit)

    def _json_value(  # noqa: PLR0917 -- per field, on the logging path
        self, code: int, index: int, stream: Stream, status: int, duration: int, wall: float
    ) -> str:
        if code in _NUMERIC:
            return self._number(code, stream, status, duration)
        if code == BYTES_CLF:
            return str(stream.sent_bytes)
        if code == REQUEST_LINE:
            request = stream.request
            line = f"{request.method} {_target(request).decode('latin-1')} HTTP/"
            return _json_text(line + request.http_version, _TARGET_LIMIT)
        if code == LITERAL:
            return encode_basestring_ascii(self.texts[index])
        limit = _TARGET_LIMIT if code in (TARGET, PATH, QUERY) else _VALUE_LIMIT
        return _json_text(self._raw(code, index, stream, wall), limit)

    def _number(self, code: int, stream: Stream, status: int, duration: int) -> str:
        if code == STATUS:
            return str(status)
        if code == DURATION_US:
            return str(duration // 1000)
        if code == DURATION_MS:
            return str(duration // 1_000_000)
        if code == DURATION_S:
            return _seconds(duration)
        if code == DURATION_WHOLE_S:
            return str(duration // 1_000_000_000)
        if code == PID:
            return self.pid
        if code == CLIENT_PORT:
            client = stream.client
            return "-" if client is None else str(client[1])
        sent = stream.sent_bytes  # BYTES, BYTES_CLF
        return "-" if code == BYTES_CLF and not sent else str(sent)

    def _raw(self, code: int, index: int, stream: Stream, wall: float) -> str | bytes | None:
        """A field's value as the client or the app gave it (escaped by the caller)."""
        request = stream.request
        if code in (CLIENT_ADDR, CLIENT):
            client = stream.client
            if client is None:
                return None
            return client[0] if code == CLIENT_ADDR else f"{client[0]}:{client[1]}"
        if code == USER_AGENT:
            return _header(request, b"user-agent")
        if code == REFERER:
            return _header(request, b"referer")
        if code == TARGET:
            return _target(request)
        if code == METHOD:
            return request.method
        if code == PROTOCOL:
            return "HTTP/" + request.http_version
        if code == PATH:
            return request.raw_path
        if code == QUERY:
            return request.query_string
        if code == REQUEST_ID:
            return stream.request_id or _header(request, b"x-request-id")
        if code == REQUEST_HEADER:
            return _header(request, self.names[index])
        if code == RESPONSE_HEADER:
            return _response_header(stream, self.names[index])
        if code == USER:
            return _basic_user(request)
        if code == TIME_ISO:
            return self._iso_time(wall)
        return self._local_time(wall)  # TIME

    def _local_time(self, wall: float) -> str:
        second = int(wall)
        if second != self._second:
            self._second = second
            self._local = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return self._local

    def _iso_time(self, wall: float) -> str:
        second = int(wall)
        if second != self._iso_second:
            self._iso_second = second
            self._iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        millis = str(int((wall - second) * 1000))
        return f"{self._iso}.{'0' * (3 - len(millis))}{millis}Z"


#: Lines held before they are written anyway, and for how long at most (seconds). The ``write``
#: runs on the loop and lets go of the GIL, which a WSGI thread then holds: with 256 lines a
#: batch (about 200 writes a second at full speed) the access log cost WSGI 0.891-0.897 of its
#: plain-text throughput, with 4096 (the 50 ms come first) 0.953 (``bench/ab.py --burst 2``).
BATCH: Final = 4096
LINGER: Final = 0.05


class Observer:
    """The access log and the metrics of one worker; ``enabled`` is False when neither is on,
    and then drivers do not call the context at the end of a response at all.

    Lines are handed to the sink together, ``LINGER`` seconds after the first of them (or
    once ``BATCH`` wait), so a busy worker writes many with one system call: per loop turn is
    not enough, since WSGI responses come back from their threads one turn each.
    """

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        on = config.access_log or config.access_log_file is not None
        self.formatter: AccessFormatter | None = (
            AccessFormatter(config.access_log_format) if on else None
        )
        self.sink: AccessSink | None = access_sink() if on else None
        self.metrics: WorkerMetrics | None = (
            WorkerMetrics() if config.metrics_bind is not None else None
        )
        self.enabled = on or self.metrics is not None
        self.loop = loop
        self.lines: list[str] = []
        #: ``time.time_ns() - perf_counter_ns()``: a line's wall-clock time without another
        #: clock read per response (refreshed once a second by the context, :meth:`tick`)
        self.wall_offset = 0
        self.tick()

    def tick(self) -> None:
        self.wall_offset = time.time_ns() - perf_counter_ns()

    def response(self, stream: Stream, status: int, end: int) -> None:
        """A response ended at ``end`` (``perf_counter_ns()``)."""
        duration = end - stream.start_ns
        formatter = self.formatter
        if formatter is not None:
            lines = self.lines
            lines.append(formatter.line(stream, status, duration, (end + self.wall_offset) / 1e9))
            if len(lines) == 1:
                self.loop.call_later(LINGER, self.flush)
            elif len(lines) >= BATCH:
                self.flush()
        metrics = self.metrics
        if metrics is not None:
            request = stream.request
            metrics.count(request.method, status, request.http_version, duration)

    def flush(self) -> None:
        lines = self.lines
        if lines:
            self.lines = []
            sink = self.sink
            assert sink is not None
            sink.write(lines)

    def close(self) -> None:
        self.flush()
