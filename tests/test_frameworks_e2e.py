"""Flask and Django served by a real ``portico`` process: the frameworks WSGI exists for.

Each test runs over HTTP/1.1, h2c prior knowledge and HTTP/2 under TLS (ALPN): the apps must
answer the same whatever the protocol.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Certs, ServerFactory
from tests.h2client import PROTOCOLS, httpx_client, server_args

pytest.importorskip("flask")
pytest.importorskip("django")

FILE_DATA = bytes(range(256)) * 8192  # 2 MiB
UPLOAD = b"\x00\x01" * (10 << 20)  # 20 MiB of multipart upload, as the issue asks


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    target = tmp_path / "data.bin"
    target.write_bytes(FILE_DATA)
    return target


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_flask(serve: ServerFactory, data_file: Path, certs: Certs, protocol: str) -> None:
    server = serve(
        "flask_app:app",
        "--root-path",
        "/app",
        *server_args(protocol, certs.server_pem),
        env={"PORTICO_TEST_FILE": str(data_file)},
    )
    client, base = httpx_client(protocol, server.port, certs.ca_pem)
    with client:
        response = client.get("/app/hello/caf%C3%A9", headers={"User-Agent": "probe"})
        assert response.http_version == ("HTTP/1.1" if protocol == "h1" else "HTTP/2")
        hello = response.json()
        assert hello == {
            "name": "café",
            "url": f"{base}/app/hello/caf%C3%A9",
            "remote": "127.0.0.1",
            "agent": "probe",
        }
        uploaded = client.post(
            "/app/upload",
            data={"field": "value"},
            files={"file": ("a.bin", UPLOAD)},
            timeout=60,
        ).json()
        assert uploaded == {"field": "value", "filename": "a.bin", "size": len(UPLOAD)}
        assert client.post("/app/json", json={"a": [1, 2]}).json() == {"got": {"a": [1, 2]}}
        moved = client.get("/app/go")
        assert moved.status_code == 302
        assert moved.headers["location"].endswith("/app/hello/x")
        assert moved.cookies["session"] == "abc"
        assert client.get("/app/go", follow_redirects=True).json()["name"] == "x"
        streamed = client.get("/app/stream", params={"n": "100"})
        assert streamed.text == "".join(f"piece {i}\n" for i in range(100))
        if protocol == "h1":  # HTTP/2 frames the body itself
            assert streamed.headers["transfer-encoding"] == "chunked"
        downloaded = client.get("/app/file")
        assert downloaded.content == FILE_DATA
        assert downloaded.headers["content-length"] == str(len(FILE_DATA))
        assert client.head("/app/file").content == b""
        assert client.get("/app/fail").status_code == 500
        assert client.get("/app/missing").status_code == 404
    assert server.wait_for_log("flask view failed")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_django(serve: ServerFactory, data_file: Path, certs: Certs, protocol: str) -> None:
    server = serve(
        "django_app:application",
        "--root-path",
        "/dj",
        *server_args(protocol, certs.server_pem),
        env={"PORTICO_TEST_FILE": str(data_file)},
    )
    client, base = httpx_client(protocol, server.port, certs.ca_pem)
    scheme = base.split(":")[0]
    with client:
        hello = client.get(
            "/dj/hello/caf%C3%A9?x=1&y=%C3%A9",
            headers={"Host": "example.com:8080", "Cookie": "a=1; b=2"},
        ).json()
        assert hello == {
            "name": "café",
            "path": "/dj/hello/café",
            "path_info": "/hello/café",
            "host": "example.com:8080",
            "absolute": f"{scheme}://example.com:8080/dj/hello/caf%C3%A9?x=1&y=%C3%A9",
            "query": {"x": "1", "y": "é"},
            "cookies": {"a": "1", "b": "2"},
        }
        uploaded = client.post(
            "/dj/upload",
            data={"field": "value"},
            files={"file": ("a.bin", UPLOAD)},
            timeout=60,
        ).json()
        assert uploaded == {"field": "value", "filename": "a.bin", "size": len(UPLOAD)}

        moved = client.get("/dj/go")
        assert moved.status_code == 302
        assert moved.headers["location"] == "/dj/hello/x"  # the prefix comes from SCRIPT_NAME
        assert moved.cookies["session"] == "abc"
        assert client.get("/dj/go", follow_redirects=True).json()["path"] == "/dj/hello/x"

        # (Django reads CONTENT_LENGTH bytes and ignores wsgi.input_terminated: a chunked
        # upload reaches a Django view as an empty body, under any server)
        assert client.post("/dj/body", content=b"x" * 1_000_000).text == "1000000"
        streamed = client.get("/dj/stream", params={"n": "50"})
        assert streamed.text == "".join(f"piece {i}\n" for i in range(50))
        downloaded = client.get("/dj/file")
        assert downloaded.content == FILE_DATA
        assert client.get("/dj/fail").status_code == 500
        assert client.get("/dj/missing").status_code == 404
