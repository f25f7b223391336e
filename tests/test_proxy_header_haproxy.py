"""The PROXY reader against what a real HAProxy sends (``send-proxy``, ``send-proxy-v2``).

One HAProxy process in ``mode tcp`` relays each test's connection to a tiny recording server on
loopback; the recorded bytes must parse to the client's real address and port, followed by the
exact bytes the client sent. HAProxy listens on sockets this test created (``bind fd@N``), so no
port is guessed and no readiness wait is needed: the kernel queues connections until HAProxy
accepts them. Skipped where ``haproxy`` is not installed (Debian: ``apt-get install haproxy``).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from portico.protocols.proxy_header import (
    LOCAL,
    PROXY,
    TCP4,
    TCP6,
    UNSPEC,
    ProxyHeader,
    ProxyHeaderReader,
)

HAPROXY = shutil.which("haproxy")
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")

REQUEST = b"GET /hello HTTP/1.1\r\nHost: example\r\n\r\n"
TIMEOUT = 10.0


def _listener(host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(16)
    sock.settimeout(TIMEOUT)
    return sock


def _ipv6_loopback() -> bool:
    try:
        _listener("::1").close()
    except OSError:
        return False
    return True


@dataclass
class HAProxy:
    proc: subprocess.Popen[bytes]
    log: Path
    fronts: dict[str, socket.socket]
    backs: dict[str, socket.socket]

    def recorded(self, backend: str) -> bytes:
        """Everything HAProxy wrote on the next connection it opened to ``backend``."""
        try:
            conn, _ = self.backs[backend].accept()
        except TimeoutError:
            raise AssertionError("haproxy did not connect:\n" + self.log.read_text()) from None
        with conn:
            conn.settimeout(TIMEOUT)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
                if data.endswith(REQUEST):
                    break
            return data


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxy]:
    assert HAPROXY is not None
    tmp = tmp_path_factory.mktemp("haproxy")
    fronts = {"v1": _listener(), "v2": _listener(), "v2ssl": _listener()}
    backs = {"v1": _listener(), "v2": _listener(), "v2ssl": _listener(), "check": _listener()}
    if _ipv6_loopback():
        fronts["v6"] = _listener("::1")
        backs["v6"] = _listener()
    tls_bind = ""
    if OPENSSL is not None:
        key, cert = tmp / "key.pem", tmp / "cert.pem"
        make_cert = [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt"]
        make_cert += ["ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost", "-days", "1"]
        make_cert += ["-keyout", str(key), "-out", str(cert)]
        subprocess.run(
            make_cert,
            check=True,
            capture_output=True,
        )
        (tmp / "both.pem").write_bytes(
            (tmp / "cert.pem").read_bytes() + (tmp / "key.pem").read_bytes()
        )
        tls_bind = f" ssl crt {tmp / 'both.pem'}"

    def port(sock: socket.socket) -> int:
        return int(sock.getsockname()[1])

    options = "proxy-v2-options crc32c,unique-id"
    sections = {
        "v1": "send-proxy",
        "v2": f"send-proxy-v2 {options}",
        "v2ssl": "send-proxy-v2-ssl",
        "v6": "send-proxy-v2",
    }
    config = [
        "global",
        "    log stderr format raw local0",
        "defaults",
        "    mode tcp",
        "    log global",
        "    timeout connect 5s",
        "    timeout client 5s",
        "    timeout server 5s",
    ]
    for name, front in fronts.items():
        bind = f"fd@{front.fileno()}" + (tls_bind if name == "v2ssl" else "")
        config += [
            f"frontend f_{name}",
            f"    bind {bind}",
            "    unique-id-format %{+X}o\\ %ci:%cp",
            f"    default_backend b_{name}",
            f"backend b_{name}",
            f"    server s 127.0.0.1:{port(backs[name])} {sections[name]}",
        ]
    # a backend nobody sends traffic to: its health checks carry a LOCAL header
    config += [
        "backend b_check",
        f"    server s 127.0.0.1:{port(backs['check'])} send-proxy-v2 check-send-proxy check"
        " inter 200ms",
    ]
    cfg = tmp / "haproxy.cfg"
    cfg.write_text("\n".join(config) + "\n")
    log = tmp / "haproxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=tuple(f.fileno() for f in fronts.values()),
        )
    try:
        yield HAProxy(proc, log, fronts, backs)
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)
        for sock in [*fronts.values(), *backs.values()]:
            sock.close()


def _send_through(haproxy: HAProxy, name: str) -> tuple[ProxyHeader, bytes, tuple[str, int]]:
    front = haproxy.fronts[name]
    with socket.create_connection(front.getsockname()[:2], timeout=TIMEOUT) as client:
        client.sendall(REQUEST)
        local = client.getsockname()
        data = haproxy.recorded(name)
    # fed byte by byte, as a slow network would deliver it
    reader = ProxyHeaderReader()
    header = None
    for i in range(len(data)):
        header = reader.feed(data[i : i + 1])
        if header is not None:
            rest = reader.rest + data[i + 1 :]
            break
    assert header is not None, repr(data)
    return header, rest, (local[0], local[1])


def test_haproxy_send_proxy_v1(haproxy: HAProxy) -> None:
    header, rest, client = _send_through(haproxy, "v1")
    assert (header.version, header.command, header.family) == (1, PROXY, TCP4)
    assert header.client == client
    assert header.server == haproxy.fronts["v1"].getsockname()
    assert rest == REQUEST


def test_haproxy_send_proxy_v2_with_crc32c_and_unique_id(haproxy: HAProxy) -> None:
    header, rest, client = _send_through(haproxy, "v2")
    assert (header.version, header.command, header.family) == (2, PROXY, TCP4)
    assert header.client == client
    assert header.server == haproxy.fronts["v2"].getsockname()
    assert dict(header.tlvs).get(0x03) is not None  # CRC32C, verified by the reader
    unique_id = dict(header.tlvs).get(0x05)
    assert unique_id is not None and unique_id.endswith(b":%X" % client[1])
    assert rest == REQUEST


def test_haproxy_send_proxy_v2_over_ipv6(haproxy: HAProxy) -> None:
    if "v6" not in haproxy.fronts:
        pytest.skip("no IPv6 loopback here")
    header, rest, client = _send_through(haproxy, "v6")
    assert header.family == TCP6
    assert header.client == client
    assert header.server == haproxy.fronts["v6"].getsockname()[:2]
    assert rest == REQUEST


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed to make a certificate")
def test_haproxy_send_proxy_v2_ssl_says_the_client_used_tls(haproxy: HAProxy) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    front = haproxy.fronts["v2ssl"]
    with (
        socket.create_connection(front.getsockname(), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as client,
    ):
        client.sendall(REQUEST)
        local = client.getsockname()
        data = haproxy.recorded("v2ssl")
    header = ProxyHeaderReader().feed(data)
    assert header is not None
    assert header.tls is True
    assert header.client == local
    ssl_tlv = dict(header.tlvs).get(0x20)
    assert ssl_tlv is not None and b"TLSv1" in ssl_tlv  # the version sub-TLV, kept raw


def test_haproxy_health_check_is_local(haproxy: HAProxy) -> None:
    try:
        conn, _ = haproxy.backs["check"].accept()
    except TimeoutError:
        raise AssertionError("no health check:\n" + haproxy.log.read_text()) from None
    with conn:
        conn.settimeout(TIMEOUT)
        reader = ProxyHeaderReader()
        header = None
        while header is None:
            chunk = conn.recv(4096)
            assert chunk, "the check closed before a whole header"
            header = reader.feed(chunk)
    assert (header.version, header.command, header.family) == (2, LOCAL, UNSPEC)
    assert header.client is None  # use the real connection's endpoints
