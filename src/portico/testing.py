"""Call an ASGI or WSGI app in process, through the server's own code, with no socket::

    from portico.testing import Client

    with Client(app) as client:          # lifespan startup here, shutdown at the end
        response = client.get("/items/1", headers={"accept": "application/json"})
        assert response.status == 200 and response.json()["item"] == 1

A request is written as HTTP/1.1 bytes to a real connection driver of a real worker context, on
an in-memory transport: the server's parser, origin resolution, router (``--mount``,
``--static``), gateways, thread pool and response checks serve it exactly as they serve the
network, and the response is read back from the bytes the server wrote. So an app that sends an
invalid header, or a body that disagrees with its Content-Length, fails here as in production:
the server answers 500 (or cuts the response) and logs the error, and :class:`Client` raises
that error as :class:`AppFailed` (``raise_app_errors=False`` returns the response instead, with
the error in ``Response.errors``). ``record=True`` keeps the raw exchange of each request: the
ASGI scope and every message the app received and sent, or the WSGI environ, the
``start_response`` call and each body chunk (``Response.exchange``, :func:`describe_exchange`).

``portico call`` (``portico.call``) is this module on the command line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import pprint
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httptools  # type: ignore[import-untyped,unused-ignore]

from portico.config import Config
from portico.gateways.lifespan import Lifespan
from portico.gateways.loader import LoadedApp, loaded_app
from portico.gateways.wsgi_environ import FileWrapper
from portico.logs import error_log
from portico.runtime.binds import parse_bind
from portico.runtime.context import WorkerContext
from portico.runtime.http1 import H1Driver
from portico.runtime.wsgi_pool import WSGIPool
from portico.worker.main import LoadedApps, load, worker_context, wsgi_pools

__all__ = [
    "AppFailed",
    "Client",
    "Event",
    "MemoryTransport",
    "Response",
    "call",
    "describe_exchange",
    "request_bytes",
]

#: One step of a recorded exchange: ``(kind, value)``; kinds are ``scope``, ``receive``,
#: ``send`` (ASGI) and ``environ``, ``start_response``, ``write``, ``body``, ``file``,
#: ``close`` (WSGI)
Event = tuple[str, Any]
HeaderInput = Mapping[str, str] | Sequence[tuple[str, str]]

_ERRORS = error_log
_CLIENT = ("127.0.0.1", 50000)


@dataclass(frozen=True, slots=True)
class Response:
    """A response as the client read it off the wire."""

    status: int
    reason: str
    #: header fields in the order sent, names as sent
    headers: list[tuple[str, str]]
    body: bytes
    #: the bytes of the head(s), interim ``1xx`` ones included, as ``curl -i`` shows them
    head: bytes
    #: False when the server cut the response short (the app failed after it started)
    complete: bool = True
    #: what the server logged as errors while it served the request (tracebacks included)
    errors: tuple[str, ...] = ()
    exchange: tuple[Event, ...] = ()

    def header(self, name: str) -> str | None:
        """The first field called ``name`` (any case), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def failed(self) -> bool:
        """A 5xx, a logged app error, or a cut response: what ``portico call`` exits 1 for."""
        return self.status >= 500 or bool(self.errors) or not self.complete


class AppFailed(AssertionError):
    """The app failed as it would have in production (``Client(raise_app_errors=True)``)."""

    def __init__(self, response: Response) -> None:
        what = "\n".join(response.errors) or "the response was cut short"
        super().__init__(f"{response.status} {response.reason}: {what}")
        self.response = response


# --- the wire, in memory -----------------------------------------------------------------------


class _Reader:
    """Parses what the server writes; resolves ``done`` once a final response is complete or
    the connection ended."""

    def __init__(self, done: asyncio.Future[None], head_request: bool) -> None:
        self.done = done
        self.head_request = head_request
        self.wire = bytearray()
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.complete = False
        self._parser = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> None:
        if self.done.done():
            return
        self.wire += data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:  # the server broke HTTP: say so, do not hang
            self.ended()

    def ended(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.headers = []
        self.body = []

    def on_status(self, reason: bytes) -> None:
        self.reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self.head_request and self.status >= 200:
            self._finish()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.status >= 200:
            self._finish()

    def _finish(self) -> None:
        self.complete = True
        self.ended()

    def head(self) -> bytes:
        """The head bytes up to the final response's blank line (interim responses too)."""
        wire = bytes(self.wire)
        position = 0
        while (end := wire.find(b"\r\n\r\n", position)) >= 0:
            status = wire[position + 9 : position + 12]
            position = end + 4
            if not status.startswith(b"1"):
                break
        return wire[:position]


class MemoryTransport:
    """The part of ``asyncio.Transport`` a connection driver uses, writing into a reader."""

    def __init__(
        self,
        reader: _Reader,
        client: tuple[str, int],
        server: tuple[str, int | None] | str,
    ) -> None:
        self.reader = reader
        self.extra: dict[str, object] = {"peername": client, "sockname": server}
        self.protocol: asyncio.BaseProtocol | None = None
        self.closing = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.extra.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol | None:
        return self.protocol

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.reader.feed(bytes(data))

    def writelines(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.reader.ended()

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.reader.ended()
            protocol = self.protocol
            if protocol is not None:
                asyncio.get_running_loop().call_soon(protocol.connection_lost, None)

    abort = close


# --- recording the exchange --------------------------------------------------------------------


class _Recorder:
    """Wraps apps so that what crosses the ASGI or WSGI boundary is kept, untouched."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def asgi(self, app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        add = self.events.append

        async def recorded(scope: dict[str, Any], receive: Any, send: Any) -> None:
            self.events.append(("scope", {**scope, "state": dict(scope.get("state") or {})}))

            async def receive_recorded() -> Any:
                message = await receive()
                add(("receive", dict(message)))
                return message

            async def send_recorded(message: Any) -> None:
                add(("send", dict(message)))
                await send(message)

            await app(scope, receive_recorded, send_recorded)

        return recorded

    def wsgi(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        recorder = self

        def recorded(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            recorder.events.append(("environ", dict(environ)))

            def start_recorded(status: str, headers: list[Any], exc_info: Any = None) -> Any:
                recorder.events.append(("start_response", (status, list(headers), exc_info)))
                write = start_response(status, headers, exc_info)

                def write_recorded(data: bytes) -> None:
                    recorder.events.append(("write", data))
                    write(data)

                return write_recorded

            result = app(environ, start_recorded)
            if type(result) is list or type(result) is tuple:
                recorder.events.extend(("body", chunk) for chunk in result)
                return result  # the same object: the gateway's list path stays the same
            if type(result) is FileWrapper:
                recorder.events.append(("file", result.filelike))
                return result
            return _RecordedBody(result, recorder)

        return recorded


class _RecordedBody:
    def __init__(self, body: Iterable[bytes], recorder: _Recorder) -> None:
        self.inner = body
        self.recorder = recorder

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.recorder.events.append(("body", chunk))
            yield chunk

    def close(self) -> None:
        self.recorder.events.append(("close", None))
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def describe_exchange(events: Iterable[Event]) -> str:
    """A recorded exchange as text: one step per line, the scope or environ in full."""
    lines: list[str] = []
    for kind, value in events:
        if kind in ("scope", "environ"):
            title = "ASGI scope" if kind == "scope" else "WSGI environ"
            lines.append(f"{title}:")
            lines += ["  " + line for line in pprint.pformat(value, width=96).splitlines()]
        elif kind == "receive":
            lines.append(f"receive() -> {value!r}")
        elif kind == "send":
            lines.append(f"send({value!r})")
        elif kind == "start_response":
            status, headers, exc_info = value
            extra = "" if exc_info is None else f", exc_info={exc_info[1]!r}"
            lines.append(f"start_response({status!r}, {headers!r}{extra})")
        elif kind == "write":
            lines.append(f"write({value!r})")
        elif kind == "body":
            lines.append(f"body chunk {value!r}")
        elif kind == "file":
            lines.append(f"wsgi.file_wrapper({value!r})")
        else:
            lines.append("close()")
    return "\n".join(lines) + "\n"


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


# --- the client --------------------------------------------------------------------------------


def _name(app: object) -> str:
    module = getattr(app, "__module__", None) or "app"
    return f"{module}:{getattr(app, '__qualname__', type(app).__name__)}"


def request_bytes(method: str, target: str, headers: HeaderInput = (), body: bytes = b"") -> bytes:
    """An HTTP/1.1 request as a client would write it: ``Host: localhost`` unless given (or
    named by an absolute ``http://`` target), and a Content-Length for a body."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if target.startswith(("http://", "https://")):
        url = urlsplit(target)
        if url.scheme == "https":
            raise ValueError("https:// cannot be called in process; give the path")
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        if url.netloc and not any(name.lower() == "host" for name, _ in pairs):
            pairs.insert(0, ("host", url.netloc))
    for text in (method, target, *(part for pair in pairs for part in pair)):
        if "\r" in text or "\n" in text:
            raise ValueError(f"line breaks are not allowed in a request: {text!r}")
    names = {name.lower() for name, _ in pairs}
    if "host" not in names:
        pairs.insert(0, ("host", "localhost"))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        pairs.append(("content-length", str(len(body))))
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in pairs)]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


class Client:
    """Serves requests to ``app`` (an app object) or to what ``config`` names (``app``,
    ``mount``, ``static``) in process, with the server's code (see the module docstring).

    Use it as a context manager: entering runs the lifespan startup of the ASGI apps (a
    failure raises ``LifespanError``), leaving runs their shutdown.
    """

    def __init__(
        self,
        app: Callable[..., Any] | None = None,
        *,
        config: Config | None = None,
        raise_app_errors: bool = True,
        record: bool = False,
        client: tuple[str, int] = _CLIENT,
        timeout: float | None = None,
    ) -> None:
        self.config = config = config if config is not None else Config()
        self.raise_app_errors = raise_app_errors
        self.client = client
        self.timeout = timeout
        self.recorder = _Recorder() if record else None
        self.apps = self._load(app, config)
        self._runner: asyncio.Runner | None = None
        self._ctx: WorkerContext | None = None
        self._pools: dict[str, WSGIPool] = {}
        self._lifespans: list[Lifespan] = []

    @staticmethod
    def _load(app: Callable[..., Any] | None, config: Config) -> LoadedApps:
        if app is None:
            return load(config)
        root = ("/", loaded_app(app, _name(app), config.interface))
        if not config.mount:
            return LoadedApps([root], mounted=False)
        mounted = load(dataclasses.replace(config, app=None))
        return LoadedApps([root, *mounted.apps], mounted=True)

    def _served(self, loaded: LoadedApp) -> LoadedApp:
        recorder = self.recorder
        if recorder is None:
            return loaded
        wrap = recorder.wsgi if loaded.interface == "wsgi" else recorder.asgi
        return dataclasses.replace(loaded, app=wrap(loaded.app))

    def __enter__(self) -> Client:
        config = self.config
        runner = self._runner = asyncio.Runner()
        loop = runner.get_loop()
        served = LoadedApps(
            [(prefix, self._served(loaded)) for prefix, loaded in self.apps.apps],
            self.apps.mounted,
        )
        try:
            self._pools = wsgi_pools(config, served, threads=min(config.threads, 4))
            lifespans = {
                prefix: Lifespan(loaded.app, loop, config.lifespan)
                for prefix, loaded in self.apps.apps
                if prefix not in self._pools
            }
            self._lifespans = list(lifespans.values())
            self._ctx = worker_context(config, served, self._pools, lifespans, loop)
            for lifespan in self._lifespans:
                runner.run(lifespan.startup())
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        runner = self._runner
        try:
            if runner is not None:
                for lifespan in reversed(self._lifespans):
                    runner.run(lifespan.shutdown())
        finally:
            self._close()

    def _close(self) -> None:
        if self._ctx is not None:
            self._ctx.stop()
            self._ctx = None
        for pool in self._pools.values():
            pool.shutdown()
        self._pools = {}
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def request(
        self, method: str, target: str, headers: HeaderInput = (), body: bytes = b""
    ) -> Response:
        """Serve one request; raises :class:`AppFailed` for an app error (if asked to)."""
        if self._runner is None:
            raise RuntimeError("use the Client in a with block (it runs the app's lifespan)")
        raw = request_bytes(method, target, headers, body)
        response = self._runner.run(self._exchange(raw, method.upper() == "HEAD"))
        if self.raise_app_errors and (response.errors or not response.complete):
            raise AppFailed(response)
        return response

    def get(self, target: str, headers: HeaderInput = ()) -> Response:
        return self.request("GET", target, headers)

    def post(self, target: str, body: bytes = b"", headers: HeaderInput = ()) -> Response:
        return self.request("POST", target, headers, body)

    def _server_address(self) -> tuple[str, int | None] | str:
        kind, host, port = parse_bind(self.config.bind[0])
        if kind == "tcp":
            return (host or "0.0.0.0", port)
        return host if kind == "unix" else ("127.0.0.1", 8000)

    async def _exchange(self, raw: bytes, head_request: bool) -> Response:
        ctx = self._ctx
        assert ctx is not None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        reader = _Reader(done, head_request)
        transport = MemoryTransport(reader, self.client, self._server_address())
        if self.recorder is not None:
            self.recorder.events.clear()
        errors = _Errors()
        level = _ERRORS.level
        _ERRORS.addHandler(errors)
        if not level or level > logging.ERROR:
            _ERRORS.setLevel(logging.ERROR)
        driver = H1Driver(ctx)
        transport.set_protocol(driver)
        try:
            driver.connection_made(transport)  # type: ignore[arg-type]
            driver.data_received(raw)
            await asyncio.wait_for(asyncio.shield(done), self.timeout)
            if not transport.closing:
                transport.closing = True
                driver.connection_lost(None)  # the client leaves, as curl does
            await asyncio.sleep(0)  # let a cancelled app or the pool's hand-off finish
        finally:
            _ERRORS.removeHandler(errors)
            _ERRORS.setLevel(level)
        return Response(
            status=reader.status,
            reason=reader.reason,
            headers=reader.headers,
            body=b"".join(reader.body),
            head=reader.head(),
            complete=reader.complete,
            errors=tuple(errors.records),
            exchange=tuple(self.recorder.events) if self.recorder is not None else (),
        )


def call(
    app: Callable[..., Any] | None,
    method: str,
    target: str,
    headers: HeaderInput = (),
    body: bytes = b"",
    *,
    config: Config | None = None,
    raise_app_errors: bool = True,
    record: bool = False,
) -> Response:
    """Start the app, serve one request, stop the app."""
    with Client(app, config=config, raise_app_errors=raise_app_errors, record=record) as client:
        return client.request(method, target, headers, body)
