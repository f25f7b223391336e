"""HTTP/2 end to end: a real server, the ``h2`` library as the client over real sockets.

Most tests share one server that mounts the test apps side by side (``/echo``, ``/big``, ...),
on a cleartext port that serves h2c prior knowledge and HTTP/1.1 together.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Certs, ServerFactory, ServerProcess, raw_exchange
from tests.h2client import H2Client, client_tls

_MOUNTS = {
    "/echo": "asgi_apps:echo",
    "/big": "asgi_apps:big",
    "/upload": "asgi_apps:upload_size",
    "/trailers": "asgi_apps:trailers",
    "/slow": "asgi_apps:slow",
    "/stream": "asgi_apps:stream",
    "/pathsend": "asgi_apps:pathsend",
    "/wsgi": "wsgi_apps:echo",
    "/wsgi-file": "wsgi_apps:big_file",
}
CANCEL = 0x8


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("h2") / "file.bin"
    path.write_bytes(os.urandom(1 << 20))
    return path


@pytest.fixture(scope="module")
def server(data_file: Path) -> Iterator[ServerProcess]:
    mounts = [arg for prefix, app in _MOUNTS.items() for arg in ("--mount", f"{prefix}={app}")]
    process = ServerProcess(
        [*mounts, "--bind", "127.0.0.1:0", "--log-level", "info", "--access-log"],
        env={"ASGI_TEST_FILE": str(data_file)},
    )
    yield process
    process.stop()


def _echo(body: bytes) -> dict[str, object]:
    payload: dict[str, object] = json.loads(body)
    return payload


def test_prior_knowledge_h2c_and_http11_share_the_port(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        reply = client.get("/echo/x?y=1", authority="example.com:8080")
    assert reply.status == 200
    assert reply.headers["server"] == "portico" and "date" in reply.headers
    seen = _echo(reply.body)
    assert (seen["http_version"], seen["path"], seen["query_string"]) == ("2", "/echo/x", "y=1")
    assert ["host", "example.com:8080"] in seen["headers"]  # type: ignore[operator]
    http11 = raw_exchange(
        server.port, b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert http11.startswith(b"HTTP/1.1 200 ")
    assert b'"http_version": "1.1"' in http11


def test_streams_run_side_by_side(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        started = time.monotonic()
        ids = [client.send("/slow?0.5") for _ in range(10)]
        replies = client.wait(*ids)
        elapsed = time.monotonic() - started
    assert [r.body for r in replies] == [b"slow done"] * 10
    assert elapsed < 3.0  # ten half-second requests at once, not one after another


def test_uploads_larger_than_every_window_stream_through(server: ServerProcess) -> None:
    body = os.urandom(3 << 20)  # beyond the stream (256 KiB) and connection (1 MiB) windows
    with H2Client(server.port) as client:
        reply = client.get("/upload", method="POST", body=body)
        wsgi = client.get("/wsgi", method="POST", body=b"w" * 100_000)
    assert reply.status == 200
    assert reply.body.split()[0] == b"%d" % len(body)
    assert _echo(wsgi.body)["body"] == "w" * 100_000
    assert _echo(wsgi.body)["SERVER_PROTOCOL"] == "HTTP/2"


def test_large_responses_follow_the_client_window(server: ServerProcess) -> None:
    with H2Client(server.port) as client:  # the client keeps the default 64 KiB windows
        reply = client.get("/big?5000000")
        streamed = client.get("/stream?3")
    assert reply.status == 200 and len(reply.body) == 5_000_000
    assert streamed.body == b"piece 0\npiece 1\npiece 2\n"


def test_a_slow_reader_stalls_only_its_own_stream(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        client.auto_ack = False  # stream windows stay shut; the connection's is opened wide
        client.conn.increment_flow_control_window(64 << 20)
        client.flush()
        stalled = client.send("/big?8000000")
        quick = client.send("/echo")
        (reply,) = client.wait(quick)
        assert reply.status == 200
        assert not client.replies[stalled].ended
        assert len(client.replies[stalled].body) <= 65535


def test_trailers_both_ways(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        reply = client.get("/trailers")
        sent = client.get(
            "/echo",
            method="POST",
            body=b"abc",
            trailers=[("x-sum", "1")],
            headers=[("te", "trailers")],
        )
    assert (reply.body, reply.trailers) == (b"data", {"x-checksum": "abc"})
    assert _echo(sent.body)["body"] == "abc"


def test_files_are_read_off_the_loop_and_framed(server: ServerProcess, data_file: Path) -> None:
    with H2Client(server.port) as client:
        asgi = client.get("/pathsend")
        wsgi = client.get(f"/wsgi-file?{data_file}")
        head = client.get("/pathsend", method="HEAD")
    assert asgi.body == data_file.read_bytes()
    assert wsgi.body == data_file.read_bytes()
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(1 << 20)


def test_a_failing_app_resets_only_its_stream(serve: ServerFactory) -> None:
    server = serve("asgi_apps:errors")
    with H2Client(server.port) as client:
        broken = client.get("/raise-after-start")
        before = client.get("/raise")
        after = client.get("/too-short")
    assert broken.reset == CANCEL and not broken.ended
    assert before.status == 500
    assert after.status == 500 and not client.closed  # refused before anything was sent


def test_each_stream_has_its_access_log_line(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        client.wait(*[client.send(f"/echo/logged-{i}") for i in range(3)])
    for i in range(3):
        assert server.wait_for_log(f'"GET /echo/logged-{i} HTTP/2" 200')


def test_alpn_h2_under_tls(serve: ServerFactory, certs: Certs) -> None:
    server = serve("asgi_apps:echo", "--certfile", certs.server_pem)
    with H2Client(server.port, tls=client_tls(certs.ca_pem)) as client:
        reply = client.get("/tls")
    seen = _echo(reply.body)
    assert (seen["http_version"], seen["scheme"]) == ("2", "https")
    assert "tls" in seen["extensions"]  # type: ignore[operator]
    http11 = ssl.create_default_context(cafile=certs.ca_pem)
    http11.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", server.port)) as raw,
        http11.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_body_and_header_limits_answer_on_the_stream(serve: ServerFactory) -> None:
    server = serve("asgi_apps:upload_size", "--max-body-size", "10000", "--max-header-count", "5")
    with H2Client(server.port) as client:
        declared = client.get(
            "/", method="POST", body=b"x" * 20000, headers=[("content-length", "20000")]
        )
        streamed = client.get("/", method="POST", body=b"x" * 50000)
        many = client.get("/", headers=[(f"x-{i}", "1") for i in range(10)])
        fine = client.get("/", method="POST", body=b"x" * 10000)
    assert declared.status == 413
    assert streamed.status == 413 or streamed.reset is not None
    assert many.status == 431
    assert (fine.status, fine.body.split()[0]) == (200, b"10000")
    assert not client.closed


def test_admission_is_per_stream(serve: ServerFactory) -> None:
    server = serve("asgi_apps:slow", "--max-in-flight", "2")
    with H2Client(server.port) as client:
        replies = client.wait(*[client.send("/?0.5") for _ in range(5)])
    assert sorted(r.status for r in replies) == [200, 200, 503, 503, 503]


def test_http_protocols_restricts_what_is_served(serve: ServerFactory) -> None:
    only_h1 = serve("asgi_apps:echo", "--http-protocols", "h1")
    answer = raw_exchange(only_h1.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 4")  # no HTTP/2: the preface is a bad HTTP/1.1 request
    only_h2 = serve("asgi_apps:echo", "--http-protocols", "h2")
    with H2Client(only_h2.port) as client:
        assert client.get("/").status == 200
    answer = raw_exchange(only_h2.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert b"HTTP/1.1" not in answer  # a GOAWAY: HTTP/2 only


def test_idle_connections_and_unacknowledged_settings_time_out(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--keepalive-timeout", "1", "--header-timeout", "1")
    with H2Client(server.port) as client:
        assert client.get("/").status == 200
        deadline = time.monotonic() + 5
        while not client.closed and time.monotonic() < deadline:
            client.read_once()
        assert client.closed and client.goaway is not None
        assert client.goaway.error_code == 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        # the preface and SETTINGS, but never the ACK of ours
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    goaway = received.rfind(b"\x07\x00\x00\x00\x00\x00")  # type GOAWAY, no flags, stream 0
    assert goaway > 0 and received[goaway + 10 : goaway + 14] == b"\x00\x00\x00\x04"  # TIMEOUT


def test_sigterm_lets_streams_in_flight_finish(serve: ServerFactory) -> None:
    server = serve("asgi_apps:slow")
    with H2Client(server.port) as client:
        assert client.get("/?0").status == 200  # the connection is accepted and served
        stream_id = client.send("/?1")
        server.signal(signal.SIGTERM)  # the request may still be on its way: it is served
        (reply,) = client.wait(stream_id)
        while not client.closed:
            client.read_once()
    assert (reply.status, reply.body) == (200, b"slow done")
    assert client.goaway is not None and client.goaway.error_code == 0
    assert server.wait() == 0


def test_a_trusted_proxy_says_who_the_client_is(server: ServerProcess) -> None:
    """The origin step runs for HTTP/2 streams as for HTTP/1.1 (127.0.0.1 is trusted by
    default): the app sees the client and scheme the proxy's headers name."""
    with H2Client(server.port) as client:
        reply = client.get(
            "/echo", headers=[("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")]
        )
    seen = _echo(reply.body)
    assert seen["client"][0] == "203.0.113.7"  # type: ignore[index]
    assert seen["scheme"] == "https"
