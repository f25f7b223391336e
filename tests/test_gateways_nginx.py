"""Flask, Django and FastAPI behind a real nginx, over HTTP (``proxy_pass``), uwsgi
(``uwsgi_pass``) and FastCGI (``fastcgi_pass``, connections kept): every test runs for each app
and each protocol, through the recipes of ``deploy/nginx/`` (``tests/nginx_recipes.py``).

One Portico per app serves all three binds at once; one nginx has one server per recipe. The
client connects from 127.0.0.2, so the address the app sees proves the one nginx passed on
(``REMOTE_ADDR``, ``X-Forwarded-For``) was used, not the socket's peer (nginx, 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.gateway_nginx import Nginx, needs_nginx
from tests.nginx_recipes import PROTOCOLS, bound_ports, nginx_in_front, portico_on_every_protocol

pytest.importorskip("flask")
pytest.importorskip("django")
pytest.importorskip("fastapi")

pytestmark = needs_nginx

APPS = {
    "flask": "flask_app:app",
    "django": "django_app:application",
    "fastapi": "fastapi_app:app",
}
CLIENT_ADDRESS = "127.0.0.2"
UPLOAD_SIZE = 20 * 1024 * 1024


@dataclass
class Site:
    app: str
    portico: ServerProcess
    nginx: Nginx

    def client(self, protocol: str) -> httpx.Client:
        port = self.nginx.ports[PROTOCOLS.index(protocol)]
        return httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            transport=httpx.HTTPTransport(local_address=CLIENT_ADDRESS),
            timeout=60,
        )


@pytest.fixture(scope="module", params=sorted(APPS))
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("data") / "file.bin"
    data.write_bytes(os.urandom(1 << 20))
    portico = portico_on_every_protocol(
        APPS[request.param], "--health-path", "/healthz", env={"PORTICO_TEST_FILE": str(data)}
    )
    try:
        nginx = nginx_in_front(tmp_path_factory.mktemp("nginx"), bound_ports(portico))
        try:
            yield Site(request.param, portico, nginx)
        finally:
            nginx.stop()
            log = nginx.log
            assert "[alert]" not in log and "[crit]" not in log, log
    finally:
        assert portico.stop() == 0, portico.log


@pytest.fixture(params=PROTOCOLS)
def client(site: Site, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    with site.client(request.param) as client:
        yield client


def test_routing_query_cookies_and_client_address(site: Site, client: httpx.Client) -> None:
    for prefix in ("", "/app"):
        reply = client.get(
            f"{prefix}/probe/caf%C3%A9%20x",
            params={"q": "a b", "é": "1"},
            headers={"Cookie": "a=1; b=two"},
        )
        assert reply.status_code == 200, reply.text
        probe = reply.json()
        assert probe["name"] == "café x"
        assert probe["query"] == {"q": "a b", "é": "1"}
        assert probe["cookies"] == {"a": "1", "b": "two"}
        assert probe["remote"] == CLIENT_ADDRESS
        # the URL the app rebuilds is the client's, prefix included (Debian's uwsgi_params and
        # fastcgi_params send nginx's $host as HTTP_HOST, without the port)
        for url in (httpx.URL(probe["self"]), httpx.URL(probe["url"])):
            assert (url.scheme, url.host) == ("http", "127.0.0.1")
            assert unquote(url.raw_path.decode().partition("?")[0]) == f"{prefix}/probe/café x"


def test_percent_encoded_reserved_characters_stay_in_their_segment(
    site: Site, client: httpx.Client
) -> None:
    # REQUEST_URI, not nginx's decoded $document_uri: an encoded "?" or "#" stays in the path
    reply = client.get("/app/probe/a%3Fb%23c%25d")
    assert reply.status_code == 200, reply.text
    assert reply.json()["name"] == "a?b#c%d"


def test_missing_route_and_failing_view(site: Site, client: httpx.Client) -> None:
    assert client.get("/no/such/route").status_code == 404
    if site.app != "fastapi":
        assert client.get("/fail").status_code == 500


@pytest.mark.parametrize("prefix", ["", "/app"])
def test_redirect_keeps_the_prefix_and_sets_a_cookie(
    site: Site, client: httpx.Client, prefix: str
) -> None:
    moved = client.get(f"{prefix}/go")
    assert moved.status_code == 302
    location = httpx.URL(moved.headers["location"])
    assert location.path == f"{prefix}/hello/x"
    assert moved.cookies["session"] == "abc"
    # (an absolute Location names nginx's $host without the port: follow the path)
    assert client.get(location.path).status_code == 200


def test_upload_of_20_mib(site: Site, client: httpx.Client) -> None:
    block = os.urandom(1 << 16)
    body = block * (UPLOAD_SIZE // len(block))
    reply = client.post(
        "/app/digest", content=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.text == f"{UPLOAD_SIZE} {hashlib.sha256(body).hexdigest()}"


def test_streaming_response(site: Site, client: httpx.Client) -> None:
    with client.stream("GET", "/stream", params={"n": "300"}) as reply:
        assert reply.status_code == 200
        assert reply.headers.get("transfer-encoding") == "chunked"  # no length: streamed
        text = "".join(reply.iter_text())
    assert text == "".join(f"piece {i}\n" for i in range(300))


def test_keep_alive_upstream_carries_many_requests(site: Site, client: httpx.Client) -> None:
    for i in range(30):
        assert client.get(f"/probe/n{i}").json()["name"] == f"n{i}"


def test_health_path_is_answered_by_the_worker(site: Site, client: httpx.Client) -> None:
    reply = client.get("/healthz")
    assert (reply.status_code, reply.text) == (200, "OK\n")  # no app has this route
