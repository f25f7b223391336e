"""TLS end to end: real server processes, certificates made here with trustme (never committed),
and real clients: httpx, curl, ``openssl s_client``, the websockets client, wrk, raw sockets."""

from __future__ import annotations

import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trustme
from websockets.sync.client import connect as ws_connect

from tests.conftest import (
    APPS,
    ServerFactory,
    ServerProcess,
    established,
    raw_exchange,
    wait_until,
)
from tests.wrk import Load

pytestmark = pytest.mark.timeout(120)


class Certs:
    """A throwaway CA and files of server and client certificates in a temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = trustme.CA(organization_name="Portico Test CA")
        self.ca_file = folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.cert, self.key = self.server("server")

    def server(self, name: str, common_name: str = "portico test") -> tuple[Path, Path]:
        leaf = self.ca.issue_cert("localhost", "127.0.0.1", common_name=common_name)
        cert, key = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return cert, key

    def client(self, name: str = "alice") -> tuple[Path, Path]:
        leaf = self.ca.issue_cert(
            f"{name}@example.com",
            common_name=name,
            organization_name="Example, Inc.",
            organization_unit_name="QA+Ops",
        )
        cert, key = self.folder / f"client-{name}.pem", self.folder / f"client-{name}.key"
        cert.write_bytes(leaf.cert_chain_pems[0].bytes())
        key.write_bytes(leaf.private_key_pem.bytes())
        return cert, key

    def context(self, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if client is not None:
            context.load_cert_chain(str(client[0]), str(client[1]))
        return context

    def flags(self) -> list[str]:
        return ["--certfile", str(self.cert), "--keyfile", str(self.key)]


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


def https(server: ServerProcess, path: str = "/") -> str:
    return f"https://127.0.0.1:{server.port}{path}"


def peer_certificate(port: int, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        cert = tls.getpeercert(binary_form=True)
        assert cert is not None
        return cert


def s_client(port: int, certs: Certs, *extra: str) -> str:
    result = subprocess.run(
        [
            *("openssl", "s_client", "-connect", f"127.0.0.1:{port}"),
            *("-servername", "localhost", "-CAfile", str(certs.ca_file), *extra),
        ],
        input=b"",
        capture_output=True,
        timeout=15,
        check=False,
    )
    return (result.stdout + result.stderr).decode(errors="replace")


# --- serving HTTPS ------------------------------------------------------------------------------


def test_httpx_gets_https_and_the_scope_tells_the_app(certs: Certs, serve: ServerFactory) -> None:
    server = serve("asgi_apps:tls_info", *certs.flags())
    assert f"on https://127.0.0.1:{server.port}" in server.log
    with httpx.Client(verify=certs.context()) as client:
        response = client.get(https(server))
    assert response.status_code == 200
    info = response.json()
    assert info["scheme"] == "https"
    tls = info["tls"]
    assert tls["server_cert"] == ssl.DER_cert_to_PEM_cert(
        ssl.PEM_cert_to_DER_cert(certs.cert.read_text())
    )
    assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304  # TLS 1.3 with a modern client
    # a TLS 1.3 suite number (RFC 8446 §B.4)
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)


def test_curl_keeps_the_connection_alive_over_tls(certs: Certs, serve: ServerFactory) -> None:
    server = serve("asgi_apps:echo", *certs.flags())
    url = https(server)
    result = subprocess.run(
        ["curl", "-sS", "--cacert", str(certs.ca_file), url, url, "-w", "%{num_connects}\\n"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    bodies = result.stdout.strip().splitlines()
    assert json.loads(bodies[0][: bodies[0].rindex("}") + 1])["scheme"] == "https"
    # curl reused the first connection for the second request
    assert bodies[-1].endswith("0")


def test_alpn_chooses_http11_and_a_client_without_alpn_gets_it_too(
    certs: Certs, serve: ServerFactory
) -> None:
    server = serve("asgi_apps:echo", *certs.flags())
    # h2 is preferred when the client offers it (HTTP/2 tests: tests/test_http2_*.py) ...
    assert "ALPN protocol: h2" in s_client(server.port, certs, "-alpn", "h2,http/1.1")
    assert "ALPN protocol: http/1.1" in s_client(server.port, certs, "-alpn", "http/1.1")
    # ... and not offered when only HTTP/1.1 is served
    only_h1 = serve("asgi_apps:echo", *certs.flags(), "--http-protocols", "h1")
    assert "ALPN protocol: http/1.1" in s_client(only_h1.port, certs, "-alpn", "h2,http/1.1")
    out = s_client(server.port, certs)
    assert "No ALPN negotiated" in out and "Verify return code: 0 (ok)" in out
    context = certs.context()
    context.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"


def test_tls_min_version(certs: Certs, serve: ServerFactory) -> None:
    default = serve("asgi_apps:tls_info", *certs.flags())
    assert re.search(r"New, TLSv1\.2, Cipher is [A-Z]", s_client(default.port, certs, "-tls1_2"))
    context = certs.context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=context) as client:
        assert client.get(https(default)).json()["tls"]["tls_version"] == 0x0303
    strict = serve("asgi_apps:tls_info", *certs.flags(), "--tls-min-version", "1.3")
    assert "Cipher is (NONE)" in s_client(strict.port, certs, "-tls1_2")
    with pytest.raises(httpx.ConnectError), httpx.Client(verify=context) as client:
        client.get(https(strict))


def test_keyfile_inside_certfile_and_a_unix_socket(certs: Certs, serve: ServerFactory) -> None:
    combined = certs.folder / "combined.pem"
    combined.write_bytes(certs.cert.read_bytes() + certs.key.read_bytes())
    path = certs.folder / "tls.sock"
    server = serve(
        "asgi_apps:tls_info", "--certfile", str(combined), "--bind", f"unix:{path}", ready=False
    )
    server.wait_ready()
    assert f"unix:{path} (TLS)" in server.log
    transport = httpx.HTTPTransport(uds=str(path), verify=certs.context())
    with httpx.Client(transport=transport) as client:
        assert client.get("https://localhost/").json()["scheme"] == "https"


def test_insecure_bind_serves_plain_http_beside_tls(certs: Certs, serve: ServerFactory) -> None:
    # another loopback address: the same spec twice would be ambiguous (and is refused)
    server = serve("asgi_apps:tls_info", *certs.flags(), "--insecure-bind", "127.0.0.2:0")
    assert wait_until(lambda: "on http://127.0.0.2:" in server.log), server.log
    plain = int(re.findall(r"on http://127\.0\.0\.2:(\d+)", server.log)[0])
    secure = int(re.findall(r"on https://127\.0\.0\.1:(\d+)", server.log)[0])
    assert httpx.get(f"http://127.0.0.2:{plain}/").json() == {"scheme": "http", "tls": None}
    with httpx.Client(verify=certs.context()) as client:
        assert client.get(f"https://127.0.0.1:{secure}/").json()["scheme"] == "https"


# --- mutual TLS ---------------------------------------------------------------------------------


def openssl_subject(cert: Path) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "RFC2253"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().removeprefix("subject=")


def test_required_client_certificate(certs: Certs, serve: ServerFactory) -> None:
    server = serve(
        "asgi_apps:tls_info",
        *certs.flags(),
        "--cert-reqs",
        "required",
        "--ca-certs",
        str(certs.ca_file),
    )
    client_cert = certs.client()
    with httpx.Client(verify=certs.context(client_cert)) as client:
        tls = client.get(https(server)).json()["tls"]
    # RFC 4514, as OpenSSL itself prints the subject (the comma and plus escaped)
    assert tls["client_cert_name"] == openssl_subject(client_cert[0])
    assert tls["client_cert_name"] == r"CN=alice,OU=QA\+Ops,O=Example\, Inc."
    assert tls["client_cert_chain"][0] == ssl.DER_cert_to_PEM_cert(
        ssl.PEM_cert_to_DER_cert(client_cert[0].read_text())
    )
    assert tls["client_cert_error"] is None
    # without a certificate the handshake fails; curl says so, the worker logs no traceback
    result = subprocess.run(
        ["curl", "-sS", "--cacert", str(certs.ca_file), https(server)],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert result.returncode != 0
    with httpx.Client(verify=certs.context(client_cert)) as client:
        assert client.get(https(server)).status_code == 200  # the worker is fine
    assert "Traceback" not in server.log


def test_optional_client_certificate_and_wsgi(certs: Certs, serve: ServerFactory) -> None:
    server = serve(
        "wsgi_apps:echo",
        *certs.flags(),
        "--cert-reqs",
        "optional",
        "--ca-certs",
        str(certs.ca_file),
    )
    with httpx.Client(verify=certs.context()) as client:
        anonymous = client.get(https(server)).json()
    assert anonymous["wsgi.url_scheme"] == "https" and anonymous["HTTPS"] == "on"
    assert "SSL_CLIENT_CERT" not in anonymous
    client_cert = certs.client("bob")
    with httpx.Client(verify=certs.context(client_cert)) as client:
        known = client.get(https(server)).json()
    assert known["SSL_CLIENT_S_DN"] == openssl_subject(client_cert[0])
    assert known["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert known["SSL_CLIENT_CERT"].startswith("-----BEGIN CERTIFICATE-----")


def test_a_client_certificate_from_another_ca_is_refused(
    certs: Certs, serve: ServerFactory, tmp_path: Path
) -> None:
    server = serve(
        "asgi_apps:tls_info",
        *certs.flags(),
        "--cert-reqs",
        "optional",
        "--ca-certs",
        str(certs.ca_file),
    )
    (tmp_path / "other").mkdir()
    stranger = Certs(tmp_path / "other").client("mallory")
    context = certs.context(stranger)
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=context) as client:
        client.get(https(server))
    assert "Traceback" not in server.log


# --- what is not TLS, or not in time ------------------------------------------------------------


def test_plain_http_to_the_tls_port_gets_a_400_saying_so(
    certs: Certs, serve: ServerFactory
) -> None:
    server = serve("asgi_apps:echo", *certs.flags())
    reply = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close" in head
    assert b"plain HTTP request sent to the HTTPS port" in body
    # the log line may reach the test's reader after the reply does
    assert server.wait_for_log("plain HTTP request sent to the HTTPS port")
    assert server.log.count("plain HTTP request sent to the HTTPS port") == 1


def test_handshake_failures_and_timeouts_are_debug_lines_not_tracebacks(
    certs: Certs, serve: ServerFactory
) -> None:
    server = serve("asgi_apps:echo", *certs.flags(), "--header-timeout", "1")
    started = time.monotonic()
    # a client that connects and never says hello is dropped after the header timeout
    assert raw_exchange(server.port, b"", timeout=10) == b""
    assert time.monotonic() - started > 0.5  # not before the header timeout
    # a handshake record that is garbage fails the handshake: the alert, then close
    reply = raw_exchange(server.port, b"\x16\x03\x01\x00\x05hello", timeout=10)
    assert reply[:1] in (b"", b"\x15")  # nothing, or a TLS alert record
    with httpx.Client(verify=certs.context()) as client:
        assert client.get(https(server)).status_code == 200
    assert "Traceback" not in server.log


def test_debug_log_names_the_handshake_failure(certs: Certs) -> None:
    # not the serve fixture: it sets --log-level info
    debug = ServerProcess(
        [
            *("asgi_apps:echo", *certs.flags(), "--bind", "127.0.0.1:0"),
            *("--log-level", "debug", "--header-timeout", "1"),
        ]
    )
    try:
        raw_exchange(debug.port, b"\x16\x03\x01\x00\x05hello", timeout=10)
        raw_exchange(debug.port, b"", timeout=10)
        assert wait_until(lambda: "TLS handshake not done in time" in debug.log)
        assert wait_until(lambda: "TLS handshake failed" in debug.log)
        assert debug.log.count("TLS handshake failed") == 1
        assert "Traceback" not in debug.log
    finally:
        debug.stop()


def test_an_error_response_survives_the_lingering_close_over_tls(
    certs: Certs, serve: ServerFactory
) -> None:
    server = serve("asgi_apps:echo", *certs.flags())
    context = certs.context()
    data = b""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        # two Host fields: 400, after which the server half-closes and drains our input
        tls.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + b"x" * 200_000)
        try:
            while chunk := tls.recv(65536):
                data += chunk
        except (ssl.SSLError, ConnectionResetError):
            pass
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data[:200]
    assert b"Host" in data


# --- files, WebSockets --------------------------------------------------------------------------


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(bytes(range(256)) * (5 * 4096 + 3))  # ~5 MiB, not a multiple of a chunk
    return path


def test_pathsend_over_tls_reads_off_the_loop(
    certs: Certs, serve: ServerFactory, payload: Path
) -> None:
    server = serve("asgi_apps:pathsend", *certs.flags(), env={"ASGI_TEST_FILE": str(payload)})
    with httpx.Client(verify=certs.context()) as client:
        response = client.get(https(server))
        assert response.content == payload.read_bytes()
        assert client.head(https(server)).content == b""


@pytest.mark.parametrize("app", ["wsgi_apps:big_file", "wsgi_apps:file_no_length"])
def test_file_wrapper_over_tls(certs: Certs, serve: ServerFactory, payload: Path, app: str) -> None:
    server = serve(app, *certs.flags())
    with httpx.Client(verify=certs.context()) as client:
        assert client.get(https(server, f"/?{payload}")).content == payload.read_bytes()


def test_websocket_over_tls_is_wss(certs: Certs, serve: ServerFactory) -> None:
    server = serve("ws_apps:scope_info", *certs.flags())
    with ws_connect(f"wss://localhost:{server.port}/ws", ssl=certs.context()) as ws:
        info = json.loads(ws.recv(timeout=5))
    assert info["scheme"] == "wss"
    assert "tls" in info["extensions"] and info["tls"]["tls_version"] == 0x0304
    with ws_connect(f"wss://localhost:{server.port}/ws", ssl=certs.context()):
        pass
    server2 = serve("ws_apps:echo", *certs.flags())
    with ws_connect(f"wss://localhost:{server2.port}/", ssl=certs.context()) as ws:
        for size in (5, 70_000, 900_000):
            ws.send("x" * size)
            assert ws.recv(timeout=10) == "x" * size


# --- configuration errors and rotation ----------------------------------------------------------


def portico(*args: str, cwd: Path = APPS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portico", *args, "--bind", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(cwd),
        check=False,
    )


def encrypted_key(key: Path, password: str) -> Path:
    out = key.with_suffix(".enc")
    subprocess.run(
        [
            *("openssl", "pkey", "-in", str(key), "-aes256"),
            *("-passout", f"pass:{password}", "-out", str(out)),
        ],
        check=True,
        capture_output=True,
    )
    return out


def test_startup_errors_name_the_file_and_what_to_do(certs: Certs) -> None:
    other_cert, other_key = certs.server("other")
    secret = encrypted_key(certs.key, "s3cret")
    pair = ["--certfile", str(certs.cert), "--keyfile", str(certs.key)]
    cases: list[tuple[list[str], str]] = [
        (["--certfile", str(certs.folder / "missing.pem")], "cannot read it"),
        ([*pair[:3], str(other_key)], "does not belong to"),
        (["--certfile", str(certs.key), "--keyfile", str(certs.key)], "no PEM certificate"),
        (["--certfile", str(certs.cert)], "no PEM private key"),
        (["--certfile", str(certs.cert), "--keyfile", str(secret)], "is encrypted"),
        (
            ["--certfile", str(certs.cert), "--keyfile", str(secret), "--keyfile-password", "no"],
            "password does not decrypt it",
        ),
        (
            ["--certfile", str(certs.cert), "--keyfile", str(certs.key), "--ciphers", "NOPE"],
            "--ciphers",
        ),
        (
            ["--certfile", str(certs.cert), "--keyfile", str(certs.key), "--cert-reqs", "required"],
            "needs ca_certs",
        ),
        (["--keyfile", str(certs.key)], "needs certfile"),
    ]
    for args, message in cases:
        result = portico("asgi_apps:echo", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert other_cert.exists()


def test_an_encrypted_key_with_its_password_and_the_password_is_hidden(
    certs: Certs, serve: ServerFactory
) -> None:
    secret = encrypted_key(certs.key, "s3cret")
    flags = ["--certfile", str(certs.cert), "--keyfile", str(secret)]
    server = serve("asgi_apps:tls_info", *flags, env={"PORTICO_KEYFILE_PASSWORD": "s3cret"})
    with httpx.Client(verify=certs.context()) as client:
        assert client.get(https(server)).status_code == 200
    shown = portico("--print-config", *flags, "--keyfile-password", "s3cret")
    assert 'keyfile_password = "(hidden)"' in shown.stdout
    assert "s3cret" not in shown.stdout


def replace_certificate(certs: Certs, common_name: str) -> None:
    cert, key = certs.server("next", common_name=common_name)
    # written in place, as certbot's deploy hooks and cert-manager's volume updates do
    certs.key.write_bytes(key.read_bytes())
    certs.cert.write_bytes(cert.read_bytes())


def test_sighup_loads_a_new_certificate_and_keeps_the_old_one_when_broken(
    certs: Certs, serve: ServerFactory
) -> None:
    server = serve("asgi_apps:echo", *certs.flags(), "--workers", "2")
    context = certs.context()
    first = peer_certificate(server.port, context)
    replace_certificate(certs, "second")
    second_der = ssl.PEM_cert_to_DER_cert(certs.cert.read_text())
    server.signal(signal.SIGHUP)
    assert wait_until(lambda: server.log.count("reload complete") >= 1), server.log
    assert peer_certificate(server.port, context) == second_der != first
    # a broken certificate: logged, the workers and the certificate stay
    certs.cert.write_text("not a certificate\n")
    pids = set(server.worker_pids())
    server.signal(signal.SIGHUP)
    assert wait_until(lambda: "keeping the old" in server.log), server.log
    assert "no PEM certificate" in server.log
    assert set(server.worker_pids()) == pids
    assert peer_certificate(server.port, context) == second_der
    assert server.stop() == 0


def test_certificate_rotation_under_load_fails_no_request(
    certs: Certs, serve: ServerFactory
) -> None:
    server = serve("master_apps:app", *certs.flags(), "--workers", "2")
    load = Load(https(server), seconds=8)
    assert wait_until(lambda: established(server.port) >= 16)  # wrk's connections are open
    for round_ in range(2):
        replace_certificate(certs, f"rotation {round_}")
        server.signal(signal.SIGHUP)
        assert wait_until(lambda n=round_: server.log.count("reload complete") >= n + 1, 30)
    result = load.result()
    assert result.failed == 0, result.output + server.log[-4000:]
    assert result.requests > 1000, result.output
    assert server.stop() == 0
