"""What the master sets up for the app before anything is imported, and whom the workers run as.

``prepare`` applies ``chdir``, ``python_path``, ``env_file`` and ``env`` in the master, so that
every worker (and ``--preload``) inherits them; SIGHUP applies them again before new workers
start. ``Identity`` is ``user``/``group``, checked in the master at start (an unknown user stops
the server there, not in each worker) and taken on by each worker right after the fork, before
the app is imported: the master keeps root to bind privileged ports again on SIGUSR2 and to
read the certificates, as nginx's master and gunicorn's arbiter do.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import sys
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from portico.errors import ConfigError

if TYPE_CHECKING:
    from portico.config import Config

__all__ = ["Identity", "identity", "prepare"]

# Variables the last env_file set: the next reading (SIGHUP) may change them, while a variable
# the server was started with still wins over the file.
_from_env_file: set[str] = set()


def prepare(config: Config, environ: MutableMapping[str, str] | None = None) -> None:
    """Change directory, extend ``sys.path``, load ``env_file`` and ``env`` (ConfigError if a
    directory or file is missing)."""
    environ = os.environ if environ is None else environ
    if config.chdir is not None:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            raise ConfigError(f"chdir: cannot change to {config.chdir!r}: {exc.strerror}") from None
        _put_first(os.getcwd())
    for directory in reversed(config.python_path):
        _put_first(os.path.abspath(directory))
    if config.env_file is not None:
        for name, value in _read_env_file(config.env_file).items():
            if name not in environ or name in _from_env_file:
                environ[name] = value
                _from_env_file.add(name)
    for pair in config.env:
        name, _, value = pair.partition("=")
        environ[name] = value
        _from_env_file.discard(name)


def _put_first(directory: str) -> None:
    if directory in sys.path:
        sys.path.remove(directory)
    sys.path.insert(0, directory)


def _read_env_file(path: str) -> dict[str, str]:
    try:
        import dotenv  # noqa: PLC0415 -- optional dependency, only with env_file
    except ImportError:
        raise ConfigError("env_file needs python-dotenv: pip install 'portico[dotenv]'") from None
    if not os.path.isfile(path):
        # uvicorn goes on without a word when the file is missing; a typo should not
        raise ConfigError(f"env_file: no such file {path!r}")
    return {name: value or "" for name, value in dotenv.dotenv_values(path).items()}


@dataclass(frozen=True, slots=True)
class Identity:
    """The user and group the workers run as."""

    uid: int
    gid: int
    user: str
    initgroups: bool

    def take_on(self) -> None:
        """In a worker: become this user. Groups first (setgid is impossible once uid is not 0);
        the supplementary groups are the user's (``initgroups``) or this group alone, never the
        master's, which gunicorn leaves in place without ``--initgroups``."""
        if os.getuid() == self.uid and os.getgid() == self.gid:
            return
        if self.initgroups:
            os.initgroups(self.user, self.gid)
        else:
            os.setgroups([self.gid])
        os.setgid(self.gid)
        os.setuid(self.uid)
        os.environ["HOME"] = _home(self.uid)

    def chown(self, paths: Iterable[str]) -> None:
        """Hand files the workers must reopen (log files, unix sockets) to the user."""
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.chown(path, self.uid, self.gid)


def _home(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return "/"


def identity(config: Config) -> Identity | None:
    """The workers' identity from ``user``/``group``, or None; ConfigError if a name is unknown
    or the master cannot switch to it."""
    if config.user is None and config.group is None:
        return None
    uid, user, primary = _user(config.user)
    gid = _group(config.group) if config.group is not None else primary
    if (uid, gid) != (os.getuid(), os.getgid()) and os.geteuid() != 0:
        who = config.user if config.user is not None else config.group
        raise ConfigError(f"user/group {who}: switching identity needs the master to run as root")
    return Identity(uid, gid, user, config.initgroups)


def _user(name: str | None) -> tuple[int, str, int]:
    """(uid, name, primary gid) of ``name`` (a name or a number; None: the current user)."""
    if name is None:
        uid = os.getuid()
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return uid, str(uid), os.getgid()
        return uid, entry.pw_name, os.getgid()
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        if name.isdigit():  # a uid without a passwd entry is still a uid (containers)
            return int(name), name, int(name)
        raise ConfigError(f"user: no user {name!r}") from None
    return entry.pw_uid, entry.pw_name, entry.pw_gid


def _group(name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"group: no group {name!r}") from None
