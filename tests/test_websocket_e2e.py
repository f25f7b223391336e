"""End to end: WebSockets on a real ``portico`` process, with the ``websockets`` client and raw
sockets (for what a well-behaved client library will not do: ignore pings, stop reading)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import ServerFactory, ServerProcess, raw_exchange, rss_kib


def run(coro: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coro(), 30))


def ws_url(server: ServerProcess, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def handshake_request(path: str = "/", key: bytes | None = None, extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16)) if key is None else key
    return (
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\n%s\r\n" % (path.encode(), key, extra)
    )


VERSION_13 = b"Sec-WebSocket-Version: 13\r\n"


class RawWebSocket:
    """A minimal client on a plain socket: it answers nothing unless told to."""

    def __init__(self, port: int, path: str = "/") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(handshake_request(path, extra=VERSION_13))
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        return data

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self._recv()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._exactly(8))
        return first & 0x0F, self._exactly(length)

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        key = (mask * (len(payload) // 4 + 1))[: len(payload)]
        masked = (int.from_bytes(payload) ^ int.from_bytes(key)).to_bytes(len(payload))
        if len(payload) < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload))
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, len(payload))
        self.sock.sendall(head + mask + masked)

    def close(self) -> None:
        self.sock.close()


# --- the handshake ----------------------------------------------------------------------------


def test_echo_text_and_bytes_with_compression(serve: ServerFactory) -> None:
    server = serve("ws_apps:echo", "--access-log")

    async def main() -> None:
        async with connect(ws_url(server, "/chat?room=1")) as ws:
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            assert "server_max_window_bits=12" in ws.response.headers["sec-websocket-extensions"]
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            big = "abc" * 100_000  # compressible, 300 kB: many frames each way
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send([b"frag", b"mented"])  # one message in fragments
            assert await ws.recv() == b"fragmented"

    run(main)
    assert server.wait_for_log('"GET /chat?room=1 HTTP/1.1" 101 ')


def test_compression_off_when_disabled_or_not_offered(serve: ServerFactory) -> None:
    server = serve("ws_apps:echo", "--no-ws-per-message-deflate")
    plain = serve("ws_apps:echo")

    async def main() -> None:
        async with connect(ws_url(server)) as ws:
            assert "sec-websocket-extensions" not in ws.response.headers
            await ws.send("x" * 10_000)
            assert await ws.recv() == "x" * 10_000
        async with connect(ws_url(plain), compression=None) as ws:
            assert "sec-websocket-extensions" not in ws.response.headers
            await ws.send("plain")
            assert await ws.recv() == "plain"

    run(main)


def test_scope_subprotocol_and_accept_headers(serve: ServerFactory) -> None:
    server = serve("ws_apps:scope_info", "--root-path", "/base")

    async def main() -> dict[str, Any]:
        async with connect(
            ws_url(server, "/base/a%20b?q=1"),
            subprotocols=["chat.v2", "chat.v1"],  # type: ignore[list-item]
            additional_headers={"X-Probe": "1"},
        ) as ws:
            assert ws.subprotocol == "chat.v2"
            assert ws.response.headers["x-portico-test"] == "yes"
            return json.loads(await ws.recv())  # type: ignore[no-any-return]

    info = run(main)
    assert info["type"] == "websocket"
    assert info["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert info["http_version"] == "1.1"
    assert info["scheme"] == "ws"
    assert info["path"] == "/base/a b"
    assert info["raw_path"] == "/base/a%20b"
    assert info["query_string"] == "q=1"
    assert info["root_path"] == "/base"
    assert info["subprotocols"] == ["chat.v2", "chat.v1"]
    assert ["x-probe", "1"] in info["headers"]
    assert info["client"][0] == "127.0.0.1"
    assert info["server"] == ["127.0.0.1", server.port]
    assert info["extensions"] == ["websocket.http.response"]


def test_without_subprotocols_none_is_chosen(serve: ServerFactory) -> None:
    server = serve("ws_apps:scope_info")

    async def main() -> None:
        async with connect(ws_url(server)) as ws:
            assert ws.subprotocol is None
            assert "sec-websocket-protocol" not in ws.response.headers
            assert json.loads(await ws.recv())["subprotocols"] == []

    run(main)


def test_denial_response_and_close_before_accept(serve: ServerFactory) -> None:
    deny = serve("ws_apps:deny", "--access-log")
    refuse = serve("ws_apps:refuse")

    async def main() -> None:
        with pytest.raises(InvalidStatus) as denied:
            async with connect(ws_url(deny)):
                pass
        response = denied.value.response
        assert response.status_code == 401
        assert response.headers["x-reason"] == "token"
        assert response.body == b"no entry"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(refuse)):
                pass
        assert refused.value.response.status_code == 403

    run(main)
    assert deny.wait_for_log('"GET / HTTP/1.1" 401 8')


def test_bad_key_is_400_and_other_versions_426(serve: ServerFactory) -> None:
    server = serve("ws_apps:echo")
    reply = raw_exchange(server.port, handshake_request(key=b"c2hvcnQ=", extra=VERSION_13))
    assert reply.startswith(b"HTTP/1.1 400 "), reply
    assert b"connection: close" in reply
    reply = raw_exchange(server.port, handshake_request(extra=b"Sec-WebSocket-Version: 8\r\n"))
    assert reply.startswith(b"HTTP/1.1 426 "), reply
    assert b"sec-websocket-version: 13\r\n" in reply
    reply = raw_exchange(server.port, handshake_request())  # no version at all
    assert reply.startswith(b"HTTP/1.1 426 "), reply
    # A valid handshake followed by frames in the same packet: the frames reach the app.
    raw = RawWebSocket(server.port)
    raw.send_frame(0x1, b"after the head")
    assert raw.read_frame() == (0x1, b"after the head")
    raw.close()


def test_wsgi_app_gets_the_upgrade_as_an_ordinary_request(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:echo")
    pipelined = handshake_request("/first", extra=VERSION_13) + (
        b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    reply = raw_exchange(server.port, pipelined)
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    assert reply.count(b"HTTP/1.1 200 ") == 2  # what followed the upgrade was the next request
    head, rest = reply.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    first = json.loads(rest[:length])
    assert first["PATH_INFO"] == "/first"
    assert first["HTTP_UPGRADE"] == "websocket"


def test_mounts_route_websockets_by_prefix(serve: ServerFactory) -> None:
    server = serve("--mount", "/ws=ws_apps:echo", "--mount", "/w=wsgi_apps:echo")

    async def main() -> None:
        async with connect(ws_url(server, "/ws/room")) as ws:
            await ws.send("mounted")
            assert await ws.recv() == "mounted"
        with pytest.raises(InvalidStatus) as wsgi:
            async with connect(ws_url(server, "/w/x")):
                pass
        assert wsgi.value.response.status_code == 200  # WSGI: an ordinary response
        with pytest.raises(InvalidStatus) as nowhere:
            async with connect(ws_url(server, "/elsewhere")):
                pass
        assert nowhere.value.response.status_code == 404

    run(main)


# --- closing ----------------------------------------------------------------------------------


def test_close_codes_and_reasons_both_ways(serve: ServerFactory) -> None:
    server = serve("ws_apps:close_with")

    async def main() -> None:
        async with connect(ws_url(server)) as ws:
            await ws.send("4001 app says bye")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "app says bye")
        async with connect(ws_url(server)) as ws:
            await ws.send("disconnect")
            await ws.close(4002, "client says bye")

    run(main)
    deadline = time.monotonic() + 5
    while True:
        reports = httpx.get(server.url).json()
        if len(reports) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert reports == [
        {"type": "websocket.disconnect", "code": 4001, "reason": "app says bye"},
        {"type": "websocket.disconnect", "code": 4002, "reason": "client says bye"},
    ]


def test_app_exceptions_are_500_before_accept_and_1011_after(serve: ServerFactory) -> None:
    server = serve("ws_apps:fail")

    async def main() -> None:
        with pytest.raises(InvalidStatus) as before:
            async with connect(ws_url(server, "/before")):
                pass
        assert before.value.response.status_code == 500
        async with connect(ws_url(server, "/after")) as ws:
            await ws.send("go")
            with pytest.raises(ConnectionClosed) as after:
                await ws.recv()
        assert after.value.rcvd is not None and after.value.rcvd.code == 1011

    run(main)
    assert server.wait_for_log("boom before accept")
    assert server.wait_for_log("boom after accept")


def test_message_too_big_closes_with_1009(serve: ServerFactory) -> None:
    server = serve("ws_apps:echo", "--ws-max-message-size", "1000")

    async def main() -> None:
        async with connect(ws_url(server)) as ws:
            await ws.send(b"x" * 1000)  # at the limit: fine
            assert await ws.recv() == b"x" * 1000
            await ws.send(b"x" * 1001)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

    run(main)


def test_a_client_that_does_not_answer_pings_is_closed_with_1011(serve: ServerFactory) -> None:
    server = serve("ws_apps:echo", "--ws-ping-interval", "0.5", "--ws-ping-timeout", "1")
    raw = RawWebSocket(server.port)
    opcode, payload = raw.read_frame()
    assert opcode == 0x9  # a ping, which this client never answers
    opcode, payload = raw.read_frame()
    assert opcode == 0x8
    assert struct.unpack("!H", payload[:2])[0] == 1011
    with pytest.raises(EOFError):
        raw.read_frame()  # then the server closes the TCP connection (before our read timeout)
    raw.close()


def test_pings_answered_keep_the_connection_open(serve: ServerFactory) -> None:
    server = serve("ws_apps:echo", "--ws-ping-interval", "0.5", "--ws-ping-timeout", "1")

    async def main() -> None:
        async with connect(ws_url(server), ping_interval=None) as ws:
            await asyncio.sleep(3.5)  # several ping rounds, answered by the client library
            await ws.send("still here")
            assert await ws.recv() == "still here"

    run(main)


def test_graceful_shutdown_closes_with_1001(serve: ServerFactory) -> None:
    server = serve("ws_apps:echo")

    async def main() -> None:
        async with connect(ws_url(server)) as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            server.signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001

    run(main)
    assert server.wait(10) == 0


# --- backpressure -----------------------------------------------------------------------------


def test_a_client_that_stops_reading_cannot_grow_the_worker(serve: ServerFactory) -> None:
    # The app sends 64 KiB messages as fast as it may: without backpressure it would buffer
    # hundreds of MiB in a few seconds; with it, send() waits once the write buffer is full.
    server = serve("ws_apps:flood")
    baseline = rss_kib(server.worker_pid)
    raw = RawWebSocket(server.port)
    raw.read_frame()  # it is sending
    time.sleep(3)
    grown = rss_kib(server.worker_pid) - baseline
    assert grown < 16 * 1024, f"worker grew by {grown} KiB"
    for _ in range(50):  # and the stream is intact when the client reads again
        opcode, payload = raw.read_frame()
        assert (opcode, len(payload)) == (0x2, 65536)
    raw.close()


def test_an_app_that_stops_reading_pushes_back_on_the_client(serve: ServerFactory) -> None:
    # The app never calls receive(): Portico queues --ws-max-queue messages, then stops reading
    # the socket, so the client's sends block instead of the worker buffering them.
    server = serve("ws_apps:sink", "--ws-max-queue", "4", "--graceful-timeout", "1")
    baseline = rss_kib(server.worker_pid)
    raw = RawWebSocket(server.port)
    raw.sock.settimeout(2)
    sent = 0
    message = b"y" * 65536
    with pytest.raises(TimeoutError):
        while sent < 2000:  # 125 MiB if nothing pushed back
            raw.send_frame(0x2, message)
            sent += 1
    assert sent < 200
    grown = rss_kib(server.worker_pid) - baseline
    assert grown < 16 * 1024, f"worker grew by {grown} KiB"
    raw.close()


def test_many_connections_echo_concurrently(serve: ServerFactory) -> None:
    server = serve("ws_apps:echo")

    async def one(i: int) -> None:
        ws: ClientConnection
        async with connect(ws_url(server)) as ws:
            for n in range(20):
                await ws.send(f"{i}:{n}")
                assert await ws.recv() == f"{i}:{n}"

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(50)))

    run(main)
