"""``--reload``: a watcher process that tells the master when the app's source changed.

The watcher is a child of its own, forked before the master has any thread: ``watchfiles`` runs
a native thread, and a master that forks workers must stay single-threaded (a fork copies only
the calling thread, and a lock another thread held stays locked forever in the child). It writes
one line per batch of changes to a pipe the master watches.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import sys
from pathlib import PurePath
from typing import TYPE_CHECKING

from portico.logs import error_log as log
from portico.worker.link import parse

if TYPE_CHECKING:
    from portico.config import Config

__all__ = ["PathFilter", "Watcher", "start_watcher"]


# watchfiles waits this long for a burst of writes (an editor saving, git checkout) to settle
DEBOUNCE_MS = 300


class PathFilter:
    """Which changed paths matter: a name matching an include glob, no part matching an exclude."""

    def __init__(self, include: tuple[str, ...], exclude: tuple[str, ...]) -> None:
        self.include = include
        self.exclude = exclude

    def __call__(self, change: object, path: str) -> bool:
        parts = PurePath(path).parts
        if any(fnmatch.fnmatch(part, glob) for part in parts for glob in self.exclude):
            return False
        return any(fnmatch.fnmatch(parts[-1], glob) for glob in self.include)


class Watcher:
    """The master's handle on the watcher process: its pid and the pipe it reports on."""

    def __init__(self) -> None:
        self.pid = 0
        self.fd = -1
        self._buffer = bytearray()

    def start(self, config: Config, close_in_child: list[int]) -> None:
        self.pid, self.fd = start_watcher(config, close_in_child)

    def read(self) -> list[str]:
        """What changed since the last read (one entry per batch); closes the pipe at its end."""
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return []
        if not data:
            os.close(self.fd)
            self.fd = -1
            return []
        self._buffer += data
        return [argument for message, argument in parse(self._buffer) if message == "changed"]

    def exited(self, code: int, *, quietly: bool) -> None:
        self.pid = 0
        if not quietly:
            log.error("the --reload watcher exited (code %d); changes are no longer seen", code)

    def stop(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)


def watched_dirs(config: Config) -> list[str]:
    return [os.path.abspath(path) for path in (config.reload_dir or (config.app_dir,))]


def start_watcher(config: Config, close_in_child: list[int]) -> tuple[int, int]:
    """Fork the watcher; returns its pid and the read end of its pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        os.set_blocking(read_end, False)
        return pid, read_end
    code = 1
    try:
        os.close(read_end)
        for fd in close_in_child:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        # the terminal's Ctrl-C reaches the whole group; the master decides when we stop
        for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_IGN)
        code = _watch(config, write_end)
    except BaseException:
        import traceback  # noqa: PLC0415

        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _watch(config: Config, out: int) -> int:
    import watchfiles  # noqa: PLC0415 -- optional dependency, imported in the watcher only

    from portico.supervisor.title import set_title  # noqa: PLC0415

    set_title("reloader")
    dirs = watched_dirs(config)
    path_filter = PathFilter(config.reload_include, config.reload_exclude)
    for changes in watchfiles.watch(
        *dirs, watch_filter=path_filter, debounce=DEBOUNCE_MS, raise_interrupt=False
    ):
        names = sorted({os.path.relpath(path, dirs[0]) for _, path in changes})
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        os.write(out, f"changed {shown}\n".encode("utf-8", "replace"))
    return 0
