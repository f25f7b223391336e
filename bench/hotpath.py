"""In-process profile of Portico's request path: parse → ASGI app → serialize, no sockets.

Runs the real driver, protocol and gateway on a real event loop with an in-memory transport, so
the figure (microseconds of CPU per request) is repeatable even on a busy machine. It is a tool for
working on the hot path; the comparison with other servers is ``bench/run.py``.

    python bench/hotpath.py [--requests 200000] [--connections 64] [--scenario plaintext|echo]
                            [--profile] [--portico-arg ARG ...]

``--portico-arg`` gives the worker context settings as on the command line (repeatable), and the
logs are configured from them as the server does, e.g. ``--portico-arg=--access-log-file
--portico-arg=/tmp/access.log`` measures the access log written to a file, ``--portico-arg=
--metrics-bind --portico-arg=127.0.0.1:9100`` the metrics (no master: only the worker's side).

It also runs against builds from before the connection layer (``runtime.server.Server``), so
that an interleaved A/B of two installs compares the same work.
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

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: hotpath\r\nAccept: */*\r\n\r\n"
ECHO = (
    b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: 16384\r\n\r\n" + b"x" * 16384
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b"Hello, world!"
    if scope["method"] == "POST":
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = b"Hello, world!"
    if environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def make_config(args: list[str]) -> Config:
    """The settings of ``--portico-arg``, with the logs configured from them as ``portico``
    does (an older build without a setting refuses it)."""
    if not args:
        return Config()
    from portico import logs  # noqa: PLC0415
    from portico.config import resolve  # noqa: PLC0415

    config = resolve(args, {}, lambda path: "", ".").config
    logs.configure(config.log_level, config.access_log, config.log_file, config.access_log_file)
    return config


def make_driver(loop: asyncio.AbstractEventLoop, interface: str, config: Config) -> Any:
    """A driver factory for the installed build: the worker context, or the older Server."""
    from portico.runtime.wsgi_pool import WSGIPool  # noqa: PLC0415

    pool = WSGIPool(wsgi_app, 8, root_path="", multiprocess=False) if interface == "wsgi" else None
    try:
        from portico.runtime.context import WorkerContext  # noqa: PLC0415
        from portico.runtime.router import Mount, Router  # noqa: PLC0415
    except ImportError:  # a build from before the connection layer
        from portico.runtime.server import Server  # type: ignore[attr-defined]  # noqa: PLC0415

        server = Server(config, app, loop, wsgi=pool)
        return lambda: H1Driver(server)
    ctx = WorkerContext(config, loop)
    mount = Mount("/", None if pool else app, pool, "", {})
    ctx.dispatcher = Router(ctx, [mount], mounted=False)
    return lambda: H1Driver(ctx)


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
        DONE[0] += 1
        if DONE[0] >= DONE[1] and WAKE:
            WAKE.pop().set_result(None)

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


# responses written so far, and how many the round waits for; the round's waiter
DONE = [0, 0]
WAKE: list[asyncio.Future[None]] = []


async def run(
    requests: int, connections: int, request: bytes, interface: str, config: Config
) -> float:
    loop = asyncio.get_running_loop()
    new_driver = make_driver(loop, interface, config)
    drivers = []
    for _ in range(connections):
        driver = new_driver()
        driver.connection_made(MemoryTransport())  # type: ignore[arg-type]
        drivers.append(driver)
    rounds = requests // connections
    start = time.process_time()
    for _ in range(rounds):
        DONE[1] += connections
        for driver in drivers:
            driver.data_received(request)
        if interface == "wsgi":  # the pool's threads answer: wait for the round, not spin
            if DONE[0] < DONE[1]:
                WAKE.append(loop.create_future())
                await WAKE[0]
            continue
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
    parser.add_argument("--scenario", choices=("plaintext", "echo"), default="plaintext")
    parser.add_argument("--interface", choices=("asgi", "wsgi"), default="asgi")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--portico-arg", action="append", default=[], metavar="ARG")
    args = parser.parse_args()
    config = make_config(args.portico_arg)
    try:
        import uvloop  # noqa: PLC0415 - optional

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
    request = ECHO if args.scenario == "echo" else REQUEST
    per_request = runner(run(args.requests, args.connections, request, args.interface, config))
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    print(f"{per_request:.2f} us CPU per request (in-process, no sockets)")


if __name__ == "__main__":
    main()
