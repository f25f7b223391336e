"""The app served when none is named: a page that shows the request as Portico's ASGI scope.

It is a plain ASGI 3 app with no imports beyond the standard library, so it doubles as a smoke test
of the server and as an example. Every value the client chose is HTML-escaped; bytes are decoded
as latin-1, which maps each byte to one character and never fails.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

__all__ = ["app"]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]

_STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;
color:#1d2330}
main{max-width:52rem;margin:2.5rem auto;padding:0 1.25rem}
h1{font-size:1.6rem;margin:0 0 .25rem}
p.lead{color:#5b6475;margin:0 0 1.5rem}
h2{font-size:1rem;margin:1.75rem 0 .5rem;color:#39414f}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8;
border-radius:6px;overflow:hidden}
th,td{text-align:left;padding:.4rem .75rem;border-top:1px solid #eceff3;vertical-align:top}
th{width:11rem;font-weight:600;color:#39414f;background:#fafbfc}
td{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px;word-break:break-all}
tr:first-child th,tr:first-child td{border-top:0}
"""


def _text(value: object) -> str:
    """A scope value as escaped HTML text."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    elif isinstance(value, list | tuple) and len(value) == 2:
        host, port = value
        value = f"{host}:{port}"
    elif value is None:
        value = "—"
    return html.escape(str(value))


def _rows(pairs: Iterable[tuple[object, object]]) -> str:
    return "".join(f"<tr><th>{_text(key)}</th><td>{_text(value)}</td></tr>" for key, value in pairs)


def render(scope: _Scope, body_size: int) -> bytes:
    """The HTML page describing ``scope``."""
    request = [
        (key, scope.get(key))
        for key in (
            "method",
            "path",
            "raw_path",
            "query_string",
            "http_version",
            "scheme",
            "root_path",
            "client",
            "server",
        )
    ]
    request.append(("body", f"{body_size} bytes"))
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Portico</title><style>{_STYLE}</style></head><body><main>"
        "<h1>Portico</h1>"
        "<p class=lead>It works. This is the demo app; name yours as "
        "<code>portico module:app</code>. Below is your request as the app sees it.</p>"
        f"<h2>Request</h2><table>{_rows(request)}</table>"
        f"<h2>Headers</h2><table>{_rows(scope.get('headers', []))}</table>"
        "</main></body></html>\n"
    )
    return page.encode("utf-8")


async def _lifespan(receive: _Receive, send: _Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: _Scope, receive: _Receive, send: _Send) -> None:
    """Answer every HTTP request with a page describing it."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1000})  # closing before accept: 403
        return
    if scope["type"] != "http":
        raise ValueError(f"the demo app does not handle {scope['type']!r} scopes")
    body_size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body_size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    page = render(scope, body_size)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(page)).encode("ascii")),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": page})
