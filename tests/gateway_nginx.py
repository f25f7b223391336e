"""A real nginx in front of a tiny upstream server, for the uwsgi and FastCGI protocol tests.

nginx gets its listening socket from the test: the test binds 127.0.0.1 port 0 and passes the socket
down through nginx's ``NGINX`` environment variable (the mechanism of its binary upgrade), so there
is no port race and no readiness wait: a client may connect at once, the kernel queues the
connection until nginx accepts it. The upstream listens on its own port-0 socket before nginx
starts; every connection it accepts runs the test's handler in a thread.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PARAMS_DIR = Path("/etc/nginx")

Handler = Callable[[socket.socket], None]


class Abandon(Exception):
    """Raised by an upstream's respond(): it resets the connection (SO_LINGER 0), as a driver
    does after an app failed mid-response."""


def reset(sock: socket.socket) -> None:
    """Close with a reset rather than a FIN: the peer sees an error, not an end."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def have_nginx() -> bool:
    return os.access(NGINX, os.X_OK) and (PARAMS_DIR / "uwsgi_params").is_file()


needs_nginx = pytest.mark.skipif(not have_nginx(), reason="nginx with /etc/nginx/*_params needed")


class Upstream:
    """A listening socket on 127.0.0.1; each connection is served by ``handler`` in a thread.

    The handler is set per test; what it raises is kept in :attr:`errors` (the test asserts none).
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.handler: Handler | None = None
        self.errors: list[BaseException] = []
        self.accepted = 0
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self._closing:
                conn.close()
                return
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(20)
        try:
            handler = self.handler
            assert handler is not None, "no upstream handler set"
            handler(conn)
        except BaseException as exc:  # reported by check()
            self.errors.append(exc)
        finally:
            conn.close()

    def check(self) -> None:
        """Wait for the connections served so far; re-raise the first handler error."""
        for thread in list(self._threads):
            thread.join(20)
        if self.errors:
            raise self.errors[0]

    def close(self) -> None:
        self._closing = True
        # wake the acceptor with a connection of our own, then close the listener
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
        self._acceptor.join(5)
        self.sock.close()


class Nginx:
    """``nginx -g 'daemon off;'`` with its own config, logs and temp folders under ``root``."""

    def __init__(self, root: Path, http_block: str, fronts: int = 1) -> None:
        """``LISTEN`` in ``http_block`` is the first front socket; with ``fronts`` > 1, ``LISTEN1``
        and on are the others (in :attr:`ports`)."""
        self.root = root
        self.fronts = [socket.create_server(("127.0.0.1", 0)) for _ in range(fronts)]
        for front in self.fronts:
            front.set_inheritable(True)
        self.front = self.fronts[0]
        self.ports: list[int] = [front.getsockname()[1] for front in self.fronts]
        self.port: int = self.ports[0]
        for index in range(len(self.ports) - 1, 0, -1):
            http_block = http_block.replace(
                f"LISTEN{index}", f"listen 127.0.0.1:{self.ports[index]}"
            )
        for sub in ("body", "uwsgi", "fastcgi", "proxy", "scgi"):
            (root / sub).mkdir(exist_ok=True)
        conf = root / "nginx.conf"
        conf.write_text(
            f"""
# the workers run as the test's user, so they can write the temp folders under root
user {pwd.getpwuid(os.geteuid()).pw_name};
worker_processes 1;
error_log {root}/error.log info;
pid {root}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    uwsgi_temp_path {root}/uwsgi;
    fastcgi_temp_path {root}/fastcgi;
    proxy_temp_path {root}/proxy;
    scgi_temp_path {root}/scgi;
    client_max_body_size 64m;
{http_block.replace("LISTEN", f"listen 127.0.0.1:{self.port}")}
}}
"""
        )
        command = [NGINX, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")]
        # the config is checked first, so a bad one fails here and not as a client timeout
        subprocess.run([*command, "-t", "-q"], check=True, capture_output=True, timeout=30)
        self.proc = subprocess.Popen(
            [*command, "-g", "daemon off;"],
            env={**os.environ, "NGINX": "".join(f"{front.fileno()};" for front in self.fronts)},
            pass_fds=tuple(front.fileno() for front in self.fronts),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for front in self.fronts:
            front.close()


@contextlib.contextmanager
def nginx_with(
    root: Path, http_block: Callable[[Upstream], str]
) -> Iterator[tuple[Nginx, Upstream]]:
    upstream = Upstream()
    server = Nginx(root, http_block(upstream))
    try:
        yield server, upstream
    finally:
        server.stop()
        upstream.close()


def request_head(path: bytes, extra: bytes = b"", method: bytes = b"GET") -> bytes:
    """An HTTP/1.1 request head for nginx's server ``example.test``, closing after it."""
    return b"%s %s HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n%s\r\n" % (
        method,
        path,
        extra,
    )


def raw_reply(port: int, data: bytes, timeout: float = 20) -> bytes:
    """Everything nginx answers to ``data`` until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        reply = bytearray()
        while chunk := sock.recv(65536):
            reply += chunk
    return bytes(reply)


def http_request(
    port: int, head: bytes, body: Iterator[bytes] | bytes = b"", timeout: float = 20
) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Send one HTTP/1.1 request (``Connection: close``) to nginx; return the status line, the
    response fields (lower-cased names, last wins) and the body, de-chunked."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for piece in [body] if isinstance(body, bytes) else body:
            sock.sendall(piece)
        data = bytearray()
        while chunk := sock.recv(1 << 20):
            data += chunk
    raw_head, _, rest = bytes(data).partition(b"\r\n\r\n")
    status, *lines = raw_head.split(b"\r\n")
    fields = {}
    for line in lines:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    if fields.get(b"transfer-encoding") == b"chunked":
        rest = dechunk(rest)
    return status, fields, rest


def dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        line_end = data.index(b"\r\n", pos)
        size = int(data[pos:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2
