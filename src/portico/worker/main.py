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
from collections.abc import Callable
from typing import TYPE_CHECKING

from portico.errors import EXIT_OK, ConfigError, StartupError
from portico.gateways.asgi import Receive, Scope, Send
from portico.gateways.lifespan import Lifespan
from portico.gateways.loader import LoadedApp, load_app
from portico.runtime.binds import create_socket, describe
from portico.runtime.server import Mount, Server
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
    if config.mount:
        return _serve_mounted(config)
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
    return _exit(code, busy)


def _exit(code: int, busy: int) -> int:
    if busy:
        # Threads cannot be cancelled: past the graceful deadline, a WSGI app still running is
        # cut off with the process (its threads are daemons; exit without waiting for them).
        log.warning("%d WSGI request(s) still running at exit; cutting them off", busy)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


def _serve_mounted(config: Config) -> int:
    """``--mount``: several apps, WSGI and ASGI mixed, each under its URL prefix."""
    prefixes = [mount.partition("=")[0] for mount in config.mount]
    if config.app:
        prefixes.append("/")
    twice = sorted({prefix for prefix in prefixes if prefixes.count(prefix) > 1})
    if twice:
        raise ConfigError(f"--mount: prefix mounted twice: {', '.join(twice)}")
    specs: list[tuple[str, LoadedApp]] = []
    if config.app:
        specs.append(
            (
                "/",
                load_app(
                    config.app,
                    app_dir=config.app_dir,
                    factory=config.factory,
                    interface=config.interface,
                ),
            )
        )
    for mount in config.mount:
        prefix, _, spec = mount.partition("=")
        specs.append(
            (prefix, load_app(spec, app_dir=config.app_dir, factory=False, interface="auto"))
        )
    pools: dict[str, WSGIPool] = {}
    for prefix, loaded in specs:
        if loaded.interface == "wsgi":
            pools[prefix] = WSGIPool(
                loaded.app,
                config.threads,
                root_path=_mount_root(config, prefix),
                multiprocess=config.workers > 1,
            )
    sockets = [create_socket(spec, config.backlog) for spec in config.bind]
    name = ", ".join(f"{loaded.name} at {prefix}" for prefix, loaded in specs)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        lifespans = {
            prefix: Lifespan(loaded.app, loop, config.lifespan)
            for prefix, loaded in specs
            if prefix not in pools
        }

        def make_server() -> Server:
            mounts = [
                Mount(
                    prefix,
                    None if prefix in pools else loaded.app,
                    pools.get(prefix),
                    _mount_root(config, prefix),
                    lifespans[prefix].state if prefix in lifespans else {},
                )
                for prefix, loaded in specs
            ]
            return Server(config, _not_found, loop, mounts=mounts)

        return await _run(config, sockets, list(lifespans.values()), make_server, name)

    try:
        with asyncio.Runner(loop_factory=_loop_factory(config.loop)) as runner:
            code = runner.run(main())
    finally:
        busy = sum(pool.shutdown() for pool in pools.values())
    return _exit(code, busy)


def _mount_root(config: Config, prefix: str) -> str:
    return config.root_path + ("" if prefix == "/" else prefix)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """Never called: with --mount, the server answers unmatched paths with 404 itself."""
    raise AssertionError("unreachable")


async def _serve(
    config: Config, loaded: LoadedApp, sockets: list[socket.socket], pool: WSGIPool | None
) -> int:
    loop = asyncio.get_running_loop()
    # Lifespan is an ASGI protocol; a WSGI app has none.
    lifespan = Lifespan(loaded.app, loop, "off" if pool is not None else config.lifespan)

    def make_server() -> Server:
        return Server(config, loaded.app, loop, lifespan.state, wsgi=pool)

    return await _run(config, sockets, [lifespan], make_server, loaded.name)


async def _run(
    config: Config,
    sockets: list[socket.socket],
    lifespans: list[Lifespan],
    make_server: Callable[[], Server],
    name: str,
) -> int:
    """Start the apps, serve until a signal says stop, drain, stop the apps."""
    loop = asyncio.get_running_loop()
    unix_paths = [sock.getsockname() for sock in sockets if sock.family == socket.AF_UNIX]
    for lifespan in lifespans:
        await lifespan.startup()
    server = make_server()
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
        log.info("Portico serving %s on %s", name, describe(sock))
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
    for lifespan in reversed(lifespans):
        await lifespan.shutdown()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.remove_signal_handler(signum)
    for path in unix_paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
    sys.stderr.flush()
    return EXIT_OK
