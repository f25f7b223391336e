"""Turning ``--bind`` values into listening sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from portico.errors import StartupError


def parse_bind(spec: str) -> tuple[str, str, int]:
    """Split a bind spec into ``(kind, host_or_path, port)``; kind is tcp, unix or fd."""
    if spec.startswith("unix:"):
        return "unix", spec[5:], 0
    if spec.startswith("fd://"):
        return "fd", "", int(spec[5:])
    if spec.startswith("["):
        host, _, port = spec[1:].partition("]:")
    else:
        host, _, port = spec.rpartition(":")
    return "tcp", host, int(port)


def create_socket(spec: str, backlog: int) -> socket.socket:
    """A listening, non-blocking socket for one bind spec."""
    kind, host, port = parse_bind(spec)
    try:
        if kind == "fd":
            sock = socket.socket(fileno=port)
        elif kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(host).st_mode):
                    os.unlink(host)  # a stale socket left by a previous run
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(host)
        else:
            infos = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, socktype, proto, _, address = infos[0]
            sock = socket.socket(family, socktype, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        raise StartupError(f"cannot bind {spec}: {exc.strerror or exc}") from exc
    return sock


def describe(sock: socket.socket) -> str:
    """The URL a listening socket serves, for the startup log line."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address}"
    host, port = address[0], address[1]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"
