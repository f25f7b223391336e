"""The edge end to end: trusted proxy headers behind a real nginx, the PROXY protocol behind a real
HAProxy and from raw sockets, static files over the wire, and the hardening of request fields.

Trusted and untrusted peers on one machine: the server listens on 127.0.0.1 and trusts
127.0.0.1 (the default); a client or an nginx connecting from 127.0.0.2 or 127.0.0.3 (``bind``,
``proxy_bind``) is another host as far as the server can tell.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.conftest import ServerFactory, ServerProcess, raw_exchange
from tests.gateway_nginx import Nginx, have_nginx

pytestmark = pytest.mark.timeout(120)
HAPROXY = shutil.which("haproxy")


def get_from(port: int, path: str, source: str, headers: dict[str, str] | None = None) -> Any:
    """A GET from the loopback address ``source`` (another "host" to the server)."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(f"http://127.0.0.1:{port}{path}", headers=headers or {}).json()


def header(scope: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in scope["headers"] if key == name]


# --- proxy headers ------------------------------------------------------------------------------


def test_trusted_proxy_headers_reach_the_asgi_scope(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--access-log")
    forged = {
        "X-Forwarded-For": "6.6.6.6, 203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "shop.example",
        "X-Forwarded-Port": "8443",
        "X-Forwarded-Prefix": "/store",
    }
    scope = get_from(server.port, "/cart", "127.0.0.1", forged)
    # walked from the right: 203.0.113.7 is the first hop the trusted peer did not vouch for
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"
    assert header(scope, "host") == ["shop.example:8443"]
    assert scope["server"][1] == 8443
    assert scope["root_path"] == "/store" and scope["path"] == "/store/cart"
    assert server.wait_for_log("203.0.113.7:0 - - [")  # the access log shows the real client
    # from a peer that is not trusted, the same headers reach the app but are not applied
    untrusted = get_from(server.port, "/cart", "127.0.0.2", forged)
    assert untrusted["client"][0] == "127.0.0.2" and untrusted["scheme"] == "http"
    assert header(untrusted, "x-forwarded-for") == ["6.6.6.6, 203.0.113.7"]
    assert untrusted["root_path"] == ""


def test_forwarded_family_and_switching_proxy_headers_off(serve: ServerFactory) -> None:
    rfc = serve("asgi_apps:echo", "--proxy-headers-source", "forwarded")
    headers = {
        "Forwarded": 'for="[2001:db8::7]:4711";proto=https;host=a.example, for=127.0.0.1',
        "X-Forwarded-For": "6.6.6.6",
    }
    scope = get_from(rfc.port, "/", "127.0.0.1", headers)
    assert scope["client"] == ["2001:db8::7", 4711] and scope["scheme"] == "https"
    assert header(scope, "host") == ["a.example"]  # X-Forwarded-For is the other family
    off = serve("asgi_apps:echo", "--no-proxy-headers")
    assert get_from(off.port, "/", "127.0.0.1", headers)["client"][0] == "127.0.0.1"


def test_trusted_proxy_headers_reach_the_wsgi_environ(serve: ServerFactory) -> None:
    server = serve("wsgi_apps:echo", "--forwarded-allow-ips", "127.0.0.0/8")
    environ = get_from(
        server.port,
        "/p?q=1",
        "127.0.0.2",
        {
            "X-Forwarded-For": "198.51.100.9",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "www.example",
            "X-Forwarded-Prefix": "/wsgi",
        },
    )
    assert environ["REMOTE_ADDR"] == "198.51.100.9"
    assert environ["wsgi.url_scheme"] == "https" and environ["HTTPS"] == "on"
    assert environ["HTTP_HOST"] == "www.example"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("www.example", "443")
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/wsgi", "/p")


def test_malformed_proxy_headers_are_ignored_not_refused(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo")
    scope = get_from(
        server.port,
        "/",
        "127.0.0.1",
        {"X-Forwarded-For": "not an address", "X-Forwarded-Proto": "gopher"},
    )
    # the hop that is not an address: the client is unknown, never the proxy
    assert scope["client"] is None and scope["scheme"] == "http"


@pytest.fixture
def nginx_front(tmp_path: Path, serve: ServerFactory) -> Iterator[tuple[Nginx, ServerProcess]]:
    if not have_nginx():
        pytest.skip("nginx is not installed")
    server = serve("asgi_apps:echo")
    proxy = f"proxy_pass http://127.0.0.1:{server.port}/;"
    forwarding = (
        "proxy_set_header Host $host; "
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
        "proxy_set_header X-Forwarded-Proto $scheme; "
    )
    block = f"""
    server {{
        LISTEN;
        server_name example.test;
        location /app/ {{ {proxy} {forwarding} proxy_set_header X-Forwarded-Prefix /app;
                          proxy_bind 127.0.0.1; }}
        location /other/ {{ {proxy} {forwarding} proxy_bind 127.0.0.2; }}
    }}
"""
    front = Nginx(tmp_path, block)
    try:
        yield front, server
    finally:
        front.stop()


def test_behind_a_real_nginx(nginx_front: tuple[Nginx, ServerProcess]) -> None:
    front, _ = nginx_front
    transport = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(transport=transport, timeout=10) as client:
        url = f"http://127.0.0.1:{front.port}"
        # a client that writes its own X-Forwarded-For cannot choose its address
        trusted = client.get(url + "/app/cart?x=1", headers={"X-Forwarded-For": "6.6.6.6"}).json()
        untrusted = client.get(url + "/other/cart", headers={"X-Forwarded-For": "6.6.6.6"}).json()
    assert trusted["client"] == ["127.0.0.3", 0]
    assert trusted["root_path"] == "/app" and trusted["path"] == "/app/cart"
    assert trusted["query_string"] == "x=1"
    assert header(trusted, "host") == ["127.0.0.1"]
    # nginx binds 127.0.0.2 for this location: not a trusted proxy, its headers are not applied
    assert untrusted["client"][0] == "127.0.0.2"
    assert header(untrusted, "x-forwarded-for") == ["6.6.6.6, 127.0.0.3"]


# --- the PROXY protocol -------------------------------------------------------------------------


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(client: tuple[str, int], server: tuple[str, int]) -> bytes:
    addresses = socket.inet_aton(client[0]) + socket.inet_aton(server[0])
    addresses += client[1].to_bytes(2, "big") + server[1].to_bytes(2, "big")
    return V2_SIGNATURE + b"\x21\x11" + len(addresses).to_bytes(2, "big") + addresses


def test_proxy_protocol_v1_and_v2_from_raw_sockets(serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", "--proxy-protocol")
    request = b"GET /who HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    for head in (
        b"PROXY TCP4 192.0.2.1 192.0.2.2 4000 80\r\n",
        proxy_v2(("192.0.2.1", 4000), ("192.0.2.2", 80)),
    ):
        reply = raw_exchange(server.port, head + request)
        scope = json.loads(reply.partition(b"\r\n\r\n")[2])
        assert scope["client"] == ["192.0.2.1", 4000] and scope["server"] == ["192.0.2.2", 80]
    # no header, a bad one, or one from a peer that is not trusted: closed, nothing answered
    assert raw_exchange(server.port, request) == b""
    assert raw_exchange(server.port, b"PROXY TCP4 999.0.2.1 192.0.2.2 1 2\r\n" + request) == b""
    with socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.2", 0)) as s:
        s.settimeout(5)
        s.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 4000 80\r\n" + request)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass  # dropped at once, before our bytes were read
    assert server.wait_for_log("PROXY header from an untrusted peer refused")
    assert server.log.count("PROXY header from an untrusted peer refused") == 1
    assert "Traceback" not in server.log


def test_proxy_protocol_header_timeout_and_tls_after_it(
    serve: ServerFactory, tmp_path: Path
) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    server = serve(
        "asgi_apps:echo",
        "--proxy-protocol",
        "--header-timeout",
        "1",
        "--certfile",
        str(cert),
        "--keyfile",
        str(key),
    )
    # silence: closed after the header timeout, well before our own
    assert raw_exchange(server.port, b"", timeout=10, closed=True) == b""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"PROXY TCP4 198.51.100.4 198.51.100.5 5555 443\r\n")
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
    scope = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert scope["client"] == ["198.51.100.4", 5555] and scope["scheme"] == "https"


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_behind_a_real_haproxy_with_send_proxy_v2(serve: ServerFactory, tmp_path: Path) -> None:
    assert HAPROXY is not None
    server = serve("asgi_apps:echo", "--proxy-protocol")
    front = socket.create_server(("127.0.0.1", 0))
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 10s\n"
        "    timeout server 10s\n"
        f"frontend f\n    bind fd@{front.fileno()}\n    default_backend b\n"
        f"backend b\n    server portico 127.0.0.1:{server.port} send-proxy-v2\n"
    )
    proc = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(config)],
        pass_fds=(front.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = front.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.3", 0)) as s:
            s.settimeout(10)
            local = s.getsockname()
            s.sendall(b"GET /via HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
    finally:
        proc.terminate()
        proc.wait(10)
        front.close()
    scope = json.loads(reply.partition(b"\r\n\r\n")[2])
    # the client as HAProxy saw it, port included: not HAProxy's own address
    assert scope["client"] == [local[0], local[1]]
    assert scope["server"] == ["127.0.0.1", port]


# --- static files -------------------------------------------------------------------------------


@pytest.fixture
def public(tmp_path: Path) -> Path:
    root = tmp_path / "public"
    (root / "css").mkdir(parents=True)
    (root / "app.js").write_bytes(b"console.log('hi');\n" * 100)
    (root / "app.js.gz").write_bytes(gzip.compress((root / "app.js").read_bytes()))
    (root / "css" / "site.3f2a9c.css").write_text("body{}\n")
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / ".env").write_text("SECRET=1\n")
    (tmp_path / "outside.txt").write_text("outside\n")
    os.symlink("../outside.txt", root / "escape.txt")
    return root


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--path-as-is", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


@pytest.mark.parametrize("app", ["asgi_apps:echo", "wsgi_apps:echo"])
def test_static_files_over_the_wire(serve: ServerFactory, public: Path, app: str) -> None:
    server = serve(app, "--static", f"/static={public}")
    url = server.url + "/static"
    with httpx.Client(timeout=10) as client:
        first = client.get(url + "/app.js")
        assert first.status_code == 200 and first.content == (public / "app.js").read_bytes()
        assert first.headers["content-type"].startswith("text/javascript")
        assert first.headers["cache-control"] == "no-cache"
        etag = first.headers["etag"]
        assert client.get(url + "/app.js", headers={"If-None-Match": etag}).status_code == 304
        # a range of the identity representation (with gzip accepted, of the .gz sibling's)
        plain = {"Accept-Encoding": "identity"}
        ranged = client.get(url + "/app.js", headers={"Range": "bytes=0-6", **plain})
        assert ranged.status_code == 206 and ranged.content == b"console"
        assert ranged.headers["content-range"].startswith("bytes 0-6/")
        beyond = client.get(url + "/app.js", headers={"Range": "bytes=99999-"})
        assert beyond.status_code == 416
        gz = client.get(url + "/app.js", headers={"Accept-Encoding": "gzip"})
        assert gz.headers["content-encoding"] == "gzip" and "accept-encoding" in gz.headers["vary"]
        assert gz.headers["content-length"] == str((public / "app.js.gz").stat().st_size)
        assert gz.content == (public / "app.js").read_bytes()  # httpx decoded the sibling
        assert client.head(url + "/app.js").content == b""
        immutable = client.get(url + "/css/site.3f2a9c.css")
        assert "immutable" in immutable.headers["cache-control"]
        assert client.get(url + "/").text == "<h1>home</h1>\n"
        for hidden in ("/.env", "/escape.txt", "/missing", "/css/"):
            assert client.get(url + hidden).status_code == 404, hidden
        assert client.post(url + "/app.js").status_code == 405
        # paths outside /static still reach the app
        assert client.get(server.url + "/elsewhere").status_code == 200
    for attack in ("/static/../../etc/passwd", "/static/%2e%2e/outside.txt", "/static/..%2fx"):
        result = curl("-o", "/dev/null", "-w", "%{http_code}", server.url + attack)
        assert result.stdout in ("400", "404"), (attack, result.stdout)
    assert "SECRET" not in server.log


def test_static_files_over_tls(serve: ServerFactory, public: Path, tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    big = public / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    server = serve(
        "asgi_apps:echo", "--static", f"/s={public}", "--certfile", str(cert), "--keyfile", str(key)
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with httpx.Client(verify=context, timeout=20) as client:
        response = client.get(f"https://127.0.0.1:{server.port}/s/big.bin")
    assert response.content == big.read_bytes()


def test_static_files_without_sendfile(serve: ServerFactory, public: Path) -> None:
    """``--no-sendfile`` sends files by reads and writes (for file systems where sendfile
    misbehaves); what arrives is the same, whole and ranged."""
    big = public / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    server = serve("asgi_apps:echo", "--static", f"/s={public}", "--no-sendfile")
    with httpx.Client(timeout=20) as client:
        whole = client.get(f"{server.url}/s/big.bin")
        part = client.get(f"{server.url}/s/big.bin", headers={"range": "bytes=1000-2999999"})
    assert whole.content == big.read_bytes()
    assert part.status_code == 206
    assert part.content == big.read_bytes()[1000:3000000]


# --- hardening ----------------------------------------------------------------------------------


def test_underscored_names_are_dropped_and_a_second_content_type_refused(
    serve: ServerFactory,
) -> None:
    server = serve("asgi_apps:echo")
    reply = raw_exchange(
        server.port,
        b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n",
    )
    scope = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert not [name for name, _ in scope["headers"] if "_" in name]
    reply = raw_exchange(
        server.port,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"at most one Content-Type" in reply
