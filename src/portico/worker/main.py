"""One worker process: its event loop, the app's lifespan, signals, and graceful drain.

Signal handlers only record what was asked; the loop acts on it (the arbiter pattern of gunicorn).
SIGTERM drains gracefully within ``--graceful-timeout``; SIGINT and SIGQUIT drain with a short
deadline (a second Ctrl-C cuts it off at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

from portico.errors import EXIT_OK, StartupError
from portico.gateways.lifespan import Lifespan
from portico.gateways.loader import LoadedApp, load_app
from portico.runtime.binds import create_socket, describe
from portico.runtime.server import Server
from portico.runtime.wsgi_pool import WSGIPool

if TYPE_CHECKING:
    from portico.config import Config

log = logging.getLogger("portico.error")

FAST_SHUTDOWN_TIMEOUT = 1.0


def _loop_factory(name: str) -> type[asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - optional: plain asyncio where it is not installed
    except ImportError:
        if name == "uvloop":
            raise StartupError("--loop uvloop: uvloop is not installed") from None
        return None
    return uvloop.Loop


def serve(config: Config) -> int:
    """Load the app, bind, and serve until a signal says stop. Returns the exit code."""
    if config.workers != 1:
        log.warning(
            "--workers %d: the master process is not part of this build; serving with one worker",
            config.workers,
        )
    loaded = load_app(
        config.app, app_dir=config.app_dir, factory=config.factory, interface=config.interface
    )
    sockets = [create_socket(spec, config.backlog) for spec in config.bind]
    factory = _loop_factory(config.loop)
    pool = None
    if loaded.interface == "wsgi":
        pool = WSGIPool(
            loaded.app,
            config.threads,
            root_path=config.root_path,
            multiprocess=config.workers > 1,
        )
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            code = runner.run(_serve(config, loaded, sockets, pool))
    finally:
        busy = 0 if pool is None else pool.shutdown()
    if busy:
        # Threads cannot be cancelled: past the graceful deadline, a WSGI app still running is
        # cut off with the process (its threads are daemons; exit without waiting for them).
        log.warning("%d WSGI request(s) still running at exit; cutting them off", busy)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


async def _serve(
    config: Config, loaded: LoadedApp, sockets: list[socket.socket], pool: WSGIPool | None
) -> int:
    loop = asyncio.get_running_loop()
    unix_paths = [sock.getsockname() for sock in sockets if sock.family == socket.AF_UNIX]
    # Lifespan is an ASGI protocol; a WSGI app has none.
    lifespan = Lifespan(loaded.app, loop, "off" if pool is not None else config.lifespan)
    await lifespan.startup()
    server = Server(config, loaded.app, loop, lifespan.state, wsgi=pool)
    await server.start(sockets)
    # Everything allocated so far (the app, its imports, our modules) lives for the whole
    # process: move it out of the collector's sight so collections triggered by per-request
    # garbage do not keep rescanning it (the practice Instagram described for Django workers).
    gc.collect()
    gc.freeze()
    # Per-request objects die by reference counting, not by the cycle collector; collecting
    # gen 0 every 700 allocations mostly rescans live connection state. A larger first threshold
    # cuts that work while still bounding cyclic garbage.
    gc.set_threshold(20_000, 20, 20)
    for sock in sockets:
        log.info("Portico serving %s on %s", loaded.name, describe(sock))
    stop = loop.create_future()
    requested: list[int] = []

    def on_signal(signum: int) -> None:
        requested.append(signum)
        if not stop.done():
            stop.set_result(signum)
        elif len(requested) > 1 and signum == signal.SIGINT:
            # a second Ctrl-C: stop waiting for requests in flight
            for conn in list(server.connections):
                conn.abort()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(signum, on_signal, signum)
    signum = await stop
    graceful = signum == signal.SIGTERM
    log.info(
        "received %s, shutting down%s",
        signal.Signals(signum).name,
        " gracefully" if graceful else "",
    )
    await server.shutdown(config.graceful_timeout if graceful else FAST_SHUTDOWN_TIMEOUT)
    await lifespan.shutdown()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.remove_signal_handler(signum)
    for path in unix_paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
    sys.stderr.flush()
    return EXIT_OK
