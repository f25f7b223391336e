"""The demo app, called directly with a fake receive and send."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from typing import Any

import pytest

from portico.gateways.demo import app

Message = MutableMapping[str, Any]


def call(scope: dict[str, Any], incoming: Sequence[Message]) -> list[Message]:
    sent: list[Message] = []
    queue = list(incoming)

    async def receive() -> Message:
        return queue.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert not queue, "the app did not read every message"
    return sent


def http_scope(**overrides: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/hello world",
        "raw_path": b"/hello%20world",
        "query_string": b"a=1&b=<i>",
        "root_path": "",
        "headers": [(b"host", b"example.com"), (b"x-evil", b"<script>alert(1)</script>")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(overrides)
    return scope


def test_page_shows_the_scope_escaped() -> None:
    body = [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"de", "more_body": False},
    ]
    start, response = call(http_scope(), body)
    assert start["type"] == "http.response.start"
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/html; charset=utf-8"
    page = response["body"].decode("utf-8")
    assert int(headers[b"content-length"]) == len(response["body"])
    assert response.get("more_body", False) is False
    assert "<title>Portico</title>" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a=1&amp;b=&lt;i&gt;" in page
    for text in (
        "POST",
        "/hello world",
        "/hello%20world",
        "1.1",
        "127.0.0.1:50000",
        "127.0.0.1:8000",
        "example.com",
        "x-evil",
        "5 bytes",
    ):
        assert text in page


def test_bytes_are_shown_as_latin1() -> None:
    scope = http_scope(headers=[(b"x-bytes", b"caf\xe9")], raw_path=b"/\xff")
    _, response = call(scope, [{"type": "http.request"}])
    page = response["body"].decode("utf-8")
    assert "café" in page
    assert "/ÿ" in page


def test_missing_optional_scope_keys() -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    start, _ = call(scope, [{"type": "http.request", "body": b""}])
    assert start["status"] == 200


def test_disconnect_before_body_ends_sends_nothing() -> None:
    incoming: list[Message] = [
        {"type": "http.request", "body": b"x", "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert call(http_scope(), incoming) == []


def test_lifespan() -> None:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = call({"type": "lifespan", "asgi": {"version": "3.0"}}, incoming)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


def test_websocket_is_refused() -> None:
    sent = call({"type": "websocket", "path": "/"}, [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.close", "code": 1000}]


def test_unknown_scope_raises() -> None:
    with pytest.raises(ValueError, match="does not handle 'telepathy' scopes"):
        call({"type": "telepathy"}, [])
