"""The uwsgi and FastCGI drivers in a real Portico, spoken to directly with the bytes nginx writes
(``tests/test_uwsgi.py`` and ``tests/test_fastcgi.py`` build them): the mapping onto the app's
scope, kept FastCGI connections, aborts, bad input, timeouts, resets, static files, and the health
path across a SIGTERM drain on every protocol."""

from __future__ import annotations

import json
import signal
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerFactory, ServerProcess
from tests.nginx_recipes import bound_ports
from tests.test_fastcgi import ABORT, END, STDOUT, VALUES_RESULT, get_values, record
from tests.test_fastcgi import nginx_vars as fcgi_vars
from tests.test_fastcgi import request as fcgi_request
from tests.test_uwsgi import nginx_vars, packet, post

GATEWAY_BINDS = ("--bind", "uwsgi:127.0.0.1:0", "--bind", "fastcgi:127.0.0.1:0")


def start(serve: ServerFactory, app: str, *args: str) -> tuple[ServerProcess, dict[str, int]]:
    """Portico with an HTTP, a uwsgi and a FastCGI bind; the ports by protocol."""
    server = serve(app, *GATEWAY_BINDS, *args)
    return server, bound_ports(server)


def exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data``; everything that comes back until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while chunk := sock.recv(1 << 16):
        out += chunk
    return bytes(out)


def records(data: bytes) -> list[tuple[int, int, bytes]]:
    """The FastCGI records in ``data``: (type, request id, content)."""
    out = []
    pos = 0
    while pos < len(data):
        _, kind, rid, size, pad = struct.unpack_from(">BBHHBx", data, pos)
        out.append((kind, rid, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + pad
    return out


def stdout_of(data: bytes, rid: int = 1) -> bytes:
    return b"".join(c for kind, r, c in records(data) if kind == STDOUT and r == rid)


def read_response(sock: socket.socket, rid: int) -> bytes:
    """Read a kept connection until FCGI_END_REQUEST of ``rid``."""
    data = bytearray()
    while True:
        chunk = sock.recv(1 << 16)
        assert chunk, "the connection closed before FCGI_END_REQUEST"
        data += chunk
        try:
            parsed = records(bytes(data))
        except struct.error:
            continue
        if any(kind == END and r == rid for kind, r, _ in parsed):
            return bytes(data)


def split_head(cgi: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = cgi.partition(b"\r\n\r\n")
    first, *lines = head.split(b"\r\n")
    fields = {}
    for line in lines:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return first, fields, body


def test_uwsgi_vars_become_the_apps_scope(serve: ServerFactory) -> None:
    _, ports = start(serve, "asgi_apps:echo")
    packet_vars = nginx_vars(
        REMOTE_ADDR=b"203.0.113.9",
        REMOTE_PORT=b"5555",
        HTTPS=b"on",
        REQUEST_SCHEME=b"https",
        REQUEST_URI=b"/app/caf%C3%A9?x=%20",
        PATH_INFO=b"/app/caf\xc3\xa9",
        SCRIPT_NAME=b"/app",
    )
    reply = exchange(ports["uwsgi"], packet(packet_vars))
    first, fields, body = split_head(reply)
    assert first == b"HTTP/1.1 200 OK"
    assert b"date" not in fields and b"server" not in fields  # nginx adds its own
    scope = json.loads(body)
    assert scope["client"] == ["203.0.113.9", 5555]  # the client nginx saw, not nginx
    assert scope["scheme"] == "https"
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/app",
        "/app/café",
        "/app/caf%C3%A9",
    )
    assert scope["query_string"] == "x=%20"
    assert scope["server"] == ["example.test", 8080]
    assert ["host", "example.test"] in scope["headers"]
    echoed = json.loads(split_head(exchange(ports["uwsgi"], post(b"a=1&b=2")))[2])
    assert (echoed["method"], echoed["body"]) == ("POST", "a=1&b=2")


def test_fastcgi_kept_connection_values_and_next_request(serve: ServerFactory) -> None:
    _, ports = start(serve, "asgi_apps:echo")
    with socket.create_connection(("127.0.0.1", ports["fastcgi"]), timeout=10) as sock:
        sock.sendall(get_values(b"FCGI_MPXS_CONNS", b"FCGI_MAX_CONNS") + fcgi_request(rid=1))
        first = read_response(sock, 1)
        (values,) = [c for kind, _, c in records(first) if kind == VALUES_RESULT]
        assert b"\x0f\x01FCGI_MPXS_CONNS0" in values  # no multiplexing
        assert b"\x0e\x05FCGI_MAX_CONNS10000" in values  # --max-connections
        status, _, body = split_head(stdout_of(first))
        assert status == b"Status: 200 OK" and json.loads(body)["path"] == "/hello"
        items = fcgi_vars(REQUEST_URI=b"/second?y=2", REQUEST_METHOD=b"POST")
        sock.sendall(fcgi_request(items, b"payload", rid=2))
        second = read_response(sock, 2)
        echoed = json.loads(split_head(stdout_of(second, 2))[2])
        assert (echoed["path"], echoed["body"]) == ("/second", "payload")


def test_fastcgi_idle_kept_connection_closes_after_keepalive_timeout(
    serve: ServerFactory,
) -> None:
    _, ports = start(serve, "asgi_apps:echo", "--keepalive-timeout", "1")
    with socket.create_connection(("127.0.0.1", ports["fastcgi"]), timeout=10) as sock:
        sock.sendall(fcgi_request(rid=1))
        read_response(sock, 1)
        began = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server, idle
        assert 0.5 < time.monotonic() - began < 5


def test_fastcgi_abort_ends_a_running_request(serve: ServerFactory) -> None:
    _, ports = start(serve, "asgi_apps:slow")
    items = fcgi_vars(REQUEST_URI=b"/?30", QUERY_STRING=b"30")
    with socket.create_connection(("127.0.0.1", ports["fastcgi"]), timeout=10) as sock:
        sock.sendall(fcgi_request(items, rid=1))
        sock.sendall(record(ABORT, b"", 1))
        began = time.monotonic()
        reply = read_response(sock, 1)
        assert time.monotonic() - began < 5  # not the app's 30 s
        assert (END, 1) in [(kind, rid) for kind, rid, _ in records(reply)]
        # the kept connection serves the next request
        sock.sendall(fcgi_request(fcgi_vars(REQUEST_URI=b"/?0"), rid=2))
        assert b"slow done" in stdout_of(read_response(sock, 2), 2)


@pytest.mark.parametrize("protocol", ["uwsgi", "fastcgi"])
def test_bad_input_ends_the_connection_and_is_logged_once(
    serve: ServerFactory, protocol: str
) -> None:
    server, ports = start(serve, "asgi_apps:echo", "--cgi-max-var-count", "8")
    if protocol == "uwsgi":
        reply = exchange(ports["uwsgi"], packet(nginx_vars()))
        assert reply.startswith(b"HTTP/1.1 431 ")
        assert b"too many uwsgi vars" in reply
        assert server.wait_for_log("431 too many uwsgi vars")
        garbage = b"\x07" + b"\xff" * 40  # modifier1 7: not a WSGI request
        assert exchange(ports["uwsgi"], garbage).startswith(b"HTTP/1.1 400 ")
    else:
        reply = exchange(ports["fastcgi"], fcgi_request())
        assert split_head(stdout_of(reply))[0] == b"Status: 431 Request Header Fields Too Large"
        assert server.wait_for_log("431 too many FastCGI params")
        assert exchange(ports["fastcgi"], b"\x09" + b"\x00" * 15) == b""  # version 9
    assert server.wait_for_log("400 ")
    assert server.log.count(" 431 ") == 1
    assert httpx.get(server.url).status_code == 200  # the worker is fine


@pytest.mark.parametrize("protocol", ["uwsgi", "fastcgi"])
def test_an_app_failing_mid_response_resets_the_connection(
    serve: ServerFactory, protocol: str
) -> None:
    _, ports = start(serve, "asgi_apps:errors")
    if protocol == "uwsgi":
        data = packet(nginx_vars(REQUEST_URI=b"/raise-after-start"))
    else:
        data = fcgi_request(fcgi_vars(REQUEST_URI=b"/raise-after-start"))
    with socket.create_connection(("127.0.0.1", ports[protocol]), timeout=10) as sock:
        sock.sendall(data)
        received = bytearray()
        with pytest.raises(ConnectionResetError):
            while chunk := sock.recv(1 << 16):
                received += chunk
    assert b"partial" in received  # what was written before the failure went out
    if protocol == "fastcgi":
        assert END not in [kind for kind, _, _ in records(bytes(received))]


def test_head_timeout(serve: ServerFactory) -> None:
    server, ports = start(serve, "asgi_apps:echo", "--header-timeout", "1")
    whole = packet(nginx_vars())
    began = time.monotonic()
    reply = exchange(ports["uwsgi"], whole[: len(whole) // 2])
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert 0.5 < time.monotonic() - began < 5
    reply = exchange(ports["fastcgi"], fcgi_request()[:20])  # FCGI_BEGIN_REQUEST and a bit
    assert split_head(stdout_of(reply))[0] == b"Status: 408 Request Timeout"
    assert server.wait_for_log("request not received in time")


def test_static_files_over_uwsgi_and_fastcgi(serve: ServerFactory, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and more: many 64 KiB records
    (tmp_path / "big.bin").write_bytes(data)
    _, ports = start(serve, "asgi_apps:echo", "--static", f"/files={tmp_path}")
    target = b"/files/big.bin"
    _, fields, body = split_head(exchange(ports["uwsgi"], packet(nginx_vars(REQUEST_URI=target))))
    assert body == data and fields[b"content-length"] == b"%d" % len(data)
    reply = exchange(ports["fastcgi"], fcgi_request(fcgi_vars(REQUEST_URI=target), keep=False))
    assert split_head(stdout_of(reply))[2] == data


def _health(ports: dict[str, int]) -> dict[str, int]:
    """The health path's status over each protocol (a new connection each)."""
    found = {"http": httpx.get(f"http://127.0.0.1:{ports['http']}/healthz").status_code}
    reply = exchange(ports["uwsgi"], packet(nginx_vars(REQUEST_URI=b"/healthz")))
    found["uwsgi"] = int(reply.split()[1])
    reply = exchange(ports["fastcgi"], fcgi_request(fcgi_vars(REQUEST_URI=b"/healthz"), keep=False))
    found["fastcgi"] = int(split_head(stdout_of(reply))[0].split()[1])
    return found


def test_health_path_fails_from_sigterm_on_while_requests_finish(serve: ServerFactory) -> None:
    server, ports = start(
        serve, "asgi_apps:slow", "--health-path", "/healthz", "--shutdown-delay", "2"
    )
    assert _health(ports) == {"http": 200, "uwsgi": 200, "fastcgi": 200}  # not the slow app
    slow: dict[str, Any] = {}

    def in_flight() -> None:
        reply = httpx.get(f"http://127.0.0.1:{ports['http']}/?2", timeout=20)
        slow.update(status=reply.status_code, text=reply.text)

    thread = threading.Thread(target=in_flight)
    thread.start()
    server.signal(signal.SIGTERM)
    assert server.wait_for_log("--shutdown-delay")
    # still accepting during the delay: the check fails, so a balancer stops sending
    assert _health(ports) == {"http": 503, "uwsgi": 503, "fastcgi": 503}
    # ... while ordinary requests are still served
    assert httpx.get(f"http://127.0.0.1:{ports['http']}/?0").text == "slow done"
    thread.join(30)
    assert slow == {"status": 200, "text": "slow done"}
    assert server.wait() == 0
