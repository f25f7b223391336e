"""The connection layer in memory: protocol selection by preface, the worker context's admission
and counters, and the router; real drivers, protocols and gateways on a real event loop."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from portico.config import Config
from portico.runtime.context import WorkerContext
from portico.runtime.http1 import H1Driver
from portico.runtime.router import Mount, Router

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Transport:
    """Just enough of ``asyncio.Transport`` to run a driver on."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.protocol: asyncio.BaseProtocol | None = None
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        self.data += data

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class Recorder(asyncio.Protocol):
    """The driver of "another protocol": records what it was handed."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.data = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello " + scope["path"].encode()})


def context(config: Config | None = None, mounts: list[Mount] | None = None) -> WorkerContext:
    ctx = WorkerContext(config or Config(), asyncio.get_running_loop())
    mounted = mounts is not None
    ctx.dispatcher = Router(ctx, mounts or [Mount("/", hello, None, "", {})], mounted=mounted)
    return ctx


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_preface_hands_the_connection_over_even_split_across_reads() -> None:
    async def scenario() -> None:
        ctx = context()
        recorders: list[Recorder] = []

        def other(_: WorkerContext) -> Recorder:
            recorders.append(Recorder())
            return recorders[-1]

        ctx.prefaces = ((PREFACE, other),)
        transport = Transport()
        driver = H1Driver(ctx)
        driver.connection_made(transport)  # type: ignore[arg-type]
        assert driver in ctx.connections
        for piece in (PREFACE[:3], PREFACE[3:10], PREFACE[10:] + b"frames"):
            driver.data_received(piece)
        [recorder] = recorders
        assert recorder.transport is transport and transport.protocol is recorder
        assert recorder.data == PREFACE + b"frames"  # nothing was lost or parsed as HTTP/1.1
        assert driver not in ctx.connections and transport.data == b""

    asyncio.run(scenario())


def test_http11_is_served_as_before_when_a_preface_is_possible() -> None:
    async def scenario() -> None:
        ctx = context()
        ctx.prefaces = ((PREFACE, lambda _: Recorder()),)
        transport = Transport()
        driver = H1Driver(ctx)
        driver.connection_made(transport)  # type: ignore[arg-type]
        request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
        driver.data_received(request[:1])  # "G": not a preface's first byte
        driver.data_received(request[1:])
        await settle()
        assert transport.data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert transport.data.endswith(b"hello /x")

        # a request that starts like the preface but is not one is HTTP/1.1's to judge
        transport = Transport()
        driver = H1Driver(ctx)
        driver.connection_made(transport)  # type: ignore[arg-type]
        driver.data_received(b"PRI")
        driver.data_received(b"NT / HTTP/1.1\r\nHost: a\r\n\r\n")
        await settle()
        assert transport.data.startswith(b"HTTP/1.1 501 ")  # an unknown method

        # a partial preface and then the end of input: parsed as HTTP/1.1 after all
        transport = Transport()
        driver = H1Driver(ctx)
        driver.connection_made(transport)  # type: ignore[arg-type]
        driver.data_received(PREFACE[:5])
        driver.eof_received()
        await settle()
        assert transport.data == b"" and transport.closed

    asyncio.run(scenario())


def test_without_prefaces_nothing_is_held_back() -> None:
    async def scenario() -> None:
        ctx = context()
        transport = Transport()
        driver = H1Driver(ctx)
        driver.connection_made(transport)  # type: ignore[arg-type]
        assert driver._sniffed is None
        driver.data_received(PREFACE)
        await settle()
        assert transport.data.startswith(b"HTTP/1.1 ")  # HTTP/1.1 answers the preface itself

    asyncio.run(scenario())


def test_admission_counts_and_refuses() -> None:
    async def scenario() -> None:
        ctx = context(Config(max_connections=1, max_in_flight=1))
        first, second = Transport(), Transport()
        driver = H1Driver(ctx)
        driver.connection_made(first)  # type: ignore[arg-type]
        refused = H1Driver(ctx)
        refused.connection_made(second)  # type: ignore[arg-type]
        assert second.data.startswith(b"HTTP/1.1 503 ")
        assert ctx.connections == {driver}
        driver.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert ctx.in_flight == 1 and ctx.requests_served == 1
        await settle()
        assert ctx.in_flight == 0 and not ctx.tasks
        assert first.data.startswith(b"HTTP/1.1 200 OK\r\n")

    asyncio.run(scenario())


def test_the_router_picks_the_longest_prefix_and_answers_404_itself() -> None:
    async def scenario() -> None:
        ctx = context(
            mounts=[Mount("/", hello, None, "", {}), Mount("/api", hello, None, "/api", {})]
        )
        out = []
        for target in (b"/api/v1", b"/apix", b"/"):
            transport = Transport()
            driver = H1Driver(ctx)
            driver.connection_made(transport)  # type: ignore[arg-type]
            driver.data_received(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % target)
            await settle()
            out.append(bytes(transport.data))
        assert all(reply.startswith(b"HTTP/1.1 200 ") for reply in out)
        only_api = context(mounts=[Mount("/api", hello, None, "/api", {})])
        transport = Transport()
        driver = H1Driver(only_api)
        driver.connection_made(transport)  # type: ignore[arg-type]
        driver.data_received(b"GET /other HTTP/1.1\r\nHost: a\r\n\r\n")
        await settle()
        assert transport.data.startswith(b"HTTP/1.1 404 Not Found\r\n")
        assert only_api.in_flight == 0

    asyncio.run(scenario())


def test_no_sendfile_leaves_plain_sockets_to_reads_and_writes() -> None:
    """``--no-sendfile`` (gunicorn's spelling): a plain socket gets no ``sendfile_fd``, so files go
    out as reads and writes, the path TLS connections take."""

    class Plain(Transport):
        def __init__(self, sock: socket.socket) -> None:
            super().__init__()
            self.sock = sock

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            if name == "socket":
                return self.sock
            return super().get_extra_info(name, default)

    async def main() -> list[int]:
        fds = []
        left, right = socket.socketpair()
        with left, right:
            for flag in (True, False):
                driver = H1Driver(context(Config(sendfile=flag)))
                driver.take_transport(Plain(left))
                fds.append(driver.sendfile_fd)
        return fds

    on, off = asyncio.run(main())
    assert on >= 0
    assert off == -1
