"""Every kind of bind, systemd, pid file, log reopening, binary upgrade and --reload, for real."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory, children, cmdline, raw_exchange
from tests.test_master_e2e import answering_pids, wait_until

GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def get_over(family: socket.AddressFamily, address: object) -> bytes:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(address)
        sock.sendall(GET)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def port_of(log: str, pattern: str) -> int:
    match = re.search(pattern, log)
    assert match, log
    return int(match.group(1))


def test_every_bind_form_at_once(serve: ServerFactory, tmp_path: Path) -> None:
    path = tmp_path / "portico.sock"
    inherited = socket.create_server(("127.0.0.1", 0))
    inherited_port = inherited.getsockname()[1]
    server = serve(
        "master_apps:app",
        "--workers",
        "2",
        "--bind",
        "[::1]:0",
        "--bind",
        f"unix:{path}",
        "--umask",
        "0o117",
        "--bind",
        f"fd://{inherited.fileno()}",
        pass_fds=(inherited.fileno(),),
    )
    inherited.close()  # the server holds its own copy now
    v6_port = port_of(server.log, r"on http://\[::1\]:(\d+)")
    assert get_over(socket.AF_INET6, ("::1", v6_port)).startswith(b"HTTP/1.1 200")
    assert get_over(socket.AF_UNIX, str(path)).startswith(b"HTTP/1.1 200")
    assert stat.S_IMODE(path.stat().st_mode) == 0o660  # 0o777 & ~0o117
    assert raw_exchange(inherited_port, GET).startswith(b"HTTP/1.1 200")
    assert httpx.get(server.url).status_code == 200
    assert server.stop() == 0
    assert not path.exists()  # the master removes its unix socket file


@pytest.mark.parametrize("dual_stack", [True, False])
def test_ipv6_wildcard_dual_stack_is_explicit(serve: ServerFactory, dual_stack: bool) -> None:
    flag = "--dual-stack" if dual_stack else "--no-dual-stack"
    server = serve("master_apps:app", "--bind", "[::]:0", flag)
    port = port_of(server.log, r"on http://\[::\]:(\d+)")
    assert get_over(socket.AF_INET6, ("::1", port)).startswith(b"HTTP/1.1 200")
    if dual_stack:
        assert raw_exchange(port, GET).startswith(b"HTTP/1.1 200")
    else:
        with pytest.raises(ConnectionRefusedError):
            raw_exchange(port, GET)


def test_reuse_port_gives_each_worker_its_socket_and_survives_replacement(
    serve: ServerFactory,
) -> None:
    server = serve("master_apps:app", "--workers", "2", "--reuse-port")
    first = set(server.worker_pids())
    assert wait_until(lambda: answering_pids(server) == first)
    # each worker listens on its own socket: two LISTEN entries on the port
    listening = [
        line
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[1].endswith(f":{server.port:04X}") and line.split()[3] == "0A"
    ]
    assert len(listening) >= 2
    server.signal(signal.SIGHUP)
    assert server.wait_for_log("reload complete")
    assert wait_until(lambda: not first & set(server.worker_pids()))
    assert answering_pids(server) == set(server.worker_pids())


def test_systemd_socket_activation(serve: ServerFactory) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # what systemd does: the socket at fd 3, LISTEN_FDS=1, LISTEN_PID=the server's own pid
    launcher = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); "
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); "
        "os.execv(sys.executable, [sys.executable, '-m', 'portico', *sys.argv[2:]])"
    )
    server = serve(
        "master_apps:app",
        bind=False,
        ready=False,
        command=[sys.executable, "-c", launcher, str(listener.fileno())],
        pass_fds=(listener.fileno(),),
    )
    listener.close()
    assert server.wait_for_log("Portico serving")
    assert "socket activation" in server.log
    assert f"http://127.0.0.1:{port}" in server.log
    assert raw_exchange(port, GET).startswith(b"HTTP/1.1 200")
    assert server.stop() == 0


def test_sd_notify_ready_reloading_stopping(serve: ServerFactory, tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(15)
    server = serve("master_apps:app", env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
    ready = notify.recv(4096).decode()
    assert "READY=1" in ready and f"MAINPID={server.proc.pid}" in ready
    assert "STATUS=1 worker(s) serving" in ready
    server.signal(signal.SIGHUP)
    assert "RELOADING=1" in notify.recv(4096).decode()
    assert "READY=1" in notify.recv(4096).decode()
    server.signal(signal.SIGTERM)
    assert notify.recv(4096).decode() == "STOPPING=1"
    assert server.wait() == 0
    notify.close()


def test_pid_file_and_log_files_reopened_on_usr1(serve: ServerFactory, tmp_path: Path) -> None:
    pid_file, log_file, access = tmp_path / "p.pid", tmp_path / "error.log", tmp_path / "a.log"
    server = serve(
        "master_apps:app",
        "--pid",
        str(pid_file),
        "--log-file",
        str(log_file),
        "--access-log-file",
        str(access),
        ready=False,
    )
    assert wait_until(lambda: log_file.exists() and "Portico serving" in log_file.read_text())
    port = port_of(log_file.read_text(), r"on http://127\.0\.0\.1:(\d+)")
    assert pid_file.read_text() == f"{server.proc.pid}\n"
    httpx.get(f"http://127.0.0.1:{port}/first")
    assert wait_until(lambda: "/first" in access.read_text())
    # logrotate: move the files away, then SIGUSR1
    log_file.rename(tmp_path / "error.log.1")
    access.rename(tmp_path / "a.log.1")
    server.signal(signal.SIGUSR1)
    assert wait_until(log_file.exists)
    httpx.get(f"http://127.0.0.1:{port}/second")
    assert wait_until(lambda: access.exists() and "/second" in access.read_text())
    assert "/second" not in (tmp_path / "a.log.1").read_text()
    assert server.stop() == 0
    assert not pid_file.exists()
    assert "master" in log_file.read_text()  # its stop line went to the reopened file


def test_usr2_starts_a_new_master_that_inherits_the_sockets(
    serve: ServerFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "p.pid"
    server = serve("master_apps:app", "--pid", str(pid_file))
    old_master, old_worker = server.proc.pid, server.worker_pid
    server.signal(signal.SIGUSR2)
    assert wait_until(lambda: server.log.count("Portico serving") == 2, timeout=20)
    new_master = int(pid_file.read_text())
    assert new_master != old_master
    assert (tmp_path / "p.pid.oldbin").read_text() == f"{old_master}\n"
    assert "took over 1 listening socket(s)" in server.log
    try:
        # both masters serve the same socket until the old one is told to stop
        assert wait_until(lambda: len(answering_pids(server)) == 2)
        server.signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0
        pids = answering_pids(server, 10)
        assert old_worker not in pids and len(pids) == 1
    finally:
        os.kill(new_master, signal.SIGTERM)
    assert wait_until(lambda: not pid_file.exists(), timeout=20)


APP_SOURCE = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"VERSION"})
"""


def test_reload_picks_up_an_edit_and_survives_a_broken_one(
    serve: ServerFactory, tmp_path: Path
) -> None:
    source = tmp_path / "reloaded_app.py"
    source.write_text(APP_SOURCE.replace("VERSION", "one"))
    server = serve(
        "reloaded_app:app", "--reload", "--workers", "2", "--app-dir", str(tmp_path), cwd=tmp_path
    )
    assert httpx.get(server.url).text == "one"
    assert any("reloader" in cmdline(pid) for pid in children(server.proc.pid))

    def answers() -> set[str]:
        return {httpx.get(server.url).text for _ in range(20)}  # a new connection each

    source.write_text(APP_SOURCE.replace("VERSION", "two"))
    # workers are replaced one at a time: wait until the rollout is complete
    assert wait_until(lambda: server.log.count("reload complete") == 1, timeout=15)
    assert wait_until(lambda: answers() == {"two"})  # once the old workers stopped accepting

    source.write_text("this is not python\n")
    assert server.wait_for_log("failed to start", timeout=15)
    assert answers() == {"two"}  # the old workers keep serving

    source.write_text(APP_SOURCE.replace("VERSION", "three"))
    assert wait_until(lambda: server.log.count("reload complete") == 2, timeout=15)
    assert wait_until(lambda: answers() == {"three"})
    assert server.stop() == 0


def test_reload_waits_for_a_fix_when_the_app_never_started(
    serve: ServerFactory, tmp_path: Path
) -> None:
    source = tmp_path / "late_app.py"
    source.write_text("broken(\n")
    server = serve(
        "late_app:app", "--reload", "--app-dir", str(tmp_path), cwd=tmp_path, ready=False
    )
    assert server.wait_for_log("waiting for a change", timeout=15)
    assert server.proc.poll() is None
    source.write_text(APP_SOURCE.replace("VERSION", "fixed"))
    server.wait_ready()
    assert httpx.get(server.url).text == "fixed"


def test_master_imports_no_http_code() -> None:
    """DESIGN: the supervisor knows processes and signals, not HTTP; its metrics endpoint
    (prometheus_client's exposition and a handler of its own) brings none in either."""
    code = (
        "import sys\n"
        "import portico.cli, portico.supervisor.master, portico.supervisor.exporter\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('portico.protocols', "
        "'portico.gateways', 'portico.runtime.http1', 'portico.runtime.server', "
        "'portico.worker.main', 'httptools', 'uvloop', 'asyncio')))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
