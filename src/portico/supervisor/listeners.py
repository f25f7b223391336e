"""The master's listening sockets, and which of them each worker gets.

The master binds everything before the first fork and keeps every socket open for its whole life:
a worker that exits closes only its copy, so connections waiting in the accept queue are served by
the others (or by its successor) instead of being reset.

With ``--reuse-port`` each TCP bind becomes one ``SO_REUSEPORT`` socket per worker *slot*. The
kernel spreads connections across the sockets of a group; the master keeps a slot's socket while
its worker is replaced, so the successor picks up the connections queued meanwhile.

Sockets come from ``--bind``, from systemd socket activation (``LISTEN_FDS``), or from the
previous master during a ``SIGUSR2`` upgrade (``PORTICO_INHERIT``: a JSON list of
``[spec, slot, fd]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import MutableMapping
from typing import TYPE_CHECKING

from portico.config.kinds import bind_protocol
from portico.errors import StartupError
from portico.logs import error_log as log
from portico.runtime.binds import create_socket, describe, parse_bind, systemd_sockets

if TYPE_CHECKING:
    from portico.config import Config

__all__ = ["INHERIT_ENV", "Listeners"]

INHERIT_ENV = "PORTICO_INHERIT"


class Listeners:
    """Shared sockets every worker serves, plus per-slot ``SO_REUSEPORT`` sockets."""

    def __init__(
        self,
        binds: tuple[str, ...],
        backlog: int,
        *,
        reuse_port: bool,
        dual_stack: bool,
        umask: int | None,
        environ: MutableMapping[str, str],
    ) -> None:
        self.backlog = backlog
        self.dual_stack = dual_stack
        self.umask = umask
        #: (spec, socket) served by every worker
        self.shared: list[tuple[str, socket.socket]] = []
        #: TCP specs served through a socket per slot, with the port the first one bound
        self.grouped: list[tuple[str, int]] = []
        self.slots: dict[int, list[socket.socket]] = {}
        #: unix socket files to remove at exit (not after an upgrade: the new master serves them)
        self.unix_paths: list[str] = []
        inherited = _inherited(environ)
        activated = systemd_sockets(environ, os.getpid())
        try:
            if activated:
                log.info("using %d socket(s) from systemd socket activation", len(activated))
                # a bind naming the fd keeps its protocol (``--bind uwsgi:fd://3``)
                named = {parse_bind(spec)[2]: spec for spec in binds if parse_bind(spec)[0] == "fd"}
                self.shared = [
                    (named.get(sock.fileno(), f"fd://{sock.fileno()}"), sock) for sock in activated
                ]
                return
            for spec in binds:
                kind = parse_bind(spec)[0]
                if reuse_port and kind == "tcp":
                    self._group(spec, inherited)
                    continue
                sock = inherited.pop((spec, None), None)
                if sock is None:
                    sock = create_socket(spec, backlog, dual_stack=dual_stack, umask=umask)
                self.shared.append((spec, sock))
                if kind == "unix":
                    self.unix_paths.append(parse_bind(spec)[1])
        except BaseException:
            self.close()
            raise
        finally:
            for sock in inherited.values():  # bound by the old master, no longer wanted
                sock.close()

    def _group(self, spec: str, inherited: dict[tuple[str, int | None], socket.socket]) -> None:
        slot_zero = inherited.pop((spec, 0), None) or create_socket(
            spec, self.backlog, reuse_port=True, dual_stack=self.dual_stack
        )
        self.slots.setdefault(0, []).append(slot_zero)
        self.grouped.append((spec, slot_zero.getsockname()[1]))
        for name, slot in list(inherited):
            if name == spec and slot is not None:
                self.slots.setdefault(slot, []).append(inherited.pop((name, slot)))

    def for_slot(self, slot: int) -> list[tuple[str, socket.socket]]:
        """The sockets the worker in ``slot`` serves, with their bind specs (creating the slot's
        group sockets)."""
        if self.grouped and len(self.slots.get(slot, ())) < len(self.grouped):
            owned = self.slots.setdefault(slot, [])
            for spec, port in self.grouped[len(owned) :]:
                owned.append(
                    create_socket(
                        spec,
                        self.backlog,
                        reuse_port=True,
                        dual_stack=self.dual_stack,
                        port=port,
                    )
                )
        specs = [spec for spec, _ in self.grouped]
        return [*self.shared, *zip(specs, self.slots.get(slot, []), strict=False)]

    def all(self) -> list[socket.socket]:
        return [sock for _, sock in self.shared] + [
            sock for owned in self.slots.values() for sock in owned
        ]

    def drop_slot(self, slot: int) -> None:
        """Close a slot's sockets when the pool shrinks (``SIGTTOU``).

        Connections still queued on them are reset unless the kernel migrates them to the other
        sockets of the group (``net.ipv4.tcp_migrate_req = 1``, Linux 5.14).
        """
        if slot == 0:
            return  # slot 0 anchors the group's port; the pool never shrinks below one
        for sock in self.slots.pop(slot, []):
            sock.close()

    def inheritable(self) -> list[tuple[str, int | None, socket.socket]]:
        """Every socket with its spec and slot, for a new master (``SIGUSR2``)."""
        entries: list[tuple[str, int | None, socket.socket]] = [
            (spec, None, sock) for spec, sock in self.shared
        ]
        for slot, owned in self.slots.items():
            specs = [spec for spec, _ in self.grouped]
            entries.extend((spec, slot, sock) for spec, sock in zip(specs, owned, strict=False))
        return entries

    def describe_for_log(self) -> list[tuple[str, socket.socket]]:
        """One socket per address, with its spec, for the "serving on" lines."""
        specs = [spec for spec, _ in self.grouped]
        return [*self.shared, *zip(specs, self.slots.get(0, []), strict=False)]

    def log_serving(self, name: str, config: Config) -> None:
        """The "serving on" line of each address, as the server is ready."""
        for spec, sock in self.describe_for_log():
            described = describe(sock, config.tls_for(spec), bind_protocol(spec)[0])
            log.info("Portico serving %s on %s", name, described)

    def close(self, *, unlink: bool = True) -> None:
        for sock in self.all():
            sock.close()
        self.shared = []
        self.slots = {}
        if unlink:
            for path in self.unix_paths:
                with contextlib.suppress(OSError):
                    os.unlink(path)


def inherit_env(entries: list[tuple[str, int | None, socket.socket]]) -> str:
    return json.dumps([[spec, slot, sock.fileno()] for spec, slot, sock in entries])


def _inherited(environ: MutableMapping[str, str]) -> dict[tuple[str, int | None], socket.socket]:
    raw = environ.pop(INHERIT_ENV, None)
    if raw is None:
        return {}
    try:
        entries = json.loads(raw)
        sockets = {}
        for spec, slot, fd in entries:
            sock = socket.socket(fileno=int(fd))
            os.set_inheritable(sock.fileno(), False)
            sock.setblocking(False)
            sockets[(str(spec), None if slot is None else int(slot))] = sock
    except (ValueError, TypeError, OSError) as exc:
        raise StartupError(f"{INHERIT_ENV}: cannot take over the sockets: {exc}") from exc
    log.info("took over %d listening socket(s) from the previous master", len(sockets))
    return sockets
