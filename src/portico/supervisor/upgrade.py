"""``SIGUSR2``, the binary upgrade: a new master from the same command line takes over the sockets.

Both masters serve until the old one is told to stop (``SIGTERM``), as with nginx's and
gunicorn's binary upgrade; if the new one fails, the old one simply goes on. Split from the
master's loop, which only tells this when the signal comes and when the new master exits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping

from portico.supervisor.listeners import INHERIT_ENV, Listeners, inherit_env
from portico.supervisor.process import PidFile, alive, exec_new_master

__all__ = ["Upgrade"]

log = logging.getLogger("portico.error")


class Upgrade:
    """The new master started by ``SIGUSR2``, if one runs."""

    def __init__(self, master_pid: int, pid_file: PidFile) -> None:
        self.master_pid = master_pid
        self.pid_file = pid_file
        #: the new master's process id while it runs (0: none)
        self.pid = 0

    def start(
        self,
        listeners: Listeners,
        environ: MutableMapping[str, str],
        pre_exec: Callable[[], None],
    ) -> None:
        """Start a new master from the same command line; it inherits ``listeners``.
        ``pre_exec`` runs in the child just before the exec (gunicorn's ``pre_exec`` hook)."""
        if self.pid:
            log.warning("SIGUSR2: a new master (%d) is already running", self.pid)
            return
        entries = listeners.inheritable()
        env = dict(environ)
        env[INHERIT_ENV] = inherit_env(entries)
        self.pid = exec_new_master(entries, env, pre_exec)
        log.info(
            "SIGUSR2: started a new master %d; stop this one (%d) when it serves",
            self.pid,
            self.master_pid,
        )
        self.pid_file.step_aside()

    def exited(self, code: int) -> None:
        log.error("the new master %d exited (code %d); this master goes on", self.pid, code)
        self.pid = 0
        self.pid_file.take_back()

    def running(self) -> bool:
        """Whether the new master is there (then it serves the unix sockets' files)."""
        return alive(self.pid)
