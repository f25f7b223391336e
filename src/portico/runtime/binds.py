"""Turning ``--bind`` values into listening sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import MutableMapping

from portico.config.kinds import bind_protocol
from portico.errors import StartupError


def parse_bind(spec: str) -> tuple[str, str, int]:
    """Split a bind spec into ``(kind, host_or_path, port)``; kind is tcp, unix or fd. A protocol
    before the address (``uwsgi:``, ``fastcgi:``) is not part of it."""
    spec = bind_protocol(spec)[1]
    if spec.startswith("unix:"):
        return "unix", spec[5:], 0
    if spec.startswith("fd://"):
        return "fd", "", int(spec[5:])
    if spec.startswith("["):
        host, _, port = spec[1:].partition("]:")
    else:
        host, _, port = spec.rpartition(":")
    return "tcp", host, int(port)


def create_socket(
    spec: str,
    backlog: int,
    *,
    reuse_port: bool = False,
    dual_stack: bool = False,
    umask: int | None = None,
    port: int | None = None,
) -> socket.socket:
    """A listening, non-blocking socket for one bind spec.

    ``port`` overrides the spec's port: the sockets of a ``SO_REUSEPORT`` group after the first
    must bind the port the first one got when the spec says ``:0``.
    """
    kind, host, spec_port = parse_bind(spec)
    try:
        if kind == "fd":
            sock = socket.socket(fileno=spec_port)
        elif kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(host).st_mode):
                    os.unlink(host)  # a stale socket left by a previous run
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # the socket file's mode is 0777 & ~umask; connecting needs write permission
            previous = os.umask(umask) if umask is not None else None
            try:
                sock.bind(host)
            finally:
                if previous is not None:
                    os.umask(previous)
        else:
            infos = socket.getaddrinfo(
                host or None,
                spec_port if port is None else port,
                type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE,
            )
            family, socktype, proto, _, address = infos[0]
            sock = socket.socket(family, socktype, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # explicit either way: the system default (net.ipv6.bindv6only) varies
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
            sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        raise StartupError(f"cannot bind {spec}: {exc.strerror or exc}") from exc
    return sock


def systemd_sockets(environ: MutableMapping[str, str], pid: int) -> list[socket.socket]:
    """Listening sockets passed by systemd socket activation (``sd_listen_fds(3)``).

    systemd sets ``LISTEN_PID`` to the activated process and ``LISTEN_FDS`` to the count of
    sockets starting at fd 3. The variables are removed so that children do not take the
    sockets for their own.
    """
    count = environ.get("LISTEN_FDS")
    owner = environ.get("LISTEN_PID")
    if count is None or owner is None:
        return []
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    if not owner.isdigit() or int(owner) != pid or not count.isdigit():
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise StartupError(f"systemd passed fd {fd}, which is not a socket: {exc}") from exc
        os.set_inheritable(fd, False)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


SD_LISTEN_FDS_START = 3


def describe(sock: socket.socket, tls: bool = False, protocol: str = "http") -> str:
    """The URL a listening socket serves, for the startup log line: ``http://HOST:PORT``,
    ``https://…``, ``uwsgi://…``, ``fastcgi://…``, or ``unix:PATH`` (``uwsgi:unix:PATH``)."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        named = "" if protocol == "http" else f"{protocol}:"
        return f"{named}unix:{address}" + (" (TLS)" if tls else "")
    host, port = address[0], address[1]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    scheme = protocol if protocol != "http" else "https" if tls else "http"
    return f"{scheme}://{host}:{port}"
