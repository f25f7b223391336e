"""The ASGI 3 benchmark app, identical for every server under test.

Routes: ``/`` plain text, ``/json`` a small JSON document serialised per request, ``/1m`` a
pre-built 1 MiB body sent in one ``http.response.body`` message, ``/echo`` the request body read
whole (looping on ``more_body``) and sent back. Every response carries Content-Length. The app
also answers the lifespan protocol so servers that run it do not log a warning.

A WebSocket on any path is accepted and echoes every message back as it came (``bench/ws.py``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO = b"Hello, world!"
ONE_MIB = b"x" * (1 << 20)
JSON_DOC: dict[str, object] = {"message": "Hello, world!", "server": "bench", "items": [1, 2, 3]}

_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"
_OCTETS = b"application/octet-stream"


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _ws_echo(receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(receive, send)
        return
    if kind == "websocket":
        await _ws_echo(receive, send)
        return
    if kind != "http":
        return
    path = scope["path"]
    if path == "/":
        await _respond(send, 200, _TEXT, HELLO)
    elif path == "/json":
        await _respond(send, 200, _JSON, json.dumps(JSON_DOC).encode("utf-8"))
    elif path == "/1m":
        await _respond(send, 200, _OCTETS, ONE_MIB)
    elif path == "/echo":
        body = await _read_body(receive)
        if body is not None:
            await _respond(send, 200, _OCTETS, body)
    else:
        await _respond(send, 404, _TEXT, b"Not Found")
