"""The master process: it binds the sockets, forks the workers and keeps them healthy.

It never serves a request and never imports HTTP code: a worker is started by a ``boot``
function the command line hands in, run inside the forked child. Everything the master does
happens in one loop (``_run``); signal handlers only queue the signal and wake the loop through
``signal.set_wakeup_fd``, the pattern of gunicorn's arbiter and nginx's master.

How a worker is replaced without dropping a request, for ``SIGHUP``, ``--reload``,
``--max-requests`` and ``--max-worker-memory`` alike: the master starts the successor, waits
until it reports ready (listening, lifespan started), and only then sends ``SIGTERM`` to the old
worker, which stops accepting and answers what it holds with ``Connection: close``. One worker is
replaced at a time, so capacity never drops and the workers never all restart at once. The
listening sockets stay open in the master throughout, so no queued connection is reset.

Signals: TERM graceful stop, INT/QUIT fast stop, HUP reload settings and app, TTIN/TTOU one
worker more/less, USR1 reopen logs, USR2 start a new master that inherits the sockets.
"""

from __future__ import annotations

import contextlib
import functools
import os
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING

from portico import logs
from portico.config.hooks import CfgView, Hooks, ServerView, WorkerHooks, WorkerView
from portico.errors import EXIT_OK, StartupError
from portico.logs import error_log as log
from portico.supervisor.listeners import Listeners
from portico.supervisor.metrics import MasterMetrics
from portico.supervisor.notify import Notifier
from portico.supervisor.process import (
    MASTER_SIGNALS,
    Boot,
    PidFile,
    Worker,
    describe_exit,
    overdue,
    run_worker,
)
from portico.supervisor.reloader import Watcher
from portico.supervisor.title import set_title
from portico.supervisor.upgrade import Upgrade
from portico.worker.link import BEAT, READY, RETIRE, STATS, MasterLink, parse

if TYPE_CHECKING:
    from portico.config import Config
    from portico.supervisor.environment import Identity
    from portico.supervisor.exporter import MetricsEndpoint

__all__ = ["Boot", "Master"]


# How often the loop looks at the workers when nothing wakes it.
TICK = 0.25
# After SIGABRT (the stack dump), how long a hung worker gets before SIGKILL.
ABORT_GRACE = 2.0
# After SIGTERM, a worker gets --graceful-timeout plus this for lifespan shutdown and exit.
STOP_MARGIN = 5.0
# After SIGQUIT (fast stop), how long a worker gets before SIGKILL.
FAST_STOP_GRACE = 3.0
# A worker that dies sooner than this after it started counts as a failed start (backoff),
# restarted after 0.5 s, 1 s, 2 s... up to MAX_BACKOFF.
SHORT_LIFE, MAX_BACKOFF = 5.0, 30.0

_EXIT_CODES_OF_BOOT = (2, 3, 4)


class Master:
    """Keeps ``config.workers`` workers running until a signal says stop; ``run()`` -> exit code."""

    def __init__(
        self,
        config: Config,
        boot: Boot,
        reconfigure: Callable[[], tuple[Config, Hooks]],
        environ: MutableMapping[str, str] | None = None,
        *,
        hooks: Hooks | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.config = config
        self.hooks = hooks if hooks is not None else Hooks()
        self.identity = identity
        self.server = ServerView.of(config, os.getpid())  # the ``server`` of gunicorn's hooks
        self.spawned = 0  # workers started so far: the next one's ``age``
        #: the configuration the running workers proved good; a failed reload falls back to it
        self.stable_config = config
        self.boot = boot
        self.reconfigure = reconfigure
        self.environ: MutableMapping[str, str] = os.environ if environ is None else environ
        self.pid = os.getpid()
        self.target = config.workers
        self.workers: dict[int, Worker] = {}
        self.vacant: dict[int, float] = {}  # slot -> when to start its worker
        self.failures: dict[int, int] = {}  # slot -> workers in a row that died young
        self.replace_queue: deque[Worker] = deque()
        self.replacing: tuple[Worker | None, Worker] | None = None
        self.signals: deque[int] = deque()
        self.stopping: str = ""  # "", "graceful" or "fast"
        self.exit_code = EXIT_OK
        self.announced = False
        self.reloading = False
        self.watcher = Watcher()
        self.pid_file = PidFile(config.pid_file, self.pid)
        self.upgrade = Upgrade(self.pid, self.pid_file)
        self.notifier = Notifier(self.environ)
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        self.listeners: Listeners | None = None
        self.metrics = MasterMetrics()
        self.exporter: MetricsEndpoint | None = None  # --metrics-bind's socket and scrapes

    # --- the loop -----------------------------------------------------------------

    def run(self) -> int:
        config = self.config
        set_title("master", config.proc_name or config.app or "demo app")
        self._install_signals()
        try:
            self.hooks.call("on_starting", self.server)
            self.listeners = Listeners(
                config.bind + config.insecure_bind,
                config.backlog,
                reuse_port=config.reuse_port,
                dual_stack=config.dual_stack,
                umask=config.umask,
                environ=self.environ,
            )
            if self.identity is not None:
                # the unix sockets belong to the workers' user, as with gunicorn
                self.identity.chown(self.listeners.unix_paths)
            self.pid_file.write()
            if config.metrics_bind is not None:
                try:  # prometheus_client is an extra, imported only for --metrics-bind
                    from portico.supervisor.exporter import MetricsEndpoint  # noqa: PLC0415
                except ModuleNotFoundError as exc:
                    raise StartupError(f"--metrics-bind needs portico[metrics]: {exc}") from None
                self.exporter = MetricsEndpoint(
                    config.metrics_bind, self.selector, self.metrics, self.workers
                )
            self.hooks.call("when_ready", self.server)
            if config.reload:
                self._start_watcher()
            for slot in range(self.target):
                self._spawn(slot)
            while self.workers or not self.stopping:
                self._wait()
                # signals first: a SIGTERM sent to the whole group (systemd's control-group
                # kill, timeout(1)) reaches the workers too, and their exits are no deaths
                self._handle_signals()
                self._reap()
                self._check_workers()
                if not self.stopping:
                    self._advance_replacements()
                    self._fill_vacancies()
        finally:
            self._cleanup()
            self.hooks.call("on_exit", self.server)
        return self.exit_code

    def _wait(self) -> None:
        for key, events in self.selector.select(TICK):
            fd = key.fd
            if fd == self.wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(fd, 512):
                        pass
            elif fd == self.watcher.fd:
                self._read_watcher()
            else:
                worker = key.data
                if isinstance(worker, Worker):
                    self._read_worker(worker)
                elif callable(worker):  # the metrics endpoint's sockets
                    worker(events)
        if self.exporter is not None:  # close the scrapes past their deadline
            self.exporter.sweep()

    def _install_signals(self) -> None:
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in MASTER_SIGNALS:
            signal.signal(signum, self._queue_signal)

    def _queue_signal(self, signum: int, frame: object) -> None:
        # only record it: the loop acts, outside of any half-finished bookkeeping
        if signum != signal.SIGCHLD:
            self.signals.append(signum)

    # --- workers ------------------------------------------------------------------

    def _spawn(self, slot: int) -> Worker:
        assert self.listeners is not None
        self.vacant.pop(slot, None)
        sockets = self.listeners.for_slot(slot)
        config = self.config
        view = WorkerView(self.spawned, CfgView(config), self.pid)
        self.spawned += 1
        self.hooks.call("pre_fork", self.server, view)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is the worker's
            os.close(read_end)
            private = [self.wake_r, self.wake_w, self.watcher.fd]
            private += self.exporter.fds() if self.exporter is not None else []
            private += [other.fd for other in self.workers.values()]
            keep = {sock.fileno() for _, sock in sockets}
            # another slot's socket held here would stay open after SIGTTOU drops it
            others = [sock for sock in self.listeners.all() if sock.fileno() not in keep]
            self.selector.close()
            link, hooks = (
                MasterLink(write_end, self.pid),
                WorkerHooks(self.hooks, self.server, view),
            )
            run_worker(self.boot, config, sockets, link, private, others, hooks, self.identity)
        os.close(write_end)
        os.set_blocking(read_end, False)
        now = time.monotonic()
        view.pid = pid
        worker = Worker(pid=pid, slot=slot, fd=read_end, started=now, last_seen=now, view=view)
        self.workers[pid] = worker
        self.server.WORKERS[pid] = view
        self.selector.register(read_end, selectors.EVENT_READ, worker)
        self.metrics.starts += 1
        log.debug("started worker %d in slot %d", pid, slot)
        return worker

    def _read_worker(self, worker: Worker) -> bool:
        """Handle what the worker wrote; False once nothing more is waiting."""
        try:
            data = os.read(worker.fd, 4096)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:  # the worker is gone; waitpid tells how
            self._close_pipe(worker)
            return False
        worker.last_seen = time.monotonic()
        worker.buffer += data
        for message, argument in parse(worker.buffer):
            if message == READY:
                self._on_ready(worker, argument)
            elif message == RETIRE:
                log.info("worker %d asked to be replaced (--max-requests)", worker.pid)
                self._queue_replacement(worker)
            elif message == STATS:
                self.metrics.report(worker, argument)
            elif message != BEAT:
                log.warning("worker %d sent an unknown message", worker.pid)
        return True

    def _close_pipe(self, worker: Worker) -> None:
        if worker.fd >= 0:
            self.selector.unregister(worker.fd)
            os.close(worker.fd)
            worker.fd = -1

    def _on_ready(self, worker: Worker, name: str) -> None:
        worker.ready_at = time.monotonic()
        worker.name = name
        if worker.view is not None:
            worker.view.booted = True
        if self.replacing is not None and self.replacing[1] is worker:
            self.stable_config = self.config
        if not self.announced and self._count_ready() >= self.target:
            self.announced = True
            assert self.listeners is not None
            self.listeners.log_serving(name, self.config)
            log.info(
                "master %d: %d worker(s) ready: %s",
                self.pid,
                self._count_ready(),
                " ".join(str(pid) for pid in sorted(self.workers)),
            )
            self.notifier.ready(self._status())

    def _count_ready(self) -> int:
        return sum(
            1 for w in self.workers.values() if w.ready_at is not None and w.stopping_at is None
        )

    def _status(self) -> str:
        return f"{self._count_ready()} worker(s) serving"

    def _stop_worker(self, worker: Worker, *, fast: bool = False) -> None:
        if worker.stopping_at is not None and not fast:
            return
        now = time.monotonic()
        worker.stopping_at = now
        drain = self.config.shutdown_delay + self.config.graceful_timeout
        grace = FAST_STOP_GRACE if fast else drain + STOP_MARGIN
        deadline = now + grace
        worker.kill_at = deadline if worker.kill_at is None else min(worker.kill_at, deadline)
        self._signal(worker, signal.SIGQUIT if fast else signal.SIGTERM)

    def _signal(self, worker: Worker, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signum)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if pid == self.watcher.pid:
                self.watcher.exited(code, quietly=bool(self.stopping))
            elif pid == self.upgrade.pid:
                self.upgrade.exited(code)
            elif pid in self.workers:
                self._worker_exited(self.workers.pop(pid), code)

    def _worker_exited(self, worker: Worker, code: int) -> None:
        worker.exited = True
        while worker.fd >= 0 and self._read_worker(worker):
            pass  # its last words (the final metrics) may still wait in the pipe
        self.metrics.exited(worker, code)
        self._close_pipe(worker)
        view = self.server.WORKERS.pop(worker.pid, None)
        if view is not None:
            view.alive = False
            self.hooks.call("child_exit", self.server, view)
        how = describe_exit(code)
        if worker.stopping_at is not None:
            log.debug("worker %d stopped (%s)", worker.pid, how)
            return
        if self.stopping:
            return
        replacing = self.replacing
        if replacing is not None and replacing[1] is worker:
            log.error(
                "new worker %d failed to start (%s); keeping the running workers",
                worker.pid,
                how,
            )
            self._abandon_replacements()
            return
        if replacing is not None and replacing[0] is worker:
            # its successor is already starting in the same slot
            log.error("worker %d died (%s) while being replaced", worker.pid, how)
            self.replacing = (None, replacing[1])
            return
        if worker.ready_at is None and not self.announced:
            self._boot_failed(worker, code, how)
            return
        lived = time.monotonic() - worker.started
        short = worker.ready_at is None or lived < SHORT_LIFE
        failures = self.failures.get(worker.slot, 0) + 1 if short else 0
        self.failures[worker.slot] = failures
        delay = 0.0 if failures <= 1 else min(0.5 * 2 ** (failures - 2), MAX_BACKOFF)
        if self.config.reload and worker.ready_at is None and not self._count_ready():
            delay = float("inf")  # a broken edit: wait for the next change
            log.error("worker %d failed to start (%s); waiting for a change", worker.pid, how)
        else:
            log.error(
                "worker %d (slot %d) died (%s); starting a new one%s",
                worker.pid,
                worker.slot,
                how,
                f" in {delay:.1f}s" if delay else "",
            )
        if worker.slot < self.target:
            self.vacant[worker.slot] = time.monotonic() + delay

    def _boot_failed(self, worker: Worker, code: int, how: str) -> None:
        if self.config.reload:
            log.error("worker %d failed to start (%s); waiting for a change", worker.pid, how)
            self.vacant[worker.slot] = float("inf")
            return
        log.critical("worker %d failed to start (%s); stopping", worker.pid, how)
        self.exit_code = code if code in _EXIT_CODES_OF_BOOT else 1
        self._begin_stop("fast")

    def _check_workers(self) -> None:
        now = time.monotonic()
        kill, abort, replace = overdue(self.workers.values(), self.config, now)
        for worker in kill:
            self._signal(worker, signal.SIGKILL)
            worker.kill_at = now + ABORT_GRACE  # repeat if SIGKILL was somehow missed
        for worker in abort:
            worker.aborted = True
            self.metrics.heartbeat_timeouts += 1
            worker.kill_at = now + ABORT_GRACE
            self._signal(worker, signal.SIGABRT)
        for worker in replace:
            self._queue_replacement(worker)

    # --- replacement, scaling, reload --------------------------------------------------

    def _queue_replacement(self, worker: Worker) -> None:
        if not worker.queued and worker.stopping_at is None and not self.stopping:
            worker.queued = True
            self.replace_queue.append(worker)

    def _advance_replacements(self) -> None:
        if self.replacing is not None:
            old, new = self.replacing
            if new.ready_at is None:
                return
            if old is not None and not old.exited:
                log.info("worker %d replaced by %d", old.pid, new.pid)
                self._stop_worker(old)
            self.replacing = None
        while self.replace_queue and self.replacing is None:
            old = self.replace_queue.popleft()
            if old.exited or old.stopping_at is not None:
                continue
            if old.slot >= self.target:
                self._stop_worker(old)  # the pool shrank meanwhile: no successor
                continue
            self.replacing = (old, self._spawn(old.slot))
        if self.replacing is None and self.reloading:
            self.reloading = False
            log.info("reload complete: %d worker(s) serving", self._count_ready())
            self.notifier.ready(self._status())

    def _abandon_replacements(self) -> None:
        self.replacing = None
        for worker in self.replace_queue:
            worker.queued = False
        self.replace_queue.clear()
        self.config = self.stable_config
        if self.reloading:
            self.reloading = False
            self.notifier.ready(self._status())

    def _fill_vacancies(self) -> None:
        now = time.monotonic()
        for slot, when in sorted(self.vacant.items()):
            if slot >= self.target:
                del self.vacant[slot]
            elif now >= when:
                self._spawn(slot)

    def _reload(self, reason: str, *, reread: bool) -> None:
        if reread:
            try:
                config, hooks = self.reconfigure()
            except StartupError as error:
                log.error("SIGHUP: the new configuration is invalid, keeping the old: %s", error)
                return
            self.hooks = hooks
            self.server.cfg = CfgView(config)
            self.hooks.call("on_reload", self.server)
            if (
                config.bind != self.config.bind
                or config.insecure_bind != self.config.insecure_bind
                or config.reuse_port != self.config.reuse_port
            ):
                log.warning("SIGHUP: new binds take effect only with SIGUSR2 or a restart")
            if config.preload:
                log.warning("SIGHUP with --preload: workers restart with the app loaded at start")
            self.config = config
            self._scale(config.workers)
        log.info("%s: replacing %d worker(s) one at a time", reason, len(self.workers))
        self.metrics.reloads += 1
        self.reloading = True
        self.notifier.reloading()
        live = [w for w in self.workers.values() if w.stopping_at is None]
        if not live:  # nothing serving (a broken app under --reload): start afresh
            for slot in range(self.target):
                self.vacant[slot] = 0.0
            self.reloading = False
            return
        for worker in sorted(live, key=lambda w: w.slot):
            worker.queued = False
            if worker in self.replace_queue:
                continue
            worker.queued = True
            self.replace_queue.append(worker)

    def _scale(self, target: int) -> None:
        if target == self.target:
            return
        self.hooks.call("nworkers_changed", self.server, target, self.target)
        self.server.num_workers = target
        if target > self.target:
            used = {w.slot for w in self.workers.values() if w.stopping_at is None}
            used |= set(self.vacant)
            for _ in range(target - self.target):
                slot = next(i for i in range(len(used) + 1) if i not in used)
                used.add(slot)
                self._spawn(slot)
            log.info("workers: %d -> %d", self.target, target)
            self.target = target
            return
        log.info("workers: %d -> %d", self.target, target)
        self.target = target
        in_progress = self.replacing[1] if self.replacing is not None else None
        for slot in [s for s in self.vacant if s >= target]:
            del self.vacant[slot]
        for worker in sorted(self.workers.values(), key=lambda w: -w.slot):
            if worker.slot >= target and worker.stopping_at is None and worker is not in_progress:
                self._stop_worker(worker)
                if self.listeners is not None:
                    self.listeners.drop_slot(worker.slot)

    # --- signals ------------------------------------------------------------------

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.popleft()
            name = signal.Signals(signum).name
            if signum == signal.SIGTERM:
                log.info("received SIGTERM: stopping gracefully")
                self._begin_stop("graceful")
            elif signum in (signal.SIGINT, signal.SIGQUIT):
                if self.stopping == "fast" and signum == signal.SIGINT:
                    for worker in self.workers.values():
                        self._signal(worker, signal.SIGKILL)
                else:
                    log.info("received %s: stopping fast", name)
                    self._begin_stop("fast")
            elif self.stopping:
                continue
            elif signum == signal.SIGHUP:
                self._reload("SIGHUP", reread=True)
            elif signum == signal.SIGTTIN:
                self._scale(self.target + 1)
            elif signum == signal.SIGTTOU:
                if self.target > 1:
                    self._scale(self.target - 1)
                else:
                    log.warning("SIGTTOU: already at one worker")
            elif signum == signal.SIGUSR1:
                logs.reopen()
                if self.config.capture_output and self.config.log_file not in (None, "-"):
                    logs.capture_output(self.config.log_file)
                for worker in self.workers.values():
                    self._signal(worker, signal.SIGUSR1)
                log.info("log files reopened")
            elif signum == signal.SIGUSR2:
                assert self.listeners is not None
                pre_exec = functools.partial(self.hooks.call, "pre_exec", self.server)
                self.upgrade.start(self.listeners, self.environ, pre_exec)

    def _begin_stop(self, how: str) -> None:
        fast = how == "fast"
        if self.stopping == "fast" or (self.stopping and not fast):
            return
        self.stopping = how
        self.notifier.stopping()
        self.vacant.clear()
        self.replace_queue.clear()
        for worker in self.workers.values():
            self._stop_worker(worker, fast=fast)
        if self.listeners is not None:
            # Stop taking connections at once: refused, a client or balancer tries elsewhere,
            # while queued behind workers that are leaving it would wait and then be reset.
            self.listeners.close(unlink=not self.upgrade.running())
        self.watcher.stop()

    # --- --reload -----------------------------------------------------------------

    def _start_watcher(self) -> None:
        assert self.listeners is not None
        # the watcher must not hold the listening sockets: a copy would keep a dropped
        # --reuse-port socket open, queueing connections that no worker accepts
        private = [self.wake_r, self.wake_w, *(sock.fileno() for sock in self.listeners.all())]
        self.watcher.start(self.config, private)
        self.selector.register(self.watcher.fd, selectors.EVENT_READ)

    def _read_watcher(self) -> None:
        fd = self.watcher.fd
        changes = self.watcher.read()
        if self.watcher.fd < 0:
            self.selector.unregister(fd)
        for change in changes:
            if not self.stopping:
                self._reload(f"--reload: {change} changed", reread=False)

    def _cleanup(self) -> None:
        for worker in list(self.workers.values()):  # only on an unexpected error in the loop
            self._signal(worker, signal.SIGKILL)
        self.watcher.stop()
        if self.listeners is not None:
            # after SIGUSR2 the new master serves the unix sockets: leave their files
            self.listeners.close(unlink=not self.upgrade.running())
        self.pid_file.remove()
        if self.exporter is not None:
            self.exporter.close()
        signal.set_wakeup_fd(-1)
        self.selector.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.notifier.close()
        log.info("master %d: stopped", self.pid)
