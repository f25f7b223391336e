"""portico.testing and ``portico call``: an app called in process through the server's own code,
for Flask, FastAPI and Django, mount tables, the server's response checks and the exit codes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from portico.config import Config, resolve
from portico.errors import LifespanError
from portico.testing import AppFailed, Client, call, describe_exchange, request_bytes
from tests.apps import asgi_apps, fastapi_app, flask_app, wsgi_apps

APPS = Path(__file__).parent / "apps"


def kinds(response: Any) -> list[str]:
    return [kind for kind, _ in response.exchange]


# --- the Python API -----------------------------------------------------------------------------


def test_flask_through_the_wsgi_gateway_with_its_exchange() -> None:
    with Client(flask_app.app, record=True) as client:
        hello = client.get("/hello/ann", headers={"User-Agent": "tests"})
        assert hello.status == 200 and hello.reason == "OK"
        assert hello.json()["url"] == "http://localhost/hello/ann"
        assert hello.json()["remote"] == "127.0.0.1" and hello.json()["agent"] == "tests"
        assert hello.header("content-type") == "application/json"
        assert hello.header("server") == "portico" and hello.header("date")
        assert hello.head.startswith(b"HTTP/1.1 200 OK\r\n") and hello.head.endswith(b"\r\n\r\n")
        environ = dict(hello.exchange)["environ"]
        assert environ["PATH_INFO"] == "/hello/ann" and environ["SERVER_PORT"] == "80"
        assert environ["HTTP_USER_AGENT"] == "tests" and environ["wsgi.url_scheme"] == "http"
        assert kinds(hello)[:2] == ["environ", "start_response"] and "body" in kinds(hello)
        posted = client.post("/json", b'{"a": [1]}', {"Content-Type": "application/json"})
        assert posted.json() == {"got": {"a": [1]}}
        streamed = client.get("/stream?n=2")
        assert streamed.text == "piece 0\npiece 1\n"
        assert streamed.header("transfer-encoding") == "chunked"
        assert kinds(streamed).count("body") == 2 and kinds(streamed)[-1] == "close"
        head = client.request("HEAD", "/hello/x")
        assert head.status == 200 and head.body == b"" and head.header("content-length")


def test_fastapi_with_its_lifespan_and_exchange() -> None:
    with Client(fastapi_app.app, record=True) as client:
        item = client.get("/items/7")
        assert item.json() == {
            "item": 7,
            "root_path": "",
            "path": "/items/7",
            "url": "http://localhost/items/7",
            "started": "yes",  # lifespan startup ran, and its state reached the request
        }
        scope = dict(item.exchange)["scope"]
        assert scope["type"] == "http" and scope["raw_path"] == b"/items/7"
        assert scope["client"] == ("127.0.0.1", 50000) and scope["headers"] == [
            (b"host", b"localhost")
        ]
        sends = [value for kind, value in item.exchange if kind == "send"]
        assert [m["type"] for m in sends] == ["http.response.start", "http.response.body"]
        echo = client.post("/echo", b"x" * 5000)
        assert echo.json() == {"size": 5000}
        received = [value for kind, value in echo.exchange if kind == "receive"]
        assert b"".join(m["body"] for m in received) == b"x" * 5000
        text = describe_exchange(echo.exchange)
        assert text.startswith("ASGI scope:\n") and "receive() -> {'type': 'http.request'" in text


def test_django_by_name_and_a_mount_table() -> None:
    config = resolve(
        [
            "--mount",
            "/dj=tests.apps.django_app:application",
            "--mount",
            "/fast=tests.apps.fastapi_app:app",
            "--root-path",
            "/site",
        ],
        {},
        lambda path: "",
        os.getcwd(),
    ).config
    with Client(config=config) as client:
        hello = client.get("/dj/hello/bo?x=1", headers={"Host": "shop.example"})
        assert hello.status == 200
        assert hello.json()["absolute"] == "http://shop.example/site/dj/hello/bo?x=1"
        assert hello.json()["path_info"] == "/hello/bo"
        fast = client.get("/fast/items/2")
        assert fast.json()["root_path"] == "/site/fast" and fast.json()["started"] == "yes"
        assert client.get("/nowhere").status == 404  # the router's own answer
        redirect = client.get("/dj/go")
        assert redirect.status == 302 and redirect.header("location") == "/site/dj/hello/x"


def test_the_servers_response_checks_fail_the_call() -> None:
    with Client(asgi_apps.errors) as client:
        with pytest.raises(AppFailed, match=r"response header b.x-evil. has a CR") as bad:
            client.get("/bad-header")
        assert bad.value.response.status == 500  # as the network would see it
        with pytest.raises(AppFailed, match="does not match Content-Length"):
            client.get("/too-short")
        with pytest.raises(AppFailed, match="longer than its Content-Length") as long:
            client.get("/too-long")
        assert long.value.response.body == b"abc"  # what the Content-Length promised, no more
        with pytest.raises(AppFailed) as cut:
            client.get("/incomplete")
        assert not cut.value.response.complete  # the head was out: the response is cut
        assert cut.value.response.body == b"partial"
        with pytest.raises(AppFailed, match="boom before start"):
            client.get("/raise")
    with Client(wsgi_apps.inject, raise_app_errors=False) as client:
        response = client.get("/")
        assert response.status == 500 and response.failed
        assert any("header" in error for error in response.errors)
        assert b"pwned" not in response.head


def test_one_call_and_a_failing_lifespan() -> None:
    assert call(wsgi_apps.plaintext, "GET", "/").status == 200

    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(LifespanError, match="no database"), Client(broken):
        pass
    config = dataclasses.replace(Config(), lifespan="off")
    with Client(broken, config=config, raise_app_errors=False) as client:
        assert client.get("/").failed  # it never answers http: 500, and the error logged


def test_requests_are_written_as_a_client_would() -> None:
    assert request_bytes("GET", "http://a.example:81/p?q", {"X-A": "1"}) == (
        b"GET /p?q HTTP/1.1\r\nhost: a.example:81\r\nX-A: 1\r\n\r\n"
    )
    assert request_bytes("POST", "/", (), b"abc").endswith(b"content-length: 3\r\n\r\nabc")
    with pytest.raises(ValueError, match="line breaks"):
        request_bytes("GET", "/", {"X-A": "1\r\nX-B: 2"})
    with pytest.raises(ValueError, match="https"):
        request_bytes("GET", "https://a.example/")


# --- portico call -------------------------------------------------------------------------------


def portico_call(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "portico", "call", *args],
        cwd=APPS,
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_call_prints_as_curl_i_does() -> None:
    result = portico_call("flask_app:app", "/hello/zoe", "-H", "User-Agent: cli")
    assert result.returncode == 0, result.stderr
    head, body = result.stdout.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Type: application/json" in lines and b"server: portico" in lines
    assert json.loads(body)["agent"] == "cli"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("flask_app:app", "POST", "/json", "-H", "Content-Type: application/json", "-d", "[1]"),
            [
                "WSGI environ:",
                "'REQUEST_METHOD': 'POST'",
                "start_response('200 OK'",
                "body chunk b'",
            ],
        ),
        (
            ("fastapi_app:app", "/items/5"),
            [
                "ASGI scope:",
                "'path': '/items/5'",
                "send({'type': 'http.response.start', 'status': 200",
            ],
        ),
        (
            ("django_app:application", "/hello/dj"),
            ["WSGI environ:", "'PATH_INFO': '/hello/dj'", "start_response('200 OK'"],
        ),
    ],
)
def test_call_shows_the_exchange(args: tuple[str, ...], expected: list[str]) -> None:
    result = portico_call(*args, "--exchange")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    for fragment in expected:
        assert fragment in text, text


def test_call_exit_codes_data_files_and_mounts(tmp_path: Path) -> None:
    failed = portico_call("flask_app:app", "/fail")
    assert failed.returncode == 1 and failed.stdout.startswith(b"HTTP/1.1 500 ")
    assert b"flask view failed" in failed.stderr  # the traceback, on the error log
    assert portico_call("asgi_apps:errors", "/incomplete").returncode == 1
    assert portico_call("flask_app:app", "/nope").returncode == 0  # a 404 is an answer
    assert portico_call("no_such_module:app", "/").returncode == 4
    assert portico_call("--workers", "0", "flask_app:app", "/").returncode == 2
    body = tmp_path / "body.bin"
    body.write_bytes(b"\x00\x01" * 100)
    sized = portico_call("django_app:application", "PUT", "/body", "-d", f"@{body}")
    assert sized.returncode == 0 and sized.stdout.endswith(b"\r\n\r\n200")
    piped = portico_call("django_app:application", "/body", "-d", "@-", stdin=b"abc")
    assert piped.stdout.endswith(b"\r\n\r\n3")  # -d makes it a POST
    mounted = portico_call(
        "--mount", "/dj=django_app:application", "--mount", "/fast=fastapi_app:app", "/fast/items/3"
    )
    assert mounted.returncode == 0 and b'"item":3' in mounted.stdout
    assert portico_call("--help").stdout.startswith(b"usage: portico call")
