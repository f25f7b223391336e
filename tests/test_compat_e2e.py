"""gunicorn's and uvicorn's command lines, run under ``portico`` with their meaning.

The two command lines of issue 15 (uvicorn's everyday one, and gunicorn with uvicorn's worker
class), a Django project started with ``django-admin`` under ``--reload``, and a
``gunicorn.conf.py`` whose hooks (prometheus-client's ``child_exit`` among them) run at gunicorn's
moments. ``--user``/``--group`` run as root only (CI), and need an interpreter the user can read.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory, ServerProcess, wait_until

ASGI_APP = """\
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = "|".join(
        [
            "VERSION",
            os.environ.get("FROM_ENV_FILE", "-"),
            os.environ.get("KEY", "-"),
            scope["root_path"],
            scope["client"][0] if scope["client"] else "-",
            str(os.getuid()),
            str(os.getgid()),
        ]
    )
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body.encode()})
"""


def test_uvicorns_everyday_command_line(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(ASGI_APP.replace("VERSION", "one"))
    (tmp_path / ".env").write_text("FROM_ENV_FILE=loaded\n")
    sock = tmp_path / "app.sock"
    command = (
        "main:app --host 0.0.0.0 --port 8000 --workers 4 --reload --proxy-headers "
        "--forwarded-allow-ips * --timeout-keep-alive 5 --limit-concurrency 100 --no-access-log "
        f"--root-path /api --uds {sock} --env-file .env --header X-A:1"
    ).split()
    server = ServerProcess(command, ready=False, cwd=tmp_path)
    try:
        assert server.wait_for_log("4 worker(s) ready", timeout=30), server.log
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as client:
            response = client.get("http://app/", headers={"X-Forwarded-For": "203.0.113.9"})
            version, from_file, _, root_path, client_ip, _, _ = response.text.split("|")
            assert (version, from_file, root_path) == ("one", "loaded", "/api")
            assert client_ip == "203.0.113.9"  # --proxy-headers with --forwarded-allow-ips '*'
            assert response.headers["x-a"] == "1"
            # uvicorn with --uds listens on the socket alone: port 8000 was never bound
            assert "--host, --port ignored" in server.log
            assert "0.0.0.0:8000" not in server.log
            (tmp_path / "main.py").write_text(ASGI_APP.replace("VERSION", "two"))
            assert wait_until(lambda: "reload complete" in server.log, timeout=30), server.log
            assert wait_until(lambda: client.get("http://app/").text.startswith("two|"))
    finally:
        assert server.stop() == 0
    assert server.log.count("--host, --port ignored") == 1  # noted once, by the master


def _readable_by_all(path: Path) -> bool:
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH or (part == path and not mode & stat.S_IROTH):
            return False
    return True


@pytest.fixture
def world_readable_install() -> Iterator[Path]:
    """A directory everyone can read with a venv that runs Portico: ``--user nobody`` workers
    import the app and the stdlib as nobody. The checkout (a ``mktemp -d`` clone in CI) and a
    pyenv interpreter under /root are not readable by nobody, so Portico and its dependencies
    are copied beside an interpreter of the same Python version that is."""
    if os.geteuid() != 0:
        pytest.skip("switching users needs root (CI runs as root)")
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [base, Path(f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}")]
    python = next((p for p in candidates if p.exists() and _readable_by_all(p.resolve())), None)
    if python is None:
        pytest.skip(f"no interpreter readable by all for Python {sys.version_info[:2]}")
    root = Path(tempfile.mkdtemp(prefix="portico-user-"))
    try:
        root.chmod(0o755)
        subprocess.run([str(python), "-m", "venv", "--without-pip", str(root / "venv")], check=True)
        site = next((root / "venv" / "lib").glob("python3*/site-packages"))
        ours = Path(sysconfig.get_paths()["purelib"])
        for name in ("httptools", "websockets", "uvloop"):
            shutil.copytree(ours / name, site / name)
        src = Path(__file__).resolve().parent.parent / "src"
        shutil.copytree(
            src / "portico", site / "portico", ignore=shutil.ignore_patterns("__pycache__")
        )
        for shared in src.glob("*__mypyc*"):  # the compiled build's runtime, beside the package
            shutil.copy2(shared, site / shared.name)
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        for path in (root / "venv" / "bin").iterdir():
            path.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_gunicorn_with_uvicorns_worker_class_and_a_user(world_readable_install: Path) -> None:
    app_dir = world_readable_install / "project"
    app_dir.mkdir(mode=0o755)
    (app_dir / "main.py").write_text(ASGI_APP.replace("VERSION", "one"))
    (app_dir / "main.py").chmod(0o644)
    command = (
        "-w 4 -k uvicorn.workers.UvicornWorker -b 127.0.0.1:0 --threads 4 -t 30 "
        "--graceful-timeout 10 --keep-alive 5 --access-logfile - --error-logfile - "
        f"--chdir {app_dir} --pythonpath {app_dir} --max-requests 1000 --max-requests-jitter 50 "
        "-e KEY=VALUE --user nobody --group nogroup main:app"
    ).split()
    python = world_readable_install / "venv" / "bin" / "python"
    server = ServerProcess(command, command=[str(python), "-m", "portico"], cwd=Path("/"))
    try:
        assert wait_until(lambda: "4 worker(s) ready" in server.log), server.log
        version, _, key, _, _, uid, gid = httpx.get(server.url).text.split("|")
        assert (version, key, uid) == ("one", "VALUE", str(pwd.getpwnam("nobody").pw_uid))
        assert gid == str(grp.getgrnam("nogroup").gr_gid)
        for pid in server.worker_pids():  # every worker, with no group of root's left
            status = Path(f"/proc/{pid}/status").read_text()
            assert f"Uid:\t{uid}\t{uid}\t{uid}" in status
            assert f"Groups:\t{gid} \n" in status or f"Groups:\t{gid}\n" in status
        assert Path(f"/proc/{server.proc.pid}/status").read_text().count("Uid:\t0") == 1
        # --access-logfile -: the worker writes the line after the response, so it may trail it
        assert wait_until(lambda: '"GET / HTTP/1.1" 200' in server.log), server.log
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_a_django_project_under_reload(tmp_path: Path, interface: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "homework", str(tmp_path)], check=True
    )
    server = ServerProcess(
        [f"homework.{interface}:application", "--reload", "--bind", "127.0.0.1:0"], cwd=tmp_path
    )
    try:
        login = httpx.get(server.url + "/admin/login/")
        assert login.status_code == 200 and "csrfmiddlewaretoken" in login.text
        assert httpx.get(server.url + "/hello/").status_code == 404
        urls = tmp_path / "homework" / "urls.py"
        urls.write_text(
            urls.read_text()
            + "\nfrom django.http import HttpResponse\n"
            + 'urlpatterns.append(path("hello/", lambda request: HttpResponse("hi")))\n'
        )
        assert wait_until(lambda: "reload complete" in server.log, timeout=30), server.log
        assert wait_until(lambda: httpx.get(server.url + "/hello/").text == "hi")
    finally:
        assert server.stop() == 0


HOOKS = """\
import os
from prometheus_client import multiprocess

bind = "127.0.0.1:0"
workers = 2
worker_class = "sync"
keepalive = 4
raw_env = ["KEY=from-conf"]
timeout = 2


def _mark(name, *args):
    with open(os.environ["HOOKS_LOG"], "a") as out:
        out.write(" ".join([name, str(os.getpid()), *map(str, args)]) + "\\n")


def on_starting(server):
    _mark("on_starting", server.pid)


def when_ready(server):
    _mark("when_ready", server.pid, server.cfg.workers, server.cfg.keepalive)


def pre_fork(server, worker):
    _mark("pre_fork", worker.age, worker.pid)


def post_fork(server, worker):
    _mark("post_fork", worker.age, worker.pid)


def post_worker_init(worker):
    _mark("post_worker_init", worker.age, worker.pid)


def worker_int(worker):
    _mark("worker_int", worker.pid)


def worker_abort(worker):
    _mark("worker_abort", worker.pid)


def worker_exit(server, worker):
    _mark("worker_exit", worker.pid)


def child_exit(server, worker):
    _mark("child_exit", worker.pid)
    multiprocess.mark_process_dead(worker.pid)


def nworkers_changed(server, new, old):
    _mark("nworkers_changed", new, old)


def on_reload(server):
    _mark("on_reload", server.pid)


def on_exit(server):
    _mark("on_exit", server.pid)
"""

PROMETHEUS_APP = """\
import os
from prometheus_client import Gauge

in_flight = Gauge("in_flight", "requests being served", multiprocess_mode="livesum")


def app(environ, start_response):
    with in_flight.track_inprogress():
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{os.environ.get('KEY')} {os.getpid()}".encode()]
"""


def _hooks(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_a_gunicorn_conf_py_with_hooks_and_prometheus(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text(HOOKS)
    (tmp_path / "wapp.py").write_text(PROMETHEUS_APP)
    prom = tmp_path / "prom"
    prom.mkdir()
    marks = tmp_path / "hooks.log"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(prom), "HOOKS_LOG": str(marks)}
    server = ServerProcess(["-c", "gunicorn.conf.py", "wapp:app"], env=env, cwd=tmp_path)
    master = server.proc.pid
    try:
        assert wait_until(lambda: "2 worker(s) ready" in server.log)
        workers = sorted(server.worker_pids())
        text, pid = httpx.get(server.url).text.split()
        assert text == "from-conf"  # raw_env
        assert int(pid) in workers
        assert (prom / f"gauge_livesum_{pid}.db").exists()
        server.signal(signal.SIGTTOU)  # one worker leaves: child_exit marks it dead
        assert wait_until(lambda: len(server.worker_pids()) == 1)
        gone = next(w for w in workers if w not in server.worker_pids())
        assert wait_until(lambda: ["child_exit", str(master), str(gone)] in _hooks(marks))
        assert not list(prom.glob(f"gauge_livesum_{gone}.db"))  # mark_process_dead ran
        server.signal(signal.SIGHUP)  # the file is read again: workers = 2
        assert wait_until(lambda: "reload complete" in server.log, timeout=30)
    finally:
        assert server.stop() == 0
    seen = _hooks(marks)
    names = [mark[0] for mark in seen]
    assert names[:2] == ["on_starting", "when_ready"]
    # cfg by gunicorn's names: keepalive is keepalive_timeout
    assert seen[1] == ["when_ready", str(master), str(master), "2", "4.0"]
    assert names[-1] == "on_exit"
    for worker in workers:  # each worker's life, in gunicorn's order
        own = [mark[0] for mark in seen if str(worker) in mark[2:] or mark[1] == str(worker)]
        assert own[:2] == ["post_fork", "post_worker_init"], own
        assert own[-2:] == ["worker_exit", "child_exit"], own
    ages = [int(mark[2]) for mark in seen if mark[0] == "pre_fork"]
    assert ages == sorted(ages) and ages[:2] == [0, 1]
    assert ["nworkers_changed", str(master), "1", "2"] in seen  # SIGTTOU
    assert "on_reload" in names


def test_worker_abort_and_worker_int_hooks(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text(HOOKS.replace("worker_class", "_unused"))
    (tmp_path / "hang.py").write_text(
        "import time\n\n\nasync def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n        return\n"
        "    if scope['path'] == '/hang':\n        time.sleep(60)  # blocks the event loop\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'ok'})\n"
    )
    marks = tmp_path / "hooks.log"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "HOOKS_LOG": str(marks)}
    command = ["-c", "gunicorn.conf.py", "-w", "1", "hang:app"]
    server = ServerProcess(command, env=env, cwd=tmp_path)
    try:
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url + "/hang", timeout=8)  # aborted (timeout = 2) under it
        assert wait_until(lambda: any(m[0] == "worker_abort" for m in _hooks(marks)))
        assert "aborting it, stacks follow" in server.log
        assert wait_until(lambda: "hang.py" in server.log)  # the stack dump names the line
        assert wait_until(lambda: httpx.get(server.url).text == "ok")  # its successor serves
        server.signal(signal.SIGQUIT)  # a fast stop: worker_int in the worker
        assert server.wait() == 0
    finally:
        server.stop()
    assert [m[0] for m in _hooks(marks)].count("worker_int") == 1


def test_capture_output_and_a_log_config(tmp_path: Path, serve: ServerFactory) -> None:
    log_file = tmp_path / "error.log"
    routed = tmp_path / "routed.log"
    config = {
        "version": 1,
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(routed)}},
        "loggers": {"portico.error": {"handlers": ["file"], "level": "INFO"}},
    }
    (tmp_path / "logging.json").write_text(json.dumps(config))
    (tmp_path / "printer.py").write_text(
        "def app(environ, start_response):\n    print('printed by the app', flush=True)\n"
        "    start_response('200 OK', [])\n    return [b'ok']\n"
    )
    server = serve(
        "printer:app",
        "--error-logfile",
        str(log_file),
        "--capture-output",
        "--log-config",
        str(tmp_path / "logging.json"),
        "--bind",
        "127.0.0.1:0",
        cwd=tmp_path,
        ready=False,
    )
    # the dictConfig gave portico.error its own handler, in place of the error log file's
    assert wait_until(lambda: routed.exists() and "serving" in routed.read_text())
    port = int(routed.read_text().split("http://127.0.0.1:")[1].split()[0])
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "ok"
    assert wait_until(lambda: "printed by the app" in log_file.read_text())  # captured
    assert server.stop() == 0


def test_a_missing_env_file_stops_the_server(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "portico", "x:app", "--env-file", "missing.env"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 2
    assert "env_file: no such file 'missing.env'" in result.stderr
