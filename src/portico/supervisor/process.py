"""The master's view of a process: its record, the child side of a fork, and /proc readings.

What runs in a forked child lives here, apart from the master's loop: ``run_worker`` sheds the
master's descriptors and signal handlers before the worker starts, and never returns into the
master's code.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from portico.errors import StartupError
from portico.logs import error_log as log
from portico.supervisor.title import set_title

if TYPE_CHECKING:
    from portico.config import Config
    from portico.config.hooks import WorkerHooks, WorkerView
    from portico.supervisor.environment import Identity
    from portico.worker.link import MasterLink

__all__ = [
    "MASTER_SIGNALS",
    "Boot",
    "PidFile",
    "Worker",
    "alive",
    "describe_exit",
    "exec_new_master",
    "overdue",
    "read_pid",
    "rss_mib",
    "run_worker",
]

#: ``boot(config, sockets, link, hooks)`` runs a worker inside the forked child, with each
#: listening socket and the bind spec it came from; returns the worker's exit code
Boot = Callable[["Config", list[tuple[str, socket.socket]], "MasterLink", "WorkerHooks"], int]


@dataclass(eq=False)
class Worker:
    pid: int
    slot: int
    fd: int
    started: float
    last_seen: float
    buffer: bytearray = field(default_factory=bytearray)
    ready_at: float | None = None
    name: str = ""
    #: when SIGTERM or SIGQUIT was sent (the worker is leaving)
    stopping_at: float | None = None
    #: when SIGKILL follows if the worker is still there
    kill_at: float | None = None
    aborted: bool = False
    #: queued for replacement (max-requests, memory, reload); not queued twice
    queued: bool = False
    exited: bool = False
    #: the worker's last metrics report (``--metrics-bind``): key -> total or level
    stats: dict[str, float] = field(default_factory=dict)
    #: the ``worker`` of gunicorn's hooks
    view: WorkerView | None = None


#: The signals the master acts on (its loop, not the handler, does the work).
MASTER_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCHLD,
)


def overdue(
    workers: Iterable[Worker], config: Config, now: float
) -> tuple[list[Worker], list[Worker], list[Worker]]:
    """The workers to kill (past their exit deadline), to abort (silent past ``--timeout``) and
    to replace (past ``--max-worker-memory``), each logged once here."""
    kill: list[Worker] = []
    abort: list[Worker] = []
    replace: list[Worker] = []
    timeout = config.timeout
    limit = config.max_worker_memory
    for worker in list(workers):
        if worker.kill_at is not None and now >= worker.kill_at:
            log.error("worker %d did not exit in time; killing it", worker.pid)
            kill.append(worker)
        elif timeout and not worker.aborted and now - worker.last_seen > timeout:
            log.error(
                "worker %d silent for %.0fs (--timeout %g); aborting it, stacks follow",
                worker.pid,
                now - worker.last_seen,
                timeout,
            )
            abort.append(worker)
        elif (
            limit
            and worker.ready_at is not None
            and worker.stopping_at is None
            and not worker.queued
            and rss_mib(worker.pid) > limit
        ):
            log.warning(
                "worker %d uses more than %d MiB (--max-worker-memory); replacing it",
                worker.pid,
                limit,
            )
            replace.append(worker)
    return kill, abort, replace


def run_worker(  # noqa: PLR0917 -- one call site, in the forked child
    boot: Boot,
    config: Config,
    sockets: list[tuple[str, socket.socket]],
    link: MasterLink,
    private_fds: list[int],
    other_sockets: list[socket.socket],
    hooks: WorkerHooks,
    identity: Identity | None,
) -> NoReturn:
    """In a forked child: drop the master's state, become the workers' user, run the worker,
    never return."""
    code = 1
    hooks.worker.pid = os.getpid()
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # the master's signals; a worker started from a terminal must not die of them
        for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2):
            signal.signal(signum, signal.SIG_IGN)
        for sock in other_sockets:
            sock.close()
        for fd in private_fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        os.environ.pop("NOTIFY_SOCKET", None)  # only the master speaks to systemd
        set_title("worker", config.proc_name or config.app or "demo app")
        hooks.call("post_fork")  # as root, as in gunicorn: before the identity changes
        if identity is not None:
            identity.take_on()  # before the app is imported: its code never runs as root
        code = boot(config, sockets, link, hooks)
    except StartupError as error:
        print(f"portico: error: {error}", file=sys.stderr)
        code = error.exit_code
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            hooks.worker.alive = False
            hooks.call("worker_exit")
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def exec_new_master(
    entries: list[tuple[str, int | None, socket.socket]],
    env: dict[str, str],
    pre_exec: Callable[[], None],
) -> int:
    """Fork and exec this command line again, the listening sockets inherited (``SIGUSR2``);
    ``pre_exec`` runs in the child first (gunicorn's hook of that name)."""
    argv = [sys.executable, *sys.orig_argv[1:]]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - replaced by exec
        try:
            pre_exec()
            signal.set_wakeup_fd(-1)
            for _, _, sock in entries:
                os.set_inheritable(sock.fileno(), True)
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(1)
    return pid


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (0: no process)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def describe_exit(code: int) -> str:
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:  # a real-time signal has no name
        return f"signal {-code}"


_PAGE = resource.getpagesize()


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


class PidFile:
    """``--pid FILE``: written at start, renamed ``FILE.oldbin`` while a new master takes over
    (nginx's convention), removed at exit if it still names this process."""

    def __init__(self, path: str | None, pid: int) -> None:
        self.path = path
        self.pid = pid

    def write(self) -> None:
        if self.path:
            try:
                with open(self.path, "w", encoding="ascii") as file:
                    file.write(f"{self.pid}\n")
            except OSError as exc:
                raise StartupError(f"cannot write --pid {self.path}: {exc.strerror}") from exc

    def step_aside(self) -> None:
        """A new master was started (SIGUSR2): it writes FILE, this one keeps FILE.oldbin."""
        if self.path and not self.path.endswith(".oldbin"):
            with contextlib.suppress(OSError):
                os.rename(self.path, self.path + ".oldbin")
                self.path += ".oldbin"

    def take_back(self) -> None:
        """The new master died: FILE names this one again."""
        if self.path and self.path.endswith(".oldbin"):
            original = self.path.removesuffix(".oldbin")
            with contextlib.suppress(OSError):
                os.rename(self.path, original)
                self.path = original

    def remove(self) -> None:
        if self.path and read_pid(self.path) == self.pid:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def read_pid(path: str) -> int:
    try:
        with open(path, encoding="ascii") as file:
            return int(file.read().strip() or 0)
    except (OSError, ValueError):
        return 0
