"""ASGI apps served by the end-to-end tests (``portico asgi_apps:NAME`` from this folder)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

Scope = dict[str, Any]


async def read_body(receive: Any) -> tuple[bytes, list[dict[str, Any]]]:
    body = b""
    messages = []
    while True:
        message = await receive()
        messages.append({k: v for k, v in message.items() if k != "body"})
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return body, messages


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with a JSON description of the request it received, exactly as the app saw it."""
    if scope["type"] != "http":
        return
    body, _ = await read_body(receive)
    payload = {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "root_path": scope["root_path"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "client": list(scope["client"]) if scope["client"] else None,
        "server": list(scope["server"]) if scope["server"] else None,
        "body": body.decode("latin-1"),
        "asgi": scope["asgi"],
        "state": sorted(scope.get("state", {})),
        "extensions": sorted(scope.get("extensions", {})),
    }
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"x-echo", b"1")],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def tls_info(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with the scope's scheme and its TLS extension (null without TLS)."""
    if scope["type"] != "http":
        return
    await read_body(receive)
    payload = {"scheme": scope["scheme"], "tls": scope["extensions"].get("tls")}
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def stream(scope: Scope, receive: Any, send: Any) -> None:
    """Streams ``?n`` pieces without Content-Length (chunked on HTTP/1.1)."""
    if scope["type"] != "http":
        return
    count = int(scope["query_string"] or b"5")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(count):
        await send({"type": "http.response.body", "body": b"piece %d\n" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def big(scope: Scope, receive: Any, send: Any) -> None:
    """A response of ``?size`` bytes (default 8 MiB) in 64 KiB pieces, with Content-Length."""
    if scope["type"] != "http":
        return
    size = int(scope["query_string"] or b"8388608")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(size).encode())],
        }
    )
    piece = b"x" * 65536
    sent = 0
    while sent < size:
        n = min(len(piece), size - sent)
        await send({"type": "http.response.body", "body": piece[:n], "more_body": True})
        sent += n
    await send({"type": "http.response.body", "body": b""})


async def slow(scope: Scope, receive: Any, send: Any) -> None:
    """Sleeps ``?seconds`` (default 1) before answering; says when it started, so that a test
    can wait for that instead of sleeping."""
    if scope["type"] != "http":
        return
    print("slow request started", flush=True)
    await asyncio.sleep(float(scope["query_string"] or b"1"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"slow done"})


async def trailers(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"trailer", b"x-checksum")],
            "trailers": True,
        }
    )
    await send({"type": "http.response.body", "body": b"data", "more_body": False})
    await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})


async def pathsend(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = os.environ["ASGI_TEST_FILE"]
    size = os.path.getsize(path)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(size).encode())],
        }
    )
    await send({"type": "http.response.pathsend", "path": path})


async def pathsend_variants(scope: Scope, receive: Any, send: Any) -> None:
    """``pathsend`` of ``ASGI_TEST_FILE`` with ``?chunked`` (no Content-Length), ``?missing`` (a
    path that does not exist) or ``?lie`` (a Content-Length 10 bytes larger than the file)."""
    if scope["type"] != "http":
        return
    path = os.environ["ASGI_TEST_FILE"]
    size = os.path.getsize(path)
    variant = scope["query_string"]
    length = size + 10 if variant == b"lie" else size
    headers = [] if variant == b"chunked" else [(b"content-length", b"%d" % length)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if variant == b"missing":
        path += ".missing"
    await send({"type": "http.response.pathsend", "path": path})


async def errors(scope: Scope, receive: Any, send: Any) -> None:
    """Misbehaviours chosen by path: /raise, /raise-after-start, /no-response, /bad-header,
    /out-of-order, /too-long, /too-short, /incomplete."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    start = {"type": "http.response.start", "status": 200, "headers": []}
    if path == "/raise":
        raise RuntimeError("boom before start")
    if path == "/no-response":
        return
    if path == "/bad-header":
        await send({**start, "headers": [(b"x-evil", b"a\r\nset-cookie: pwned=1")]})
        await send({"type": "http.response.body", "body": b"never"})
        return
    if path == "/out-of-order":
        await send({"type": "http.response.body", "body": b"body before start"})
        return
    if path == "/too-long":  # streamed: the error comes after the head was written
        await send({**start, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})
        return
    if path == "/too-short":  # one message: caught before anything is written
        await send({**start, "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"short"})
        return
    await send(start)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    if path == "/raise-after-start":
        raise RuntimeError("boom after start")
    # /incomplete: returns without finishing the body


async def disconnect_probe(scope: Scope, receive: Any, send: Any) -> None:
    """Waits for http.disconnect and records that it came (in a file named by the env)."""
    if scope["type"] != "http":
        return
    await read_body(receive)
    print("disconnect_probe waiting", flush=True)
    message = await receive()
    with open(os.environ["ASGI_TEST_FILE"], "w") as out:
        out.write(message["type"])


async def upload_size(scope: Scope, receive: Any, send: Any) -> None:
    """Counts the body without keeping it; reports the size and the number of messages."""
    if scope["type"] != "http":
        return
    total = messages = 0
    while True:
        message = await receive()
        messages += 1
        total += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"%d %d" % (total, messages)})


async def early_reject(scope: Scope, receive: Any, send: Any) -> None:
    """Rejects a request without reading its body (for 100-continue tests)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 413, "headers": []})
    await send({"type": "http.response.body", "body": b"no thanks"})


class Lifespan:
    """A lifespan app: startup fills state; ``ASGI_TEST_MODE`` selects failures."""

    def __init__(self, mode: str | None = None) -> None:
        self.mode = mode or os.environ.get("ASGI_TEST_MODE", "ok")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            if self.mode == "fail":
                await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
                return
            if self.mode == "raise":
                raise RuntimeError("startup exploded")
            scope["state"]["answer"] = 42
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            print("lifespan shutdown ran", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return
        answer = scope["state"].get("answer")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"answer=%r" % (answer,)})


lifespan_app = Lifespan()
failing_lifespan = Lifespan("fail")


async def no_lifespan(scope: Scope, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"  # the common pattern of apps that ignore lifespan
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def asgi2(scope: Scope) -> Any:
    async def instance(receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2 " + scope["path"].encode()})

    if scope["type"] == "lifespan":

        async def lifespan_instance(receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})

        return lifespan_instance
    return instance
