"""HTTP/2 conformance with clients nobody here wrote: curl, nghttp, h2load and httpx.

CI cannot run h2spec; these are its conformance tests (``.ci/run`` installs curl and Debian's
``nghttp2-client``). h2spec itself is run by hand (see the README's HTTP/2 section).
"""

from __future__ import annotations

import re
import ssl
import subprocess

import httpx
import pytest

from tests.conftest import Certs, ServerFactory, ServerProcess
from tests.h2client import httpx_client


def _run(*argv: str, timeout: float = 60) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return done.stdout + done.stderr


@pytest.fixture
def both(serve: ServerFactory, certs: Certs) -> tuple[ServerProcess, ServerProcess]:
    """The echo app on a cleartext port and on a TLS port."""
    plain = serve("asgi_apps:echo")
    tls = serve("asgi_apps:echo", "--certfile", certs.server_pem)
    return plain, tls


def test_curl(both: tuple[ServerProcess, ServerProcess], certs: Certs) -> None:
    plain, tls = both
    prior = _run("curl", "-sS", "-i", "--http2-prior-knowledge", f"{plain.url}/curl?a=1")
    assert prior.startswith("HTTP/2 200")
    assert '"http_version": "2"' in prior
    alpn = _run(
        "curl", "-sS", "-i", "--http2", "--cacert", certs.ca_pem, f"https://127.0.0.1:{tls.port}/"
    )
    assert alpn.startswith("HTTP/2 200")
    assert '"scheme": "https"' in alpn
    upload = _run(
        "curl", "-sS", "--http2-prior-knowledge", "--data-binary", "x" * 100_000, f"{plain.url}/up"
    )
    assert '"body": "' + "x" * 100_000 + '"' in upload


def test_nghttp(both: tuple[ServerProcess, ServerProcess]) -> None:
    plain, tls = both
    for url in (f"{plain.url}/n", f"https://127.0.0.1:{tls.port}/n"):
        out = _run("nghttp", "-nv", url)
        assert re.search(r"recv \(stream_id=\d+\) :status: 200", out), out
        assert re.search(r"recv DATA frame <length=\d+, flags=0x01", out), out  # END_STREAM
        assert "recv RST_STREAM" not in out and "recv GOAWAY" not in out, out


def test_h2load(both: tuple[ServerProcess, ServerProcess]) -> None:
    plain, tls = both
    for url in (f"{plain.url}/", f"https://127.0.0.1:{tls.port}/"):
        out = _run("h2load", "-n", "2000", "-c", "4", "-m", "10", url)
        assert "2000 succeeded, 0 failed, 0 errored" in out, out
        assert "Application protocol: h2" in out


def test_httpx(both: tuple[ServerProcess, ServerProcess], certs: Certs) -> None:
    plain, tls = both
    for protocol, server in (("h2c", plain), ("h2-tls", tls)):
        client, _ = httpx_client(protocol, server.port, certs.ca_pem)
        with client:
            response = client.post("/httpx", content=b"y" * 300_000)
            assert response.http_version == "HTTP/2"
            assert response.json()["body"] == "y" * 300_000
    # a client offering h2 and http/1.1 by ALPN gets h2
    verify = ssl.create_default_context(cafile=certs.ca_pem)
    with httpx.Client(http2=True, verify=verify) as client:
        assert client.get(f"https://127.0.0.1:{tls.port}/").http_version == "HTTP/2"
