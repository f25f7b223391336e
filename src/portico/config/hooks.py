"""gunicorn's server hooks, read from a ``gunicorn.conf.py``, and the objects they are given.

A hook is called at the same moment as in gunicorn (the supervisor and the worker call
:meth:`Hooks.call`) with a ``server`` and a ``worker`` carrying what hooks in the wild use:
``pid``, ``cfg`` (the settings, by Portico's names and by gunicorn's), ``log`` (the error log)
and, for a worker, ``age`` (how many workers the master had started before it) and ``ppid``.
prometheus-client's multiprocess mode, ``child_exit = lambda server, worker:
multiprocess.mark_process_dead(worker.pid)``, is the best known.

A hook that raises is logged with its traceback and the server goes on, except ``on_starting``
and ``when_ready``, whose failure stops the start as it does in gunicorn.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from portico.config.settings import SETTINGS
from portico.errors import ConfigError, StartupError
from portico.logs import error_log as log

__all__ = [
    "ARITY",
    "GUNICORN_NAMES",
    "CfgView",
    "Hooks",
    "ServerView",
    "WorkerHooks",
    "WorkerView",
    "check_hook",
]

#: Hook name -> how many arguments gunicorn passes (and so the function must take).
ARITY: Mapping[str, int] = {
    "on_starting": 1,
    "on_reload": 1,
    "when_ready": 1,
    "pre_fork": 2,
    "post_fork": 2,
    "post_worker_init": 1,
    "worker_int": 1,
    "worker_abort": 1,
    "pre_exec": 1,
    "child_exit": 2,
    "worker_exit": 2,
    "nworkers_changed": 3,
    "on_exit": 1,
}
_FATAL = frozenset({"on_starting", "when_ready"})

#: gunicorn config-file name -> the Portico setting that means the same.
GUNICORN_NAMES: Mapping[str, str] = {
    peer.name: setting.name
    for setting in SETTINGS
    for peer in setting.peers
    if peer.peer == "gunicorn" and peer.name
}


def check_hook(name: str, function: object, where: str) -> Callable[..., object]:
    """The hook, if it is a function gunicorn could call with its arguments; else ConfigError."""
    arity = ARITY[name]
    if not callable(function):
        raise ConfigError(f"{where}: {name} must be a function, got {type(function).__name__}")
    try:
        inspect.signature(function).bind(*range(arity))
    except TypeError:
        raise ConfigError(f"{where}: {name} must take {arity} argument(s)") from None
    except ValueError:  # no signature to inspect (a builtin): let the call tell
        pass
    return function


@dataclass(frozen=True, slots=True)
class Hooks:
    """The hooks of one reading of the config file (SIGHUP reads it again)."""

    functions: Mapping[str, Callable[..., object]] = field(default_factory=dict)
    #: gunicorn's ``logconfig_dict``, for ``logging.config.dictConfig``
    logconfig_dict: Mapping[str, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.functions)

    def call(self, name: str, *args: object) -> None:
        function = self.functions.get(name)
        if function is None:
            return
        try:
            function(*args)
        except Exception as exc:
            if name in _FATAL:
                raise StartupError(f"the {name} hook failed: {exc!r}") from exc
            log.exception("the %s hook raised", name)


class CfgView:
    """``server.cfg`` / ``worker.cfg``: the settings as attributes, by Portico's names and by
    gunicorn's config-file names (``cfg.keepalive`` is ``keepalive_timeout``)."""

    def __init__(self, config: object) -> None:
        self._config = config
        self._names = GUNICORN_NAMES

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return getattr(self._config, self._names.get(name, name))
        except AttributeError:
            raise AttributeError(f"no setting {name!r}") from None


@dataclass(eq=False)
class WorkerView:
    """The ``worker`` a hook gets: the same object in the master and in the worker's process."""

    age: int
    cfg: CfgView
    ppid: int
    #: 0 before the fork (``pre_fork``)
    pid: int = 0
    log: logging.Logger = log
    booted: bool = False
    alive: bool = True


@dataclass(eq=False)
class ServerView:
    """The ``server`` a hook gets (gunicorn's arbiter): the master's pid, settings and workers."""

    pid: int
    cfg: CfgView
    log: logging.Logger = log
    #: pid -> worker, as gunicorn's ``server.WORKERS``
    WORKERS: dict[int, WorkerView] = field(default_factory=dict)
    num_workers: int = 1
    proc_name: str = ""

    @classmethod
    def of(cls, config: Any, pid: int) -> ServerView:
        name = config.proc_name or config.app or "demo app"
        return cls(pid, CfgView(config), num_workers=config.workers, proc_name=name)


@dataclass(frozen=True, slots=True)
class WorkerHooks:
    """What a worker process needs to run its hooks: the hooks, and the two objects they get."""

    hooks: Hooks
    server: ServerView
    worker: WorkerView

    def call(self, name: str) -> None:
        """``post_worker_init``, ``worker_int``, ``worker_abort`` get the worker; ``post_fork``
        and ``worker_exit`` the server and the worker."""
        if name in ("post_fork", "worker_exit"):
            self.hooks.call(name, self.server, self.worker)
        else:
            self.hooks.call(name, self.worker)

    def has(self, name: str) -> bool:
        return name in self.hooks.functions
