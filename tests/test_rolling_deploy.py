"""The rolling-deploy recipe (``deploy/nginx/portico-rolling.conf``): two Portico instances behind
one real nginx under ``wrk``, each restarted in turn, then each upgraded in place with SIGUSR2,
and not one request fails."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ServerProcess
from tests.gateway_nginx import Nginx, needs_nginx
from tests.nginx_recipes import DEPLOY
from tests.test_master_e2e import wait_until
from tests.wrk import parse

pytestmark = [
    needs_nginx,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is needed"),
]

RECIPE = DEPLOY / "nginx" / "portico-rolling.conf"


def instance(sock: Path, pid: Path) -> ServerProcess:
    server = ServerProcess(
        [
            "master_apps:app",
            "--bind",
            f"unix:{sock}",
            "--pid",
            str(pid),
            "--workers",
            "2",
            "--graceful-timeout",
            "10",
            "--log-level",
            "info",
        ],
        ready=False,
    )
    assert server.wait_for_log("Portico serving", timeout=20), server.log
    return server


def test_rolling_restart_and_upgrade_lose_no_request(tmp_path: Path) -> None:
    socks = {name: tmp_path / f"{name}.sock" for name in "ab"}
    pids = {name: tmp_path / f"{name}.pid" for name in "ab"}
    block = RECIPE.read_text().replace("listen 80;", "LISTEN;")
    block = block.replace("/run/portico/a.sock", str(socks["a"]))
    block = block.replace("/run/portico/b.sock", str(socks["b"]))
    servers = {name: instance(socks[name], pids[name]) for name in "ab"}
    (tmp_path / "nginx").mkdir()
    nginx = Nginx(tmp_path / "nginx", block)
    load = subprocess.Popen(
        ["wrk", "-t1", "-c16", "-d120s", "--timeout", "10s", f"http://127.0.0.1:{nginx.port}/"],
        stdout=subprocess.PIPE,
        text=True,
    )
    upgraded: list[int] = []
    try:
        for name in "ab":  # restart each instance in turn
            assert servers[name].stop() == 0
            servers[name] = instance(socks[name], pids[name])
        for name in "ab":  # upgrade each in place: SIGUSR2, then the old master leaves
            old = servers[name]
            old.signal(signal.SIGUSR2)
            assert wait_until(lambda old=old: old.log.count("Portico serving") == 2, timeout=30)
            new_master = int(pids[name].read_text())
            assert new_master != old.proc.pid
            upgraded.append(new_master)
            old.signal(signal.SIGTERM)
            try:
                assert old.proc.wait(30) == 0, old.log
            except subprocess.TimeoutExpired:
                raise AssertionError(old.log) from None
    finally:
        load.send_signal(signal.SIGINT)  # wrk prints its totals and exits
        output, _ = load.communicate(timeout=30)
        for pid in upgraded:
            os.kill(pid, signal.SIGTERM)
        for server in servers.values():
            server.stop()
        nginx.stop()
    result = parse(output)
    assert result.requests > 1000, output
    assert result.failed == 0, output
    for pid in upgraded:
        assert wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), timeout=30)
    print(f"rolling deploy: {result.requests} requests, {result.failed} failed")
