"""WSGI apps served by the end-to-end tests (``portico wsgi_apps:NAME`` from this folder)."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.validate import validator

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], None]]

_PLAIN = [("Content-Type", "text/plain")]


def _json(start_response: StartResponse, payload: object, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def echo(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Answers with the environ (its str, int, bool and tuple values) and the body it read."""
    read = environ["wsgi.input"].read
    body = b"".join(iter(lambda: read(65536), b""))  # read(n): the validator forbids read()
    payload = {
        key: value
        for key, value in environ.items()
        if isinstance(value, str | int | bool | tuple) and key != "wsgi.input"
    }
    payload["body"] = body.decode("latin-1")
    payload["types"] = {key: type(value).__name__ for key, value in environ.items()}
    payload["thread"] = threading.current_thread().name
    return _json(start_response, payload)


#: The echo app checked by wsgiref's validator on every call (PEP 3333 compliance of the server).
validated_echo = validator(echo)


def validated_stream(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Reads the body line by line and streams a generator back, under the validator."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        lines = list(stream) if environ["REQUEST_METHOD"] == "POST" else []
        start_response("200 OK", _PLAIN)

        def body() -> Iterator[bytes]:
            yield b"lines: %d\n" % len(lines)
            yield from lines

        return body()

    return validator(app)(environ, start_response)


def stream(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """A generator body without Content-Length: sent chunked. ``?N`` pieces."""
    count = int(environ["QUERY_STRING"] or "3")
    start_response("200 OK", _PLAIN)
    for i in range(count):
        yield b"piece %d\n" % i


def writer(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """The legacy ``write()`` callable, then an iterable."""
    write = start_response("200 OK", _PLAIN)
    write(b"written ")
    write(b"twice ")
    return [b"then returned"]


def upload_size(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Reads the body in 64 KiB pieces without keeping it; answers ``size reads``. Says when it
    is done, also when the client left (a test waits for that, not a time)."""
    stream = environ["wsgi.input"]
    total = reads = 0
    try:
        while chunk := stream.read(65536):
            total += len(chunk)
            reads += 1
    finally:
        print(f"upload_size done after {total} bytes", flush=True)
    start_response("200 OK", _PLAIN)
    return [b"%d %d" % (total, reads)]


def big_file(environ: Environ, start_response: StartResponse) -> Any:
    """Serves the file named by ``?path`` through ``wsgi.file_wrapper``."""
    path = environ["QUERY_STRING"]
    size = os.path.getsize(path)
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
    )
    return environ["wsgi.file_wrapper"](open(path, "rb"), 65536)  # closed by the wrapper


def file_no_length(environ: Environ, start_response: StartResponse) -> Any:
    """``wsgi.file_wrapper`` without Content-Length: the body is chunked."""
    path = environ["QUERY_STRING"]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](open(path, "rb"))  # closed by the wrapper


def memory_file(environ: Environ, start_response: StartResponse) -> Any:
    """``wsgi.file_wrapper`` over an object without a file descriptor: sent in blocks."""
    size = int(environ["QUERY_STRING"])
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](io.BytesIO(bytes(range(256)) * (size // 256)))


def slow(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Sleeps ``?seconds`` (blocking, as WSGI apps do), then answers with its start/end times."""
    started = time.monotonic()
    print("slow request started", flush=True)
    time.sleep(float(environ["QUERY_STRING"] or "1"))
    start_response("200 OK", [*_PLAIN, ("X-Thread", threading.current_thread().name)])
    return [b"%f %f" % (started, time.monotonic())]


class _Recorded:
    """An iterable that says on stderr when its ``close()`` is called."""

    def __init__(self, label: str, pieces: int, delay: float) -> None:
        self.label = label
        self.pieces = pieces
        self.delay = delay

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self.pieces):
            time.sleep(self.delay)
            yield b"%d\n" % i

    def close(self) -> None:
        print(f"CLOSED {self.label}", file=sys.stderr, flush=True)


def closing(environ: Environ, start_response: StartResponse) -> _Recorded:
    """Streams ``?pieces,delay,label`` slowly; ``close()`` is logged as ``CLOSED label``."""
    pieces, delay, label = environ["QUERY_STRING"].split(",")
    start_response("200 OK", _PLAIN)
    return _Recorded(label, int(pieces), float(delay))


class _FailingIterable(_Recorded):
    def __iter__(self) -> Iterator[bytes]:
        yield b"first\n"
        raise RuntimeError("boom after the head")


def fail_before(environ: Environ, start_response: StartResponse) -> list[bytes]:
    raise RuntimeError("boom before the head")


def fail_after(environ: Environ, start_response: StartResponse) -> _FailingIterable:
    start_response("200 OK", _PLAIN)
    return _FailingIterable(environ["QUERY_STRING"] or "after", 0, 0.0)


def exc_info_before(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Starts a 200, fails before any body, and replaces it with a 503 through exc_info."""
    start_response("200 OK", _PLAIN)
    try:
        raise ValueError("replaced")
    except ValueError:
        start_response("503 Service Unavailable", _PLAIN, sys.exc_info())
    return [b"replaced by exc_info"]


def exc_info_after(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """Fails after the head was sent: start_response must re-raise the app's error."""
    start_response("200 OK", _PLAIN)
    yield b"partial\n"
    try:
        raise ValueError("too late")
    except ValueError:
        start_response("500 Internal Server Error", _PLAIN, sys.exc_info())
    yield b"never\n"


def inject(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: pwned=1")])
    return [b"never"]


def bad_status(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200", _PLAIN)
    return [b"never"]


def errors(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Writes to ``wsgi.errors``."""
    environ["wsgi.errors"].write("app says hello\nand ")
    environ["wsgi.errors"].write("goodbye\n")
    environ["wsgi.errors"].flush()
    start_response("200 OK", _PLAIN)
    return [b"ok"]


def plaintext(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


def big_stream(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """``?N`` bytes in 64 KiB chunks from a generator (chunked)."""
    left = int(environ["QUERY_STRING"])
    piece = b"x" * 65536
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    while left > 0:
        yield piece[:left]
        left -= len(piece)


def reason(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """A status with the app's own reason phrase (``?PHRASE``)."""
    start_response(f"200 {environ['QUERY_STRING'] or 'Fine'}", [("Content-Length", "2")])
    return [b"ok"]
