"""WSGI end to end: a real ``portico`` process serving PEP 3333 apps from ``tests/apps``."""

from __future__ import annotations

import json
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import ServerFactory, rss_kib


def test_environ_has_every_pep3333_variable(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:echo")
    response = httpx.get(
        server.url + "/caf%C3%A9/a%2Fb?q=%20x&y",
        headers=[("X-Multi", "one"), ("X-Multi", "two"), ("Content-Type", "text/x-probe")],
    )
    assert response.status_code == 200
    env = response.json()
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    # decoded bytes carried as latin-1 (PEP 3333): é is two characters here
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9/a/b"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café/a/b"
    assert env["QUERY_STRING"] == "q=%20x&y"
    assert env["RAW_URI"] == env["REQUEST_URI"] == "/caf%C3%A9/a%2Fb?q=%20x&y"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["types"]["SERVER_PORT"] == "str"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"].isdigit()
    assert env["HTTP_X_MULTI"] == "one,two"
    assert env["CONTENT_TYPE"] == "text/x-probe"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "CONTENT_LENGTH" not in env  # a GET without a body
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["types"]["wsgi.input"] == "InputStream"
    assert env["types"]["wsgi.errors"] == "ErrorStream"
    assert env["types"]["wsgi.file_wrapper"] == "type"
    assert env["thread"].startswith("portico-wsgi")


def test_server_name_from_host_and_underscored_headers_dropped(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:echo")
    raw = server.raw(
        b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded_For: 6.6.6.6\r\n"
        b"Cookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n"
    )
    env = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert env["SERVER_NAME"] == "example.com"
    assert env["SERVER_PORT"] == "80"
    assert "HTTP_X_FORWARDED_FOR" not in env  # would pose as the proxy's header
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    raw = server.raw(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n")
    env = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("[::1]", "8080")
    raw = server.raw(b"GET / HTTP/1.0\r\n\r\n")
    env = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["SERVER_PORT"] == str(server.port)  # no Host: the socket's


def test_script_name_from_root_path(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:echo", "--root-path", "/api")
    env = httpx.get(server.url + "/api/items").json()
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/api", "/items")
    env = httpx.get(server.url + "/items").json()  # a proxy that stripped the prefix
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/api", "/items")
    env = httpx.get(server.url + "/apiary").json()  # not under the prefix
    assert env["PATH_INFO"] == "/apiary"


def test_request_bodies_content_length_and_chunked(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:echo")
    env = httpx.post(server.url, content=b"a" * 300_000).json()
    assert env["body"] == "a" * 300_000
    assert env["CONTENT_LENGTH"] == "300000"

    def pieces():  # type: ignore[no-untyped-def]
        yield b"hello "
        yield b"chunked "
        yield b"world"

    env = httpx.post(server.url, content=pieces()).json()
    assert env["body"] == "hello chunked world"
    assert "CONTENT_LENGTH" not in env
    assert env["HTTP_TRANSFER_ENCODING"] == "chunked"


def test_large_upload_streams_without_growing_memory(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:upload_size")
    size = 200 * 1024 * 1024

    def body():  # type: ignore[no-untyped-def]
        piece = b"z" * (1 << 20)
        for _ in range(size >> 20):
            yield piece

    response = httpx.post(server.url, content=body(), timeout=60)
    total, reads = map(int, response.text.split())
    assert total == size
    assert reads >= size // 65536
    rss = rss_kib(server.worker_pid)
    assert rss < 100 * 1024, f"worker RSS {rss} KiB after a 200 MiB upload"


def test_streaming_generator_is_chunked(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:stream")
    raw = server.raw(b"GET /?3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"8\r\npiece 0\n\r\n8\r\npiece 1\n\r\n8\r\npiece 2\n\r\n0\r\n\r\n"
    assert httpx.get(server.url + "/?500").text == "".join(f"piece {i}\n" for i in range(500))


def test_write_callable(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:writer")
    response = httpx.get(server.url)
    assert response.text == "written twice then returned"
    assert response.headers["transfer-encoding"] == "chunked"


def test_one_shot_response_has_content_length(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:plaintext")
    raw = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 13" in head
    assert body == b"Hello, world!"


def test_head_has_no_body(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:echo")
    raw = server.raw(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: " in head
    assert body == b""


def test_file_wrapper_download_is_intact(serve: ServerFactory, tmp_path: Path) -> None:
    data = bytes(range(256)) * (64 * 1024)  # 16 MiB
    target = tmp_path / "file.bin"
    target.write_bytes(data)
    server = serve("wsgi_apps:big_file")
    response = httpx.get(server.url + "/?" + str(target), timeout=30)
    assert response.headers["content-length"] == str(len(data))
    assert response.content == data
    # without Content-Length: the file's size is sent as one
    server = serve("wsgi_apps:file_no_length")
    response = httpx.get(server.url + "/?" + str(target), timeout=30)
    assert response.headers["content-length"] == str(len(data))
    assert response.content == data
    # several on one connection, and a HEAD in between
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(server.url + "/?" + str(target)).content == data
            head = client.head(server.url + "/?" + str(target))
            assert head.content == b""
    # no file descriptor: read in blocks and chunked
    server = serve("wsgi_apps:memory_file")
    response = httpx.get(server.url + "/?" + str(len(data)), timeout=30)
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == data


def test_large_file_wrapper_download_does_not_grow_memory(
    serve: ServerFactory, tmp_path: Path
) -> None:
    """A 512 MiB file goes out with sendfile: the worker's RSS stays flat."""
    size = 512 << 20
    target = tmp_path / "large.bin"
    with open(target, "wb") as file:
        file.truncate(size)  # sparse: no disk is spent on it
    server = serve("wsgi_apps:big_file")
    assert httpx.get(server.url + "/?" + str(target), headers={"Range": "x"}).status_code == 200
    before = rss_kib(server.worker_pid)
    received = 0
    with httpx.stream("GET", server.url + "/?" + str(target), timeout=60) as response:
        for chunk in response.iter_raw(1 << 20):
            received += len(chunk)
    grown = rss_kib(server.worker_pid) - before
    assert received == size
    assert grown < 16 * 1024, f"worker grew by {grown} KiB serving a 512 MiB file"


def test_file_wrapper_to_a_slow_reader(serve: ServerFactory, tmp_path: Path) -> None:
    """os.sendfile waits for the socket; the bytes arrive intact and in order."""
    data = bytes(range(251)) * (40 * 1024)  # ~10 MB, not a multiple of any buffer
    target = tmp_path / "file.bin"
    target.write_bytes(data)
    server = serve("wsgi_apps:big_file")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        sock.sendall(f"GET /?{target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        time.sleep(0.5)  # let the server fill the socket buffers and wait
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == data


def test_close_is_called_after_success_and_on_disconnect(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:closing")
    assert httpx.get(server.url + "/?3,0,done").text == "0\n1\n2\n"
    assert server.wait_for_log("CLOSED done")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /?1000,0.02,gone HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    assert server.wait_for_log("CLOSED gone")
    assert "Exception" not in server.log  # a client leaving is not the app's error


def test_exception_before_the_response_gives_500(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:fail_before")
    response = httpx.get(server.url)
    assert response.status_code == 500
    assert response.text == "Internal Server Error\n"
    assert server.wait_for_log("boom before the head")
    assert server.log.count("Traceback") == 1
    assert httpx.get(server.url).status_code == 500  # the worker goes on


def test_exception_after_the_response_started_closes_the_connection(
    serve: ServerFactory,
) -> None:
    server = serve("wsgi_apps:fail_after")
    raw = server.raw(b"GET /?failed HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert b"first\n" in raw
    assert not raw.endswith(b"0\r\n\r\n")  # cut off, not a complete chunked body
    assert server.wait_for_log("CLOSED failed")
    assert server.log.count("Traceback") == 1


def test_exc_info_replaces_the_response_before_it_was_sent(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:exc_info_before")
    response = httpx.get(server.url)
    assert response.status_code == 503
    assert response.text == "replaced by exc_info"


def test_exc_info_after_the_head_reraises_and_aborts(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:exc_info_after")
    raw = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert b"partial\n" in raw
    assert b"never" not in raw
    assert server.wait_for_log("too late")


def test_header_injection_and_bad_status_give_500(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:inject")
    raw = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 500 ")
    assert b"pwned" not in raw
    server = serve("wsgi_apps:bad_status")
    assert httpx.get(server.url).status_code == 500
    assert server.wait_for_log("invalid WSGI status")


def test_wsgi_errors_goes_to_the_error_log(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:errors")
    assert httpx.get(server.url).text == "ok"
    assert server.wait_for_log("app says hello")
    assert server.wait_for_log("and goodbye")


def slow_calls(url: str, count: int) -> list[tuple[float, float, str]]:
    """``count`` concurrent GETs of ``wsgi_apps:slow`` at ``url``: each one's (start, end) by
    the app's own clock and the name of the thread that served it, sorted by start."""
    spans: list[tuple[float, float, str]] = []

    def call() -> None:
        response = httpx.get(url, timeout=10)
        start, end = map(float, response.text.split())
        spans.append((start, end, response.headers["x-thread"]))

    clients = [threading.Thread(target=call) for _ in range(count)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    assert len(spans) == count
    return sorted(spans)


def test_a_slow_request_does_not_block_another(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:slow", "--threads", "2")
    (_, a_end, _), (b_start, _, _) = slow_calls(server.url + "/?1", 2)
    assert b_start < a_end  # they ran at the same time (the app's own clock says so)


def test_every_thread_serves_when_the_apps_wait(serve: ServerFactory) -> None:
    # The pool wakes one thread per loop turn and lets it take job after job; apps that wait
    # (here in sleep, as on a database) must still get a thread each, all eight at once.
    server = serve("wsgi_apps:slow", "--threads", "8")
    spans = slow_calls(server.url + "/?1", 8)
    assert max(start for start, _, _ in spans) < min(end for _, end, _ in spans)  # overlapped
    assert len({thread for _, _, thread in spans}) == 8


def test_threads_bound_the_concurrency(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:slow", "--threads", "1")
    (_, a_end, _), (b_start, _, _) = slow_calls(server.url + "/?0.5", 2)
    assert b_start >= a_end  # one thread: one after the other


def test_keep_alive_and_pipelining(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:echo")
    raw = server.raw(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    envs = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        envs.append(json.loads(rest[:length]))
        raw = rest[length:]
    assert [env["PATH_INFO"] for env in envs] == ["/1", "/2", "/3"]
    assert envs[1]["body"] == "abc"


_WARNINGS_ARE_ERRORS = {"PYTHONWARNINGS": "error"}


def test_validator_finds_nothing(serve: ServerFactory) -> None:
    """wsgiref.validate checks the server's side of PEP 3333 on every call; the server runs with
    warnings as errors, so a failed check or a validator warning is a 500 and a traceback."""
    server = serve("wsgi_apps:validated_echo", "--interface", "wsgi", env=_WARNINGS_ARE_ERRORS)
    with httpx.Client() as client:
        assert client.get(server.url + "/a?b=c").status_code == 200
        assert client.post(server.url, content=b"x" * 70_000).json()["body"] == "x" * 70_000
        assert client.post(server.url, content=iter([b"ab", b"cd"])).json()["body"] == "abcd"
        assert client.head(server.url).status_code == 200
    raw = server.raw(b"GET / HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK")
    server2 = serve("wsgi_apps:validated_stream", "--interface", "wsgi", env=_WARNINGS_ARE_ERRORS)
    with httpx.Client() as client:
        response = client.post(server2.url, content=b"one\ntwo\nthree")
        assert response.text == "lines: 3\none\ntwo\nthree"
        assert client.get(server2.url).text == "lines: 0\n"
    for each in (server, server2):
        assert "Traceback" not in each.log, each.log
        assert "Warning" not in each.log, each.log


def test_lifespan_is_skipped_for_wsgi(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:echo", "--lifespan", "on")
    assert httpx.get(server.url).status_code == 200
    assert "lifespan" not in server.log.lower()


def test_sigterm_lets_a_wsgi_request_finish(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:slow")
    results: list[httpx.Response] = []
    client = threading.Thread(
        target=lambda: results.append(httpx.get(server.url + "/?1.5", timeout=10))
    )
    client.start()
    assert server.wait_for_log("slow request started")
    server.signal(signal.SIGTERM)
    client.join()
    assert server.wait() == 0
    assert results[0].status_code == 200
    assert results[0].headers["connection"] == "close"


def test_graceful_timeout_cuts_off_a_stuck_wsgi_thread(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:slow", "--graceful-timeout", "0.5")
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(httpx.get(server.url + "/?30", timeout=10).status_code)
        except httpx.HTTPError as exc:
            outcome.append(type(exc).__name__)

    client = threading.Thread(target=call)
    client.start()
    assert server.wait_for_log("slow request started")
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0  # cut off at 0.5 s, not after the thread's 30 s
    client.join()
    assert outcome and outcome[0] != 200
    assert "still running at exit" in server.log


def test_expect_100_continue_only_when_the_app_reads(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:echo")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["body"] == "hello"
    server = serve("wsgi_apps:plaintext")  # never reads the body
    raw = server.raw(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert b"100 Continue" not in raw


def test_client_leaving_mid_upload_is_not_an_app_error(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:upload_size")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 1000)
    assert server.wait_for_log("upload_size done after")  # the app saw the cut upload end
    assert httpx.post(server.url, content=b"b" * 10).text == "10 1"
    assert "Traceback" not in server.log, server.log


def test_sigterm_waits_for_an_app_whose_client_left(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:slow", "--workers", "2")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /?1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert server.wait_for_log("slow request started")
        # close with a reset: the connection is gone at once, the app still runs
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    # the request in its thread was let finish: not cut off at exit
    assert "still running at exit" not in server.log


def test_multiprocess_flag_follows_workers(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:echo", "--workers", "2")
    assert httpx.get(server.url).json()["wsgi.multiprocess"] is True


def test_slow_reader_blocks_the_app_thread_not_memory(serve: ServerFactory) -> None:
    """The app's thread waits while the client does not read: no unbounded write buffer."""
    server = serve("wsgi_apps:big_stream")
    before = rss_kib(server.worker_pid)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /?500000000 HTTP/1.1\r\nHost: x\r\n\r\n")  # 500 MB, never read
        time.sleep(2)
        grown = rss_kib(server.worker_pid) - before
    assert grown < 20 * 1024, f"worker grew by {grown} KiB for a client that does not read"
    assert httpx.get(server.url + "/?100000").content == b"x" * 100_000  # still serving


def test_the_apps_reason_phrase_goes_out_as_given(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:reason")
    assert server.raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 200 Fine\r\n"
    )
    reply = server.raw(b"GET /?OK HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
