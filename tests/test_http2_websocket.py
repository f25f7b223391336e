"""WebSocket over HTTP/2 (RFC 8441) against a real server.

The ``websockets`` library cannot open one (it speaks HTTP/1.1 only), so the client here is the
``h2`` library sending the extended CONNECT, with WebSocket frames made and read by the
``websockets`` sans-I/O protocol on the client side, over the stream's DATA frames.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
from websockets.frames import Close, Opcode
from websockets.protocol import Protocol, Side, State

from tests.conftest import Certs, ServerFactory
from tests.h2client import H2Client, client_tls


class H2WebSocket:
    """One WebSocket on a stream of an :class:`H2Client` connection."""

    def __init__(
        self, client: H2Client, path: str = "/", extra: list[tuple[str, str]] | None = None
    ) -> None:
        self.client = client
        headers = [(":protocol", "websocket"), ("sec-websocket-version", "13"), *(extra or [])]
        self.stream_id = client.send(path, method="CONNECT", headers=headers, end=False)
        self.reply = client.replies[self.stream_id]
        while not self.reply.status and not client.closed and self.reply.reset is None:
            client.read_once()
        self.ws = Protocol(Side.CLIENT, state=State.OPEN)
        self._seen = 0

    def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            self.ws.send_text(data.encode())
        else:
            self.ws.send_binary(data)
        self._flush()

    def close(self, code: int = 1000) -> None:
        self.ws.send_close(code, "bye")
        self._flush()

    def _flush(self) -> None:
        out = b"".join(self.ws.data_to_send())
        if out:
            self.client.send_body(self.stream_id, out, end=False)
            self.client.flush()

    def receive(self) -> Any:
        """The next frame's event (a ``websockets.frames.Frame``), or None if the stream ended."""
        while True:
            events = self.ws.events_received()
            if events:
                self._pending = events[1:]
                return events[0]
            if getattr(self, "_pending", None):
                return self._pending.pop(0)
            body = self.reply.body
            if len(body) > self._seen:
                self.ws.receive_data(body[self._seen :])
                self._seen = len(body)
                self._flush()  # pongs, the close reply
                continue
            if self.reply.ended or self.reply.reset is not None or self.client.closed:
                return None
            self.client.read_once()


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_echo_over_an_extended_connect(serve: ServerFactory, certs: Certs, tls: bool) -> None:
    args = ["--certfile", certs.server_pem] if tls else []
    server = serve("ws_apps:echo", *args)
    context = client_tls(certs.ca_pem) if tls else None
    with H2Client(server.port, tls=context) as client:
        ws = H2WebSocket(client, "/chat")
        assert ws.reply.status == 200
        assert "sec-websocket-accept" not in ws.reply.headers  # RFC 8441 §5: no key, no accept
        ws.send("hello")
        ws.send(b"\x00\x01" * 50_000)  # beyond the client's 64 KiB stream window
        first, second = ws.receive(), ws.receive()
        assert (first.opcode, first.data) == (Opcode.TEXT, b"hello")
        assert (second.opcode, second.data) == (Opcode.BINARY, b"\x00\x01" * 50_000)
        # the connection keeps serving other streams beside the WebSocket
        assert client.get("/plain").body == b"http /plain"
        ws.close()
        closing = ws.receive()
        assert closing.opcode == Opcode.CLOSE
        assert Close.parse(closing.data).code == 1000
        while not ws.reply.ended and ws.reply.reset is None and not client.closed:
            client.read_once()
        assert ws.reply.ended  # the server ended its side with END_STREAM


def test_scope_and_subprotocols(serve: ServerFactory) -> None:
    server = serve("ws_apps:scope_info")
    with H2Client(server.port) as client:
        ws = H2WebSocket(client, "/info?x=1", extra=[("sec-websocket-protocol", "chat, superchat")])
        assert ws.reply.status == 200
        assert ws.reply.headers["sec-websocket-protocol"] == "chat"
        assert ws.reply.headers["x-portico-test"] == "yes"
        info = json.loads(ws.receive().data)
    assert (info["http_version"], info["path"], info["query_string"]) == ("2", "/info", "x=1")
    assert info["subprotocols"] == ["chat", "superchat"]


def test_a_refused_handshake_is_an_http_response_on_the_stream(serve: ServerFactory) -> None:
    server = serve("ws_apps:refuse")
    with H2Client(server.port) as client:
        ws = H2WebSocket(client)
        assert ws.reply.status == 403
        assert client.get("/").status == 500  # an HTTP request to a WebSocket-only app
        assert not client.closed  # the connection goes on


def test_shutdown_closes_with_going_away(serve: ServerFactory) -> None:
    server = serve("ws_apps:echo")
    with H2Client(server.port) as client:
        ws = H2WebSocket(client)
        ws.send("ping")
        assert ws.receive().data == b"ping"
        server.signal(signal.SIGTERM)
        closing = ws.receive()
        assert closing.opcode == Opcode.CLOSE
        assert Close.parse(closing.data).code == 1001
    assert server.wait() == 0
