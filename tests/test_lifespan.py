"""Lifespan against a real server: state, failures and their exit codes, shutdown."""

from __future__ import annotations

import signal

import httpx

from tests.conftest import ServerFactory


def test_startup_state_reaches_requests_and_shutdown_runs(serve: ServerFactory) -> None:
    server = serve("asgi_apps:lifespan_app")
    assert httpx.get(server.url).text == "answer=42"
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert "lifespan shutdown ran" in server.log


def test_startup_failure_exits_3_with_the_apps_message(serve: ServerFactory) -> None:
    server = serve("asgi_apps:lifespan_app", env={"ASGI_TEST_MODE": "fail"}, ready=False)
    assert server.wait() == 3
    assert "database unreachable" in server.log


def test_startup_exception_exits_3(serve: ServerFactory) -> None:
    server = serve(
        "asgi_apps:lifespan_app", "--lifespan", "on", env={"ASGI_TEST_MODE": "raise"}, ready=False
    )
    assert server.wait() == 3
    assert "startup exploded" in server.log


def test_auto_tolerates_apps_without_lifespan(serve: ServerFactory) -> None:
    server = serve("asgi_apps:no_lifespan")
    assert httpx.get(server.url).status_code == 204
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_on_requires_lifespan(serve: ServerFactory) -> None:
    server = serve("asgi_apps:no_lifespan", "--lifespan", "on", ready=False)
    assert server.wait() == 3


def test_off_never_calls_lifespan(serve: ServerFactory) -> None:
    server = serve("asgi_apps:lifespan_app", "--lifespan", "off")
    assert httpx.get(server.url).text == "answer=None"


def test_app_load_failure_exits_4(serve: ServerFactory) -> None:
    server = serve("asgi_apps:does_not_exist", ready=False)
    assert server.wait() == 4
    assert "has no attribute 'does_not_exist'" in server.log
