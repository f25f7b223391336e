"""End to end: a real ``portico`` process, real sockets, httpx and raw clients."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory, ServerProcess, raw_exchange


def get_json(url: str, **kwargs: object) -> dict[str, object]:
    response = httpx.get(url, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_demo_app_shows_the_request_escaped(serve: ServerFactory) -> None:
    server = serve()
    response = httpx.get(
        server.url + "/hello?x=1", headers={"X-Probe": "<script>alert(1)</script>"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert "<script>alert" not in response.text
    assert "/hello" in response.text
    assert response.headers["server"] == "portico"
    assert "date" in response.headers


def test_scope_is_what_the_client_sent(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo")
    with httpx.Client() as client:
        response = client.get(
            server.url + "/caf%C3%A9/a%2Fb?q=%20x&y",
            headers=[("X-Multi", "one"), ("X-Multi", "two"), ("User-Agent", "probe")],
        )
    echo = response.json()
    assert echo["method"] == "GET"
    assert echo["path"] == "/café/a/b"
    assert echo["raw_path"] == "/caf%C3%A9/a%2Fb"
    assert echo["query_string"] == "q=%20x&y"
    assert echo["http_version"] == "1.1"
    assert echo["scheme"] == "http"
    assert echo["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert ["x-multi", "one"] in echo["headers"] and ["x-multi", "two"] in echo["headers"]
    names = [name for name, _ in echo["headers"]]
    assert names.index("x-multi") < names.index("user-agent")  # order kept, names lower-cased
    assert echo["client"][0] == "127.0.0.1"
    assert echo["server"] == ["127.0.0.1", server.port]
    assert "http.response.trailers" in echo["extensions"]
    assert "http.response.pathsend" in echo["extensions"]


def test_root_path_setting(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--root-path", "/api")
    echo = get_json(server.url + "/items")
    assert echo["root_path"] == "/api"
    assert echo["path"] == "/api/items"


def test_request_bodies_content_length_and_chunked(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo")
    response = httpx.post(server.url + "/", content=b"a" * 100_000)
    assert response.json()["body"] == "a" * 100_000

    def pieces():  # type: ignore[no-untyped-def]
        yield b"hello "
        yield b"chunked "
        yield b"world"

    response = httpx.post(server.url + "/", content=pieces())
    echo = response.json()
    assert echo["body"] == "hello chunked world"
    assert ["transfer-encoding", "chunked"] in echo["headers"]


def test_chunked_request_trailers_reach_the_stream(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo")
    raw = server.raw(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["body"] == "hello"


def test_streaming_response_is_chunked(serve: ServerFactory) -> None:
    server = serve("asgi_apps:stream")
    raw = server.raw(b"GET /?3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"8\r\npiece 0\n\r\n8\r\npiece 1\n\r\n8\r\npiece 2\n\r\n0\r\n\r\n"
    response = httpx.get(server.url + "/?50")
    assert response.text == "".join(f"piece {i}\n" for i in range(50))


def test_streaming_response_on_http10_is_close_delimited(serve: ServerFactory) -> None:
    server = serve("asgi_apps:stream")
    raw = server.raw(b"GET /?2 HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"piece 0\npiece 1\n"


def test_large_response_arrives_intact(serve: ServerFactory) -> None:
    server = serve("asgi_apps:big")
    response = httpx.get(server.url + "/?20000000")
    assert len(response.content) == 20_000_000
    assert response.headers["content-length"] == "20000000"


def test_response_trailers(serve: ServerFactory) -> None:
    server = serve("asgi_apps:trailers")
    raw = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"4\r\ndata\r\n0\r\nx-checksum: abc\r\n\r\n"


def test_pathsend(serve: ServerFactory, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096
    target = tmp_path / "file.bin"
    target.write_bytes(data)
    server = serve("asgi_apps:pathsend", env={"ASGI_TEST_FILE": str(target)})
    response = httpx.get(server.url)
    assert response.content == data


def test_pathsend_framing_and_failures(serve: ServerFactory, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096 + b"tail"
    target = tmp_path / "file.bin"
    target.write_bytes(data)
    server = serve("asgi_apps:pathsend_variants", env={"ASGI_TEST_FILE": str(target)})
    with httpx.Client() as client:
        chunked = client.get(server.url + "/?chunked")
        assert chunked.headers["transfer-encoding"] == "chunked"
        assert chunked.content == data
        # the connection is still good after a sendfile'd, chunked body
        assert client.get(server.url + "/?chunked").content == data
        head = client.head(server.url + "/?chunked")
        assert head.status_code == 200 and head.content == b""
        # a file that cannot be opened is a clean 500: nothing was sent yet
        assert client.get(server.url + "/?missing").status_code == 500
    # a Content-Length the file cannot fill: the head is out, so the connection is cut
    raw = server.raw(b"GET /?lie HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and len(body) < len(data) + 10
    assert server.wait_for_log("does not match the Content-Length")


def test_pathsend_closes_every_file_it_opens(serve: ServerFactory, tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"x" * (4 << 20))
    server = serve("asgi_apps:pathsend_variants", env={"ASGI_TEST_FILE": str(target)})
    fds = f"/proc/{server.worker_pid}/fd"
    with httpx.Client() as client:
        client.get(server.url + "/?chunked")
        before = len(os.listdir(fds))
        for variant in ("chunked", "missing", "x") * 5:
            client.get(server.url + "/?" + variant)
    for _ in range(5):  # clients that leave in the middle of the file, with a reset
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            sock.sendall(b"GET /?chunked HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
    for _ in range(5):  # ... and with a FIN: all they had was read, then the reset comes later
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            sock.sendall(b"GET /?chunked HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while sock.recv(65536):
                    pass
    # a client gone behind a closed window is only found when TCP's persist timer probes it
    # (exponential backoff from 200 ms), so this can take seconds
    deadline = time.monotonic() + 40
    while len(os.listdir(fds)) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(os.listdir(fds)) <= before
    # the missing file is the app's error, reported once each; the clients leaving are not
    assert server.log.count("Traceback") == server.log.count("FileNotFoundError") == 5


def test_keep_alive_reuses_the_connection(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo")
    with httpx.Client() as client:
        ports = {tuple(client.get(server.url + f"/{i}").json()["client"]) for i in range(5)}
    assert len(ports) == 1


def split_responses(raw: bytes) -> list[tuple[bytes, bytes]]:
    """Split a stream of Content-Length framed responses into (head, body) pairs."""
    responses = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        responses.append((head, rest[:length]))
        raw = rest[length:]
    return responses


def test_pipelined_requests_answered_in_order(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo")
    requests = (
        b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(20))
        + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    responses = split_responses(server.raw(requests))
    paths = [json.loads(body)["path"] for _, body in responses]
    assert paths == [f"/{i}" for i in range(20)] + ["/last"]


def test_connection_close_and_http10(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo")
    raw = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
    assert b"connection: close" in raw.lower()
    # HTTP/1.0 without keep-alive: the server closes after the response
    raw = server.raw(b"GET / HTTP/1.0\r\n\r\n", timeout=5)
    assert raw.startswith(b"HTTP/1.1 200 OK")
    # HTTP/1.0 with keep-alive: two requests on one connection
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            data = sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200 OK")
            assert b"connection: keep-alive" in data.lower()


def test_head_has_no_body(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo")
    raw = server.raw(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body == b""
    assert b"content-length: " in head


def test_expect_100_continue_only_when_the_body_is_read(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        response = sock.recv(65536)
        assert response.startswith(b"HTTP/1.1 200 OK")
        assert b'"body": "hello"' in response
    rejecting = serve("asgi_apps:early_reject")
    with socket.create_connection(("127.0.0.1", rejecting.port), timeout=5) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        response = sock.recv(65536)
        assert response.startswith(b"HTTP/1.1 413 ")  # no 100 Continue was sent first
        assert b"connection: close" in response.lower()  # the unread body cannot be skipped


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/raise", 500),
        ("/no-response", 500),
        ("/bad-header", 500),
        ("/out-of-order", 500),
        ("/too-short", 500),
    ],
)
def test_app_errors_before_the_response_give_500(
    serve: ServerFactory, path: str, status: int
) -> None:
    server = serve("asgi_apps:errors")
    raw = server.raw(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
    assert raw.startswith(b"HTTP/1.1 %d " % status)
    assert b"pwned" not in raw  # header injection never reaches the wire
    assert server.wait_for_log("ERROR")
    server.barrier()  # every line of that request is in
    errors = [line for line in server.lines if " ERROR " in line]
    assert len(errors) == 1, errors  # logged once


def test_overlong_streamed_body_is_cut_at_content_length(serve: ServerFactory) -> None:
    server = serve("asgi_apps:errors")
    raw = server.raw(b"GET /too-long HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10, closed=True)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-length: 3" in head
    assert body == b"abc"  # what was declared, and not a byte more


@pytest.mark.parametrize("path", ["/raise-after-start", "/incomplete"])
def test_app_errors_after_the_response_started_close_the_connection(
    serve: ServerFactory, path: str
) -> None:
    server = serve("asgi_apps:errors")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(server.url + path)
    # the worker survives and serves the next request
    assert httpx.get(server.url + "/raise").status_code == 500


def test_http_disconnect_reaches_a_waiting_app(serve: ServerFactory, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    server = serve("asgi_apps:disconnect_probe", env={"ASGI_TEST_FILE": str(marker)})
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert server.wait_for_log("disconnect_probe waiting")  # the app has the request
    deadline = time.monotonic() + 5
    # the app creates the file, then writes: wait for the content, not for the file
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "http.disconnect"


def test_asgi2_app(serve: ServerFactory) -> None:
    server = serve("asgi_apps:asgi2")
    assert httpx.get(server.url + "/x").text == "asgi2 /x"


def test_unix_socket(serve: ServerFactory, tmp_path: Path) -> None:
    path = tmp_path / "portico.sock"
    server = ServerProcess(["asgi_apps:echo", "--bind", f"unix:{path}"], ready=False)
    try:
        assert server.wait_for_log(f"unix:{path}")
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport) as client:
            echo = client.get("http://portico/sock").json()
        assert echo["path"] == "/sock"
        assert echo["client"] is None
    finally:
        assert server.stop() == 0
    assert not path.exists()  # removed on shutdown


def test_raw_corpus_helper_is_usable(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo")
    assert raw_exchange(server.port, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
