"""The deployment recipes of ``deploy/`` (README, "Deployment recipes"), each read as it is and run
as far as this machine allows: the systemd units with the sockets and the notification socket
passed the way systemd does; the container's ENTRYPOINT and CMD as the command, and its
HEALTHCHECK; the Kubernetes manifest's numbers against the settings its args give."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from portico.config import Config, resolve
from portico.supervisor.master import STOP_MARGIN
from tests.conftest import ServerProcess
from tests.test_master_e2e import wait_until
from tests.test_uwsgi import nginx_vars, packet

DEPLOY = Path(__file__).parent.parent / "deploy"
VENV_BIN = str(Path(sys.executable).parent)
TEST_APP = "master_apps:app"


def settings_of(args: list[str]) -> Config:
    """The Config a command line gives (no file, no environment)."""
    return resolve(args, {}, lambda path: Path(path).read_text(), "/").config


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> every value (keys such as ListenStream repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def dockerfile() -> dict[str, str]:
    """The Dockerfile's instructions (the last of each, as Docker reads them)."""
    found = {}
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line and not line.startswith("#") and line.split()[0].isupper():
            word, _, rest = line.partition(" ")
            found[word] = rest.strip()
    return found


def test_systemd_units_socket_activation_and_notify(tmp_path: Path) -> None:
    service = unit(DEPLOY / "systemd" / "portico.service")["Service"]
    sockets = unit(DEPLOY / "systemd" / "portico.socket")["Socket"]
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    assert service["KillSignal"] == ["SIGTERM"] and service["KillMode"] == ["mixed"]
    argv = shlex.split(service["ExecStart"][0])
    assert argv[0].endswith("/portico")
    config = settings_of(argv[1:])
    # systemd waits for the whole drain before it kills anything
    assert float(service["TimeoutStopSec"][0]) > (
        config.shutdown_delay + config.graceful_timeout + STOP_MARGIN
    )
    # one bind per ListenStream line, in order from fd 3: the HTTP one, then the uwsgi one
    listen = sockets["ListenStream"]
    assert config.bind == ("fd://3", "uwsgi:fd://4") and len(listen) == 2
    assert listen[0] == "127.0.0.1:8000" and listen[1].startswith("/run/portico/")

    # what systemd does: bind the sockets, start the service with them at fd 3 and 4
    tcp = socket.create_server(("127.0.0.1", 0))  # the kernel's port for 127.0.0.1:8000
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix_path = str(tmp_path / "uwsgi.sock")
    unix.bind(unix_path)
    unix.listen(16)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    launcher = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
        "os.environ.update(LISTEN_FDS='2', LISTEN_PID=str(os.getpid())); "
        "os.execv(sys.executable, [sys.executable, '-m', 'portico', *sys.argv[3:]])"
    )
    args = [TEST_APP if arg == "app:app" else arg for arg in argv[1:]]
    server = ServerProcess(
        [*args, "--workers", "1", "--log-level", "info"],
        env={"NOTIFY_SOCKET": str(tmp_path / "notify")},
        ready=False,
        command=[sys.executable, "-c", launcher, str(tcp.fileno()), str(unix.fileno())],
        pass_fds=(tcp.fileno(), unix.fileno()),
    )
    port = tcp.getsockname()[1]
    tcp.close()
    unix.close()
    try:
        assert "READY=1" in notify.recv(4096).decode()
        # the fd's bind kept its protocol (the line is logged before READY=1 is sent)
        assert server.wait_for_log(f"uwsgi:unix:{unix_path}"), server.log
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(unix_path)
            client.sendall(packet(nginx_vars(REQUEST_URI=b"/")))
            assert client.recv(1 << 16).startswith(b"HTTP/1.1 200 OK")
        server.signal(signal.SIGTERM)  # systemctl stop
        assert notify.recv(4096).decode() == "STOPPING=1"
        assert server.wait() == 0
    finally:
        server.stop()
        notify.close()


def _docker_command() -> tuple[list[str], dict[str, str]]:
    found = dockerfile()
    return json.loads(found["ENTRYPOINT"]) + json.loads(found["CMD"]), found


def test_container_recipe_runs_its_command_and_healthcheck() -> None:
    command, found = _docker_command()
    cmd = json.loads(found["CMD"])
    config = settings_of(cmd)
    assert found["USER"] not in ("root", "0") and found["STOPSIGNAL"] == "SIGTERM"
    (bind,) = config.bind
    assert bind.endswith(":" + found["EXPOSE"])
    health = json.loads(found["HEALTHCHECK"].partition(" CMD ")[2])
    assert f":{found['EXPOSE']}{config.health_path}'" in health[-1]

    # the ENTRYPOINT and CMD as the command: the shell picks the worker count from the CPUs
    run = [{"app:app": TEST_APP, bind: "127.0.0.1:0"}.get(arg, arg) for arg in command] + [
        "--shutdown-delay",
        "2",
        "--log-level",
        "info",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "PORTICO_WORKERS")}
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    server = ServerProcess([], command=run, env=env)
    try:
        assert wait_until(lambda: len(server.worker_pids()) == len(os.sched_getaffinity(0)))
        check = [health[0], "-c", health[2].replace(f":{found['EXPOSE']}/", f":{server.port}/")]
        assert subprocess.run(check, timeout=10, check=False).returncode == 0
        server.signal(signal.SIGTERM)  # docker stop
        assert server.wait_for_log("--shutdown-delay")
        failed = subprocess.run(check, timeout=10, check=False, capture_output=True)
        assert failed.returncode != 0 and b"503" in failed.stderr  # draining: unhealthy
        assert server.wait() == 0
    finally:
        server.stop()


def test_kubernetes_manifest_agrees_with_the_image_and_the_settings() -> None:
    manifest: dict[str, Any] = json.loads((DEPLOY / "kubernetes" / "portico.json").read_text())
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    config = settings_of(args)
    assert args == json.loads(dockerfile()["CMD"])  # the image's own command
    assert str(pod["securityContext"]["runAsUser"]) == dockerfile()["USER"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    (bind,) = config.bind
    assert bind.endswith(f":{ports['http']}")
    readiness = container["readinessProbe"]
    assert readiness["httpGet"]["path"] == config.health_path
    assert ports[readiness["httpGet"]["port"]] == ports["http"]
    # the probe sees the 503 while Portico still serves (--shutdown-delay)
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= config.shutdown_delay
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # Kubernetes' SIGKILL comes after preStop + the drain, never during it
    assert pod["terminationGracePeriodSeconds"] > (
        float(pre_stop[1]) + config.shutdown_delay + config.graceful_timeout + STOP_MARGIN
    )
    strategy = manifest["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0  # a new pod is ready before an old one goes


def test_readme_recipes_name_the_files_the_tests_run() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.partition("## Deployment recipes")[2].partition("\n## ")[0]
    for path in (
        "deploy/nginx/portico-http.conf",
        "deploy/nginx/portico-uwsgi.conf",
        "deploy/nginx/portico-fastcgi.conf",
        "deploy/nginx/portico-rolling.conf",
        "deploy/systemd/portico.socket",
        "deploy/systemd/portico.service",
        "deploy/Dockerfile",
        "deploy/kubernetes/portico.json",
    ):
        assert path in section, path
        assert (Path(__file__).parent.parent / path).is_file()
    assert re.search(r"tests/test_\w+\.py", section)


@pytest.mark.parametrize("path", sorted((DEPLOY / "nginx").glob("*.conf")), ids=lambda p: p.name)
def test_nginx_recipes_are_run_by_a_test(path: Path) -> None:
    users = [p for p in Path(__file__).parent.glob("*.py") if path.name in p.read_text()]
    assert users, f"no test runs {path.name}"
