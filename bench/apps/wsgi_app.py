"""The WSGI benchmark app: the same four routes as ``asgi_app``, for WSGI servers.

``/echo`` reads ``wsgi.input`` up to CONTENT_LENGTH (in a loop, since ``read(n)`` may return less
than asked) and sends it back. Every response carries Content-Length.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

HELLO = b"Hello, world!"
ONE_MIB = b"x" * (1 << 20)
JSON_DOC: dict[str, object] = {"message": "Hello, world!", "server": "bench", "items": [1, 2, 3]}

_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"
_OCTETS = "application/octet-stream"
_CHUNK = 64 * 1024


def _read_body(environ: WSGIEnvironment) -> bytes:
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    stream = environ["wsgi.input"]
    chunks: list[bytes] = []
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    status = "200 OK"
    if path == "/":
        content_type, body = _TEXT, HELLO
    elif path == "/json":
        content_type, body = _JSON, json.dumps(JSON_DOC).encode("utf-8")
    elif path == "/1m":
        content_type, body = _OCTETS, ONE_MIB
    elif path == "/echo":
        content_type, body = _OCTETS, _read_body(environ)
    else:
        status, content_type, body = "404 Not Found", _TEXT, b"Not Found"
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
