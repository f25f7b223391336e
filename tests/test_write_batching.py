"""Responses of one event-loop turn are written together at its end (``Driver.write``).

The in-memory tests run the real driver, protocol and gateway on a real event loop and record,
in one journal, when each app finished and when each transport was written to. The end-to-end
test checks ordering under concurrency and pipelining over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from portico.config import Config
from portico.gateways.asgi import ASGIApp
from portico.runtime.context import DEFER_LIMIT, WorkerContext
from portico.runtime.http1 import H1Driver
from portico.runtime.router import Mount, Router
from tests.conftest import ServerFactory

Journal = list[tuple[str, int]]


class RecordingTransport:
    """Just enough of ``asyncio.Transport``; every call lands in the shared journal."""

    def __init__(self, journal: Journal, index: int) -> None:
        self.journal = journal
        self.index = index
        self.data = bytearray()
        self.writes = 0
        self.eof = False
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        info = {"peername": ("127.0.0.1", 40000 + self.index), "sockname": ("127.0.0.1", 8000)}
        return info.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.journal.append(("write", self.index))
        self.data += data
        self.writes += 1

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.journal.append(("eof", self.index))
        self.eof = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.journal.append(("close", self.index))
        self.closed = True

    def abort(self) -> None:
        self.close()


def journaling_app(journal: Journal, body: bytes) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        index = scope["client"][1] - 40000
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        journal.append(("app done", index))

    return app


async def serve_in_memory(
    body: bytes, data: list[bytes], turns: int = 5
) -> tuple[Journal, list[RecordingTransport]]:
    journal: Journal = []
    server = context(journaling_app(journal, body))
    transports = []
    for index, request in enumerate(data):
        transport = RecordingTransport(journal, index)
        driver = H1Driver(server)
        driver.connection_made(transport)  # type: ignore[arg-type]
        driver.data_received(request)
        transports.append(transport)
    for _ in range(turns):
        await asyncio.sleep(0)
    return journal, transports


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def context(app: ASGIApp) -> WorkerContext:
    """A worker's context serving ``app``, as the worker builds it."""
    ctx = WorkerContext(Config(), asyncio.get_running_loop())
    ctx.dispatcher = Router(ctx, [Mount("/", app, None, "", {})], mounted=False)
    return ctx


def test_small_responses_of_a_turn_go_out_when_the_last_app_answers() -> None:
    journal, transports = asyncio.run(serve_in_memory(b"hello", [GET] * 8))
    kinds = [kind for kind, _ in journal]
    assert sorted(i for kind, i in journal if kind == "write") == list(range(8))
    first_write = kinds.index("write")
    # seven apps answered and nothing was written; the eighth answer wrote all eight, back to
    # back, so the client side wakes once for all of them
    assert kinds[:first_write] == ["app done"] * 7
    assert kinds[first_write : first_write + 8] == ["write"] * 8
    for transport in transports:
        assert transport.writes == 1  # head and body in one write
        assert transport.data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert transport.data.endswith(b"\r\n\r\nhello")


def test_a_lone_request_is_answered_in_its_own_turn() -> None:
    journal, _ = asyncio.run(serve_in_memory(b"hello", [GET], turns=1))
    assert journal == [("write", 0), ("app done", 0)]


def test_held_responses_go_out_next_turn_when_another_request_still_runs() -> None:
    async def scenario() -> tuple[list[RecordingTransport], list[int]]:
        release = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["path"] == "/slow":
                await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        server = context(app)
        transports = []
        for index, path in enumerate([b"/slow", b"/fast"]):
            transport = RecordingTransport([], index)
            driver = H1Driver(server)
            driver.connection_made(transport)  # type: ignore[arg-type]
            driver.data_received(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path)
            transports.append(transport)
        writes = []
        for _ in range(3):
            await asyncio.sleep(0)
            writes.append(transports[1].writes)
        release.set()
        for _ in range(3):
            await asyncio.sleep(0)
        return transports, writes

    transports, writes = asyncio.run(scenario())
    assert writes[0] == 0  # held: /slow was still in flight when /fast answered
    assert writes[-1] == 1  # and written in the next turn, without waiting for /slow
    assert transports[0].data.endswith(b"ok")


class BrokenTransport(RecordingTransport):
    """A transport that refuses writes, as uvloop's does between a reset and connection_lost."""

    def write(self, data: bytes) -> None:
        raise RuntimeError("unable to perform operation: the handler is closed")


def test_a_broken_connection_does_not_cost_the_others_their_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[list[RecordingTransport], Journal]:
        journal: Journal = []
        server = context(journaling_app(journal, b"ok"))
        transports: list[RecordingTransport] = []
        for index in range(4):
            kind = BrokenTransport if index == 1 else RecordingTransport
            transport = kind(journal, index)
            if index == 2:
                transport.closed = True  # reset already seen: is_closing() says so
            driver = H1Driver(server)
            driver.connection_made(transport)  # type: ignore[arg-type]
            driver.data_received(GET)
            transports.append(transport)
        for _ in range(5):
            await asyncio.sleep(0)
        return transports, journal

    transports, journal = asyncio.run(scenario())
    assert [kind for kind, _ in journal].count("app done") == 4  # no app saw the failure
    assert transports[0].data.endswith(b"ok") and transports[3].data.endswith(b"ok")
    assert transports[1].writes == 0 and transports[1].closed  # dropped
    assert transports[2].writes == 0  # skipped: already going away
    assert "Exception in ASGI application" not in caplog.text
    assert caplog.text.count("could not write to a connection") == 1


def test_large_response_is_written_when_the_app_sends_it() -> None:
    body = b"x" * (DEFER_LIMIT + 1)
    journal, transports = asyncio.run(serve_in_memory(body, [GET] * 2))
    for i in range(2):
        # the write comes before the app's next step: nothing that large is held back
        assert journal.index(("write", i)) < journal.index(("app done", i))
        assert transports[i].data.endswith(body)


def test_pipelined_responses_are_held_together_and_in_order() -> None:
    requests = b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % n for n in range(3))
    journal, transports = asyncio.run(serve_in_memory(b"ok", [requests], turns=10))
    assert transports[0].data.count(b"HTTP/1.1 200 OK") == 3
    assert [kind for kind, _ in journal].count("app done") == 3


def test_error_after_a_held_response_comes_after_it_then_the_half_close() -> None:
    data = GET + b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
    journal, transports = asyncio.run(serve_in_memory(b"first", [data]))
    out = bytes(transports[0].data)
    assert out.index(b"\r\n\r\nfirst") < out.index(b"HTTP/1.1 400 ")
    kinds = [kind for kind, _ in journal]
    assert kinds.index("eof") > max(i for i, kind in enumerate(kinds) if kind == "write")


def test_connection_close_writes_the_held_response_before_closing() -> None:
    request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    journal, transports = asyncio.run(serve_in_memory(b"bye", [request]))
    kinds = [kind for kind, _ in journal]
    assert kinds.index("write") < kinds.index("close")
    assert transports[0].data.endswith(b"bye")


@pytest.mark.parametrize("connections", [24])
def test_concurrent_pipelined_clients_each_get_their_own_answers_in_order(
    serve: ServerFactory, connections: int
) -> None:
    server = serve("asgi_apps:echo")
    socks = [
        socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(connections)
    ]
    try:
        for c, sock in enumerate(socks):
            sock.sendall(
                b"".join(b"GET /c%d/r%d HTTP/1.1\r\nHost: a\r\n\r\n" % (c, r) for r in range(3))
            )
        for c, sock in enumerate(socks):
            paths: list[str] = []
            buffer = b""
            while len(paths) < 3:
                chunk = sock.recv(65536)
                assert chunk, "server closed early"
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    if len(rest) < length:
                        break
                    paths.append(json.loads(rest[:length])["path"])
                    buffer = rest[length:]
            assert paths == [f"/c{c}/r{r}" for r in range(3)]
    finally:
        for sock in socks:
            sock.close()
