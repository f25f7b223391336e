"""WebSocket ASGI apps of the end-to-end tests (``portico ws_apps:NAME`` from this folder)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

Scope = dict[str, Any]


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts every WebSocket and sends each message back as it came (the Autobahn echo app).

    An HTTP request gets a JSON description of itself, so one app serves both kinds.
    """
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"http " + scope["path"].encode()})
        return
    if scope["type"] != "websocket":
        return
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def scope_info(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts with the first offered subprotocol and extra headers, then sends its scope."""
    if scope["type"] != "websocket":
        return
    await receive()
    offered = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": offered[0] if offered else None,
            "headers": [(b"x-portico-test", b"yes")],
        }
    )
    info = {
        key: scope[key]
        for key in ("type", "http_version", "scheme", "path", "root_path", "subprotocols", "asgi")
    }
    info["raw_path"] = scope["raw_path"].decode("latin-1")
    info["query_string"] = scope["query_string"].decode("latin-1")
    info["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
    info["client"] = list(scope["client"])
    info["server"] = list(scope["server"])
    info["extensions"] = sorted(scope["extensions"])
    info["tls"] = scope["extensions"].get("tls")
    info["state"] = sorted(scope["state"])
    await send({"type": "websocket.send", "text": json.dumps(info)})
    message = await receive()
    assert message["type"] == "websocket.disconnect"


async def deny(scope: Scope, receive: Any, send: Any) -> None:
    """Answers the handshake with its own HTTP response (the denial extension), in two pieces."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain"), (b"x-reason", b"token")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry"})


async def refuse(scope: Scope, receive: Any, send: Any) -> None:
    """Closes before accepting: the client gets 403."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.close", "code": 1008})


_reports: list[dict[str, Any]] = []


async def send_report(message: dict[str, Any]) -> None:
    _reports.append(message)


async def close_with(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts, then closes with the code and reason the client sends as text ``CODE REASON``;
    ``disconnect`` makes it wait for the client's close instead. Over HTTP it lists the
    ``websocket.disconnect`` messages it received."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(_reports).encode()})
        return
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    message = await receive()
    if message.get("text") == "disconnect":
        message = await receive()
        await send_report(message)
        return
    code, _, reason = message["text"].partition(" ")
    await send({"type": "websocket.close", "code": int(code), "reason": reason})
    message = await receive()
    await send_report(message)


async def fail(scope: Scope, receive: Any, send: Any) -> None:
    """Raises before accepting (path ``/before``) or after (any other path)."""
    if scope["type"] != "websocket":
        return
    await receive()
    if scope["path"] == "/before":
        raise RuntimeError("boom before accept")
    await send({"type": "websocket.accept"})
    await receive()
    raise RuntimeError("boom after accept")


async def flood(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts and sends 64 KiB messages as fast as the client reads them, forever."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    payload = b"x" * 65536
    sent = 0
    while True:
        await send({"type": "websocket.send", "bytes": payload})
        sent += 1
        if sent % 1024 == 0:
            await asyncio.sleep(0)


async def sink(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts and never reads: a client sending to it must be pushed back, not buffered."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    await asyncio.Event().wait()
