"""One worker process: its event loop, the app's lifespan, heartbeat, signals, graceful drain.

The master forks the worker with the listening sockets already bound and a pipe to report on
(``portico.worker.link``). Signal handlers only record what was asked; the loop acts on it.
SIGTERM drains gracefully within ``--graceful-timeout``; SIGINT and SIGQUIT drain with a short
deadline (a second Ctrl-C cuts it off at once); SIGUSR1 reopens the log files.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import logging
import os
import random
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from portico import logs
from portico.config.kinds import bind_protocol
from portico.errors import EXIT_OK, ConfigError, StartupError
from portico.gateways.lifespan import Lifespan
from portico.gateways.loader import LoadedApp, load_app
from portico.gateways.static import StaticFiles
from portico.logs import error_log as log
from portico.runtime.context import WorkerContext
from portico.runtime.router import Mount, Router
from portico.runtime.server import Listener, Server
from portico.runtime.tls import load as load_tls
from portico.runtime.tls import tls_settings
from portico.runtime.wsgi_pool import WSGIPool
from portico.worker.fd_limit import ensure_fd_limit
from portico.worker.heap import keep_heap_top
from portico.worker.link import MasterLink

if TYPE_CHECKING:
    from portico.config import Config
    from portico.config.hooks import WorkerHooks


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


@dataclass(frozen=True, slots=True)
class LoadedApps:
    """What a worker serves: one app at ``/``, or several under ``--mount`` prefixes."""

    apps: list[tuple[str, LoadedApp]]
    mounted: bool

    @property
    def name(self) -> str:
        if not self.mounted:
            return self.apps[0][1].name
        return ", ".join(f"{loaded.name} at {prefix}" for prefix, loaded in self.apps)


def load(config: Config) -> LoadedApps:
    """Import the app(s): in each worker, or once in the master with ``--preload``."""
    if not config.mount:
        loaded = load_app(
            config.app, app_dir=config.app_dir, factory=config.factory, interface=config.interface
        )
        return LoadedApps([("/", loaded)], mounted=False)
    prefixes = [mount.partition("=")[0] for mount in config.mount]
    if config.app:
        prefixes.append("/")
    twice = sorted({prefix for prefix in prefixes if prefixes.count(prefix) > 1})
    if twice:
        raise ConfigError(f"--mount: prefix mounted twice: {', '.join(twice)}")
    apps: list[tuple[str, LoadedApp]] = []
    if config.app:
        apps.append(
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
        apps.append(
            (prefix, load_app(spec, app_dir=config.app_dir, factory=False, interface="auto"))
        )
    return LoadedApps(apps, mounted=True)


def serve(
    config: Config,
    sockets: list[tuple[str, socket.socket]],
    link: MasterLink,
    preloaded: LoadedApps | None = None,
    hooks: WorkerHooks | None = None,
) -> int:
    """Load the app(s), serve on ``sockets`` (each with its bind spec) until a signal says
    stop. Returns the exit code."""
    _enable_stack_dumps(hooks)
    _, fd_warning = ensure_fd_limit(config.max_connections)
    if fd_warning is not None:
        log.warning("%s", fd_warning)
    keep_heap_top()
    apps = preloaded if preloaded is not None else load(config)
    if hooks is not None:
        hooks.call("post_worker_init")
    listeners = [
        Listener(sock, config.tls_for(spec), bind_protocol(spec)[0]) for spec, sock in sockets
    ]
    pools = wsgi_pools(config, apps)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(config.loop)) as runner:
            code = runner.run(_serve(config, apps, pools, listeners, link, hooks))
    finally:
        busy = sum(pool.shutdown() for pool in pools.values())
    return _exit(code, busy)


def _enable_stack_dumps(hooks: WorkerHooks | None) -> None:
    # SIGABRT from the master (--timeout) dumps every thread's stack to the error log: the
    # only way to see where a hung worker is stuck. faulthandler writes from the signal
    # handler itself, so it works while the event loop is blocked.
    faulthandler.enable(file=logs.error_stream(), all_threads=True)
    if hooks is not None and hooks.has("worker_abort"):
        # gunicorn's worker_abort runs Python on SIGABRT, so the dump moves into a Python
        # handler: it runs when the main thread next runs bytecode (a hung C call is still
        # ended by the master's SIGKILL two seconds later)
        def on_abort(signum: int, frame: object) -> None:
            faulthandler.dump_traceback(file=logs.error_stream(), all_threads=True)
            hooks.call("worker_abort")
            os._exit(1)

        signal.signal(signal.SIGABRT, on_abort)


def _reopen_logs(config: Config, hooks: WorkerHooks | None) -> None:
    logs.reopen()
    if config.capture_output and config.log_file not in (None, "-"):
        logs.capture_output(config.log_file)
    _enable_stack_dumps(hooks)  # faulthandler holds the old file's descriptor


def _exit(code: int, busy: int) -> int:
    if busy:
        # Threads cannot be cancelled: past the graceful deadline, a WSGI app still running is
        # cut off with the process (its threads are daemons; exit without waiting for them).
        log.warning("%d WSGI request(s) still running at exit; cutting them off", busy)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


def _mount_root(config: Config, prefix: str) -> str:
    return config.root_path + ("" if prefix == "/" else prefix)


def wsgi_pools(config: Config, apps: LoadedApps, threads: int = 0) -> dict[str, WSGIPool]:
    """The thread pool of each WSGI app, by mount prefix (``threads``: ``config.threads``)."""
    pools: dict[str, WSGIPool] = {}
    for prefix, loaded in apps.apps:
        if loaded.interface == "wsgi":
            pools[prefix] = WSGIPool(
                loaded.app,
                threads or config.threads,
                root_path=_mount_root(config, prefix),
                multiprocess=config.workers > 1,
                mount_path="" if prefix == "/" else prefix,
            )
    return pools


def worker_context(
    config: Config,
    apps: LoadedApps,
    pools: dict[str, WSGIPool],
    lifespans: dict[str, Lifespan],
    loop: asyncio.AbstractEventLoop,
) -> WorkerContext:
    """The worker context with its router: static folders, then the apps under their
    prefixes (``portico.testing`` builds the same one, without sockets)."""
    ctx = WorkerContext(config, loop)
    mounts = [
        Mount(
            prefix,
            None if prefix in pools else loaded.app,
            pools.get(prefix),
            _mount_root(config, prefix),
            lifespans[prefix].state if prefix in lifespans else {},
        )
        for prefix, loaded in apps.apps
    ]
    static = StaticFiles(ctx.limits.static) if config.static else None
    if static is not None:
        try:
            static.check()
        except ValueError as exc:
            raise ConfigError(f"--static: {exc}") from None
    ctx.dispatcher = Router(ctx, mounts, mounted=apps.mounted, static=static)
    return ctx


async def _serve(  # noqa: PLR0917 -- private
    config: Config,
    apps: LoadedApps,
    pools: dict[str, WSGIPool],
    listeners: list[Listener],
    link: MasterLink,
    hooks: WorkerHooks | None,
) -> int:
    """The apps and their lifespans (ASGI only: a WSGI app has none), one mount each."""
    loop = asyncio.get_running_loop()
    lifespans = {
        prefix: Lifespan(loaded.app, loop, config.lifespan)
        for prefix, loaded in apps.apps
        if prefix not in pools
    }

    def make_server() -> Server:
        ctx = worker_context(config, apps, pools, lifespans, loop)
        settings = tls_settings(config)
        return Server(ctx, load_tls(settings) if settings is not None else None)

    return await _run(
        config, listeners, list(lifespans.values()), make_server, apps.name, link, hooks
    )


async def _run(  # noqa: PLR0917 -- private
    config: Config,
    listeners: list[Listener],
    lifespans: list[Lifespan],
    make_server: Callable[[], Server],
    name: str,
    link: MasterLink,
    hooks: WorkerHooks | None,
) -> int:
    """Start the apps, serve until a signal says stop, drain, stop the apps."""
    loop = asyncio.get_running_loop()
    server = make_server()  # first: a certificate that no longer loads stops us before the apps
    started: list[Lifespan] = []
    try:
        for lifespan in lifespans:
            await lifespan.startup()
            started.append(lifespan)
    except BaseException:
        # a later mount's startup failed: the apps already started get their shutdown
        for lifespan in reversed(started):
            await lifespan.shutdown()
        raise
    await server.start(listeners)
    # Everything allocated so far (the app, its imports, our modules) lives for the whole
    # process: move it out of the collector's sight so collections triggered by per-request
    # garbage do not keep rescanning it (the practice Instagram described for Django workers).
    gc.collect()
    gc.freeze()
    # Per-request objects die by reference counting, not by the cycle collector; collecting
    # gen 0 every 700 allocations mostly rescans live connection state. A larger first threshold
    # cuts that work while still bounding cyclic garbage.
    gc.set_threshold(20_000, 20, 20)
    stop = loop.create_future()
    hurry: asyncio.Future[None] = loop.create_future()  # cuts --shutdown-delay short
    requested: list[int] = []

    def on_signal(signum: int) -> None:
        if hooks is not None and signum in (signal.SIGINT, signal.SIGQUIT):
            hooks.call("worker_int")  # gunicorn's moment: the worker was told to stop fast
        requested.append(signum)
        if not stop.done():
            stop.set_result(signum)
        elif signum != signal.SIGTERM and not hurry.done():
            hurry.set_result(None)
        if len(requested) > 1 and signum == signal.SIGINT:
            # a second Ctrl-C: stop waiting for requests in flight
            server.ctx.abort_all()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGUSR1, _reopen_logs, config, hooks)
    heartbeat = Heartbeat(config, server, link, loop, lambda: on_signal(signal.SIGTERM))
    link.ready(name)
    log.debug("worker %d ready", os.getpid())
    signum = await stop
    graceful = signum == signal.SIGTERM
    log.info(
        "worker %d: received %s, shutting down%s",
        os.getpid(),
        signal.Signals(signum).name,
        " gracefully" if graceful else "",
    )
    if graceful and config.shutdown_delay:
        # keep serving while --health-path says 503, so load balancers stop sending first
        server.ctx.draining = True
        log.info(
            "worker %d: serving %gs more (--shutdown-delay)",
            os.getpid(),
            config.shutdown_delay,
        )
        await asyncio.wait({hurry}, timeout=config.shutdown_delay)
    await server.shutdown(config.graceful_timeout if graceful else FAST_SHUTDOWN_TIMEOUT)
    for lifespan in reversed(lifespans):
        await lifespan.shutdown()
    heartbeat.stop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
        loop.remove_signal_handler(signum)
    sys.stderr.flush()
    return EXIT_OK


class Heartbeat:
    """The worker's proof of life, written from its event loop, and its own recycling checks.

    Every beat also looks for the two reasons to leave that only the worker can see: the master
    is gone (the worker drains and exits instead of serving unsupervised), and ``--max-requests``
    was reached (the worker asks the master for a successor, and keeps serving until it is told
    to stop, so there is never a gap without a worker).
    """

    def __init__(
        self,
        config: Config,
        server: Server,
        link: MasterLink,
        loop: asyncio.AbstractEventLoop,
        stop: Callable[[], None],
    ) -> None:
        self.server = server
        self.link = link
        self.loop = loop
        self.stop_serving = stop
        # ``timeout / 4``: three beats may be late before the master's patience runs out
        self.interval = min(1.0, config.timeout / 4) if config.timeout else 1.0
        self.max_requests = (
            config.max_requests + random.randint(0, config.max_requests_jitter)
            if config.max_requests
            else 0
        )
        self.retiring = False
        self.handle: asyncio.TimerHandle | None = None
        self.beat()

    def beat(self) -> None:
        self.link.stats(self.server.ctx.metrics_report())
        if not self.link.beat() or self.link.orphaned():
            log.warning("worker %d: the master is gone; shutting down", os.getpid())
            self.stop_serving()
            return
        if (
            self.max_requests
            and not self.retiring
            and self.server.ctx.requests_served >= self.max_requests
        ):
            self.retiring = True
            log.info(
                "worker %d served %d requests (--max-requests); asking for a successor",
                os.getpid(),
                self.server.ctx.requests_served,
            )
            self.link.retire()
        self.handle = self.loop.call_later(self.interval, self.beat)

    def stop(self) -> None:
        """The last beat: the final metrics, so that the master's totals miss nothing."""
        if self.handle is not None:
            self.handle.cancel()
        self.link.stats(self.server.ctx.metrics_report())
