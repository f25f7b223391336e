"""--mount: WSGI and ASGI apps side by side in one server, the longest prefix winning."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import Certs, ServerFactory
from tests.h2client import PROTOCOLS, httpx_client, server_args


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_flask_fastapi_and_an_asgi_root_side_by_side(
    serve: ServerFactory, certs: Certs, protocol: str
) -> None:
    server = serve(
        "asgi_apps:echo",
        "--mount",
        "/flask=flask_app:app",
        "--mount",
        "/fast=fastapi_app:app",
        "--mount",
        "/fast/wsgi=wsgi_apps:echo",
        "--mount",
        "/dj=django_app:application",
        *server_args(protocol, certs.server_pem),
    )
    client, _ = httpx_client(protocol, server.port, certs.ca_pem)
    with client:
        fast = client.get("/fast/items/7").json()
        assert fast["item"] == 7
        assert fast["root_path"] == "/fast"  # ASGI: the prefix is root_path, path is unchanged
        assert fast["path"] == "/fast/items/7"
        assert fast["url"].endswith("/fast/items/7")
        assert fast["started"] == "yes"  # each mounted ASGI app runs its own lifespan
        assert client.post("/fast/echo", content=b"x" * 100_000).json() == {"size": 100_000}

        flask = client.get("/flask/hello/ada").json()
        assert flask["name"] == "ada"
        assert flask["url"].endswith("/flask/hello/ada")  # Flask built it from SCRIPT_NAME

        wsgi = client.get("/fast/wsgi/deeper?q=1").json()  # the longest prefix wins
        assert wsgi["SCRIPT_NAME"] == "/fast/wsgi"
        assert wsgi["PATH_INFO"] == "/deeper"
        assert wsgi["QUERY_STRING"] == "q=1"

        django = client.get("/dj/hello/grace").json()
        assert django["path"] == "/dj/hello/grace"
        assert django["path_info"] == "/hello/grace"

        root = client.get("/flaskish").json()  # a prefix matches whole segments only
        assert root["path"] == "/flaskish"
        assert root["root_path"] == ""
        assert client.get("/flask").status_code == 404  # Flask itself: no route at its root


def test_without_a_root_app_unmatched_paths_are_404(serve: ServerFactory) -> None:
    server = serve("--mount", "/api=asgi_apps:echo")
    assert httpx.get(server.url + "/api/x").json()["root_path"] == "/api"
    response = httpx.get(server.url + "/elsewhere")
    assert response.status_code == 404
    assert response.text == "Not Found\n"


def test_mounts_from_a_config_file(serve: ServerFactory, tmp_path: Path) -> None:
    config = tmp_path / "portico.toml"
    config.write_text('mount = ["/w=wsgi_apps:echo", "/a=asgi_apps:echo"]\n')
    server = serve("--config", str(config))
    assert httpx.get(server.url + "/w/x").json()["SCRIPT_NAME"] == "/w"
    assert httpx.get(server.url + "/a/x").json()["root_path"] == "/a"


def test_bad_mounts_are_usage_errors(serve: ServerFactory) -> None:
    server = serve("--mount", "api=asgi_apps:echo", ready=False)
    assert server.wait() == 2
    assert "--mount" in server.log and "/api" in server.log
    server = serve("--mount", "/a=asgi_apps:echo", "--mount", "/a=asgi_apps:echo", ready=False)
    assert server.wait() == 2
    assert "mounted twice" in server.log


def test_a_failed_startup_shuts_down_the_apps_already_started(serve: ServerFactory) -> None:
    server = serve(
        "asgi_apps:lifespan_app", "--mount", "/bad=asgi_apps:failing_lifespan", ready=False
    )
    assert server.wait() == 3
    assert "database unreachable" in server.log
    # the root app had started: its lifespan gets its shutdown before the worker gives up
    assert server.log.count("lifespan shutdown ran") == 1
