"""In-process profile of Portico's request path: parse → ASGI app → serialize, no sockets.

Runs the real driver, protocol and gateway on a real event loop with an in-memory transport, so
the figure (microseconds of CPU per request) is repeatable even on a busy machine. It is a tool for
working on the hot path; the comparison with other servers is ``bench/run.py``.

    python bench/hotpath.py [--requests 200000] [--connections 64] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any

from portico.config import Config
from portico.runtime.http1 import H1Driver
from portico.runtime.server import Server

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: hotpath\r\nAccept: */*\r\n\r\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, world!"})


class MemoryTransport:
    """Just enough of ``asyncio.Transport`` for the driver."""

    def __init__(self) -> None:
        self.written = 0
        self.responses = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.responses += 1

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def run(requests: int, connections: int) -> float:
    loop = asyncio.get_running_loop()
    server = Server(Config(), app, loop)
    drivers = []
    for _ in range(connections):
        driver = H1Driver(server)
        driver.connection_made(MemoryTransport())  # type: ignore[arg-type]
        drivers.append(driver)
    rounds = requests // connections
    start = time.process_time()
    for _ in range(rounds):
        for driver in drivers:
            driver.data_received(REQUEST)
        await asyncio.sleep(0)  # one loop iteration, as when a batch of reads arrives together
        await asyncio.sleep(0)
    elapsed = time.process_time() - start
    done = sum(d.transport.responses for d in drivers)  # type: ignore[attr-defined]
    assert done == rounds * connections, (done, rounds * connections)
    return elapsed / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop  # noqa: PLC0415 - optional

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
    per_request = runner(run(args.requests, args.connections))
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    print(f"{per_request:.2f} us CPU per request (in-process, no sockets)")


if __name__ == "__main__":
    main()
