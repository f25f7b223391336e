"""Every limit and timeout crossed against a real server."""

from __future__ import annotations

import resource
import socket
import subprocess
import threading
import time

import httpx

from tests.conftest import ServerFactory, established, rss_kib, wait_until


def status_of(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    return int(raw[9:12])


def test_request_line_limit_gives_414(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--max-request-line", "100")
    ok = server.raw(b"GET /" + b"a" * 90 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(ok) == 200
    raw = server.raw(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(raw) == 414
    assert b"connection: close" in raw


def test_header_count_limit_gives_431(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--max-header-count", "10")
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(20))
    raw = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status_of(raw) == 431


def test_header_bytes_limit_gives_431(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--max-header-bytes", "1000")
    raw = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 2000 + b"\r\n\r\n")
    assert status_of(raw) == 431


def test_endless_header_line_is_cut_off(serve: ServerFactory) -> None:
    """A header line that never ends must not grow the worker's buffers without bound."""
    server = serve("asgi_apps:echo", "--max-header-bytes", "4096")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        answer = b""
        try:
            for _ in range(200):
                sock.sendall(b"v" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert answer == b"" or status_of(answer) == 431


def test_body_limit_gives_413_up_front_and_while_streaming(serve: ServerFactory) -> None:
    server = serve("asgi_apps:upload_size", "--max-body-size", "1000")
    raw = server.raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    assert status_of(raw) == 413  # from Content-Length, before any body byte was read
    ok = httpx.post(server.url, content=b"x" * 1000)
    assert ok.text == "1000 1"
    chunked = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"200\r\n"
        + b"y" * 512
        + b"\r\n"
    ) * 1
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(chunked)
        for _ in range(3):
            sock.sendall(b"200\r\n" + b"y" * 512 + b"\r\n")
            time.sleep(0.05)
        data = sock.recv(65536)  # the server lingers after the 413, so our sends did not fail
    assert status_of(data) == 413


def test_slow_head_gets_408(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--header-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        start = time.monotonic()
        data = sock.recv(65536)
        elapsed = time.monotonic() - start
        assert sock.recv(100) == b""  # and the connection is closed (before our timeout)
    assert status_of(data) == 408
    assert elapsed > 0.5  # not before the header timeout


def test_idle_keep_alive_connection_is_closed(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--keepalive-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        assert sock.recv(100) == b""  # closed quietly, no 408 on an idle connection
        assert time.monotonic() - start > 0.5  # not before the keep-alive timeout


def test_connection_limit_gives_503(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--max-connections", "2")
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
    try:
        for sock in held:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        raw = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(raw) == 503
    finally:
        for sock in held:
            sock.close()
    assert wait_until(lambda: established(server.port) == 0)
    assert httpx.get(server.url).status_code == 200  # capacity comes back


def test_requests_in_flight_limit_gives_503_with_retry_after(serve: ServerFactory) -> None:
    server = serve("asgi_apps:slow", "--max-in-flight", "1")
    results: list[int] = []
    slow = threading.Thread(
        target=lambda: results.append(httpx.get(server.url + "/?1.5", timeout=10).status_code)
    )
    slow.start()
    assert server.wait_for_log("slow request started")
    response = httpx.get(server.url + "/?0", timeout=10)
    slow.join()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert results == [200]
    assert server.log.count("too many requests in flight") == 1  # logged once, not per request


def test_slow_reader_does_not_grow_memory(serve: ServerFactory) -> None:
    """The app's send waits while the client does not read: no unbounded write buffer."""
    server = serve("asgi_apps:big")
    before = rss_kib(server.worker_pid)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /?500000000 HTTP/1.1\r\nHost: x\r\n\r\n")  # 500 MB, never read
        time.sleep(2)
        grown = rss_kib(server.worker_pid) - before
    assert grown < 20 * 1024, f"worker grew by {grown} KiB for a client that does not read"


def test_request_body_backpressure(serve: ServerFactory) -> None:
    """A large upload streams through the app without piling up in the worker."""
    server = serve("asgi_apps:upload_size")
    size = 200 * 1024 * 1024

    def body():  # type: ignore[no-untyped-def]
        piece = b"z" * (1 << 20)
        for _ in range(size >> 20):
            yield piece

    response = httpx.post(server.url, content=body(), timeout=60)
    total, messages = map(int, response.text.split())
    assert total == size
    assert messages > 10  # streamed in pieces, not read whole
    rss = rss_kib(server.worker_pid)
    assert rss < 100 * 1024, f"worker RSS {rss} KiB after a 200 MiB upload"


def test_graceful_shutdown_lets_the_request_finish(serve: ServerFactory) -> None:
    server = serve("asgi_apps:slow")
    results: list[httpx.Response] = []
    client = threading.Thread(
        target=lambda: results.append(httpx.get(server.url + "/?1.5", timeout=10))
    )
    client.start()
    assert server.wait_for_log("slow request started")
    server.signal(__import__("signal").SIGTERM)
    client.join()
    assert server.wait() == 0
    assert results[0].status_code == 200
    assert results[0].text == "slow done"
    assert results[0].headers["connection"] == "close"
    assert "Connection refused" not in server.log


def test_graceful_timeout_cuts_off_long_requests(serve: ServerFactory) -> None:
    server = serve("asgi_apps:slow", "--graceful-timeout", "0.5")
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(httpx.get(server.url + "/?30", timeout=10).status_code)
        except httpx.HTTPError as exc:
            outcome.append(type(exc).__name__)

    client = threading.Thread(target=call)
    client.start()
    assert server.wait_for_log("slow request started")
    server.signal(__import__("signal").SIGTERM)
    assert server.wait(10) == 0  # cut off at 0.5 s, not after the request's 30 s
    client.join()
    assert outcome and outcome[0] != 200
    assert "graceful timeout" in server.log


def test_idle_connections_do_not_delay_shutdown(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo")
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    try:
        server.signal(__import__("signal").SIGTERM)
        assert server.wait(10) == 0  # not held for the graceful timeout (30 s)
    finally:
        for sock in idle:
            sock.close()


def test_backlog_setting_is_accepted(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--backlog", "16")
    assert httpx.get(server.url).status_code == 200
    # for a listening socket, ss reports the backlog in the Send-Q column
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{server.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "LISTEN" and out[2] == "16", out


def test_idle_keep_alive_connections_cost_a_few_kib(serve: ServerFactory) -> None:
    """DESIGN: idle keep-alive connections cost a few KiB each (measured: about 6 KiB)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    count = 800
    if soft < 2 * count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * count), hard))
    server = serve("asgi_apps:echo")

    assert httpx.get(server.url).status_code == 200
    before = rss_kib(server.worker_pid)
    held = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            held.append(sock)
        for sock in held:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        per_connection = (rss_kib(server.worker_pid) - before) / count
    finally:
        for sock in held:
            sock.close()
    assert per_connection < 16, f"{per_connection:.1f} KiB per idle connection"
