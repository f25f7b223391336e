"""The ``portico`` command: actions, exit codes, error output; some runs as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

import portico
from portico import logs
from portico.cli import main, version
from portico.config import Config
from portico.config.hooks import Hooks
from portico.errors import LifespanError, StartupError
from portico.supervisor import master

SRC = str(Path(portico.__file__).resolve().parent.parent)


def clean_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PORTICO_") and key != "WEB_CONCURRENCY"
    }
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def portico_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portico", *args],
        check=False,
        cwd=cwd,
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("PORTICO_") or key == "WEB_CONCURRENCY":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    saved_path = list(sys.path)
    yield
    sys.path[:] = saved_path
    for logger, handler in logs._installed:
        logger.removeHandler(handler)
    logs._installed.clear()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"portico {version()}\n"
    assert version() == portico.__version__ == "0.1.0"


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: portico ")
    assert "--max-body-size N" in out
    assert "[env PORTICO_MAX_BODY_SIZE]" in " ".join(out.split())


def test_print_config_shows_values_and_origins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.portico]\nbacklog = 64\nbind = ['0.0.0.0:80', 'unix:/tmp/p.sock']\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("PORTICO_LOG_LEVEL", "debug")
    assert main(["--print-config", "--workers", "2", "web:app"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(Config.__dataclass_fields__)
    table = {line.split(" = ")[0]: line for line in lines}
    assert table["app"].split() == ["app", "=", '"web:app"', "#", "argument", "APP"]
    assert table["workers"].split() == ["workers", "=", "2", "#", "flag", "--workers"]
    assert table["log_level"].endswith("# env PORTICO_LOG_LEVEL")
    assert table["backlog"].split() == ["backlog", "=", "64", "#", "file", "pyproject.toml:2"]
    assert table["bind"].startswith('bind = ["0.0.0.0:80", "unix:/tmp/p.sock"]')
    assert table["config_file"].split() == ["config_file", "=", "(unset)", "#", "default"]
    assert table["keepalive_timeout"].split() == ["keepalive_timeout", "=", "75.0", "#", "default"]
    assert len({line.index("#") for line in lines}) == 1  # origins aligned in one column


def test_unknown_env_variable_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORTICO_WOKERS", "3")
    assert main(["--check-config"]) == 0
    assert capsys.readouterr().err == (
        "portico: warning: PORTICO_WOKERS: not a Portico setting, ignored; "
        "did you mean PORTICO_WORKERS?\n"
    )


def test_config_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--max-in-flight", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "portico: error: --max-in-flight: must be >= 1, got 0\n"


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check-config"]) == 0
    assert capsys.readouterr().out == (
        "portico: configuration OK; app portico.gateways.demo:app (asgi3)\n"
    )
    (tmp_path / "cli_check_app.py").write_text("def application(e, s):\n    return []\n")
    assert main(["--check-config", "cli_check_app"]) == 0
    assert "app cli_check_app:application (wsgi)" in capsys.readouterr().out
    assert main(["--check-config", "cli_check_app:applicaton"]) == 4
    assert capsys.readouterr().err == (
        "portico: error: module 'cli_check_app' has no attribute 'applicaton'; "
        "did you mean 'application'?\n"
    )
    assert main(["--check-config", "--interface", "asgi9"]) == 2
    sys.modules.pop("cli_check_app", None)


class FakeMaster:
    """Stands in for the master, which would fork inside pytest."""

    received: ClassVar[list[Config]] = []
    error: ClassVar[StartupError | None] = None

    def __init__(
        self,
        config: Config,
        boot: object,
        reconfigure: Callable[[], tuple[Config, Hooks]],
        **kwargs: object,
    ) -> None:
        self.config = config
        self.reconfigure = reconfigure

    def run(self) -> int:
        FakeMaster.received.append(self.config)
        FakeMaster.received.append(self.reconfigure()[0])
        logs.error_log.warning("serving")
        if FakeMaster.error is not None:
            raise FakeMaster.error
        return 0


@pytest.fixture
def fake_master(monkeypatch: pytest.MonkeyPatch) -> type[FakeMaster]:
    FakeMaster.received = []
    FakeMaster.error = None
    monkeypatch.setattr(master, "Master", FakeMaster)
    return FakeMaster


def test_serve_passes_the_config_to_the_master(
    fake_master: type[FakeMaster],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["portico", "app:x", "--log-level", "warning"])
    assert main() == 0
    # SIGHUP re-reads the same command line
    assert fake_master.received == [Config(app="app:x", log_level="warning")] * 2
    assert "WARNING serving" in capsys.readouterr().err


def test_startup_error_from_the_master(
    fake_master: type[FakeMaster], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_master.error = LifespanError("lifespan startup failed: no database")
    assert main([]) == 3
    assert capsys.readouterr().err.endswith(
        "portico: error: lifespan startup failed: no database\n"
    )


def test_reload_and_preload_exclude_each_other(
    fake_master: type[FakeMaster], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--reload", "--preload", "tests.apps.asgi_apps:hello"]) == 2
    assert "--reload cannot be combined with --preload" in capsys.readouterr().err


# -- as a real process -------------------------------------------------------------------------


def test_subprocess_version_and_print_config_never_load_the_runtime(tmp_path: Path) -> None:
    result = portico_cli("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"portico {version()}\n")
    code = (
        "import sys\n"
        "from portico.cli import main\n"
        "assert main(['--print-config']) == 0\n"
        "assert main(['--check-config']) == 0\n"
        "loaded = [m for m in sys.modules if m.startswith(('portico.runtime', 'portico.worker',"
        " 'portico.protocols', 'asyncio'))]\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "LOADED []"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--workers", "0"], {}, "--workers: must be >= 1, got 0"),
        ([], {"PORTICO_WORKERS": "many"}, "PORTICO_WORKERS: expected an integer, got 'many'"),
        (
            ["--config", "portico.toml"],
            {},
            "portico.toml:3: unknown setting 'keepalive'; did you mean 'keepalive_timeout'?",
        ),
        (["--bind", "8000"], {}, "--bind: '8000': expected HOST:PORT"),
        (["--frobnicate"], {}, "--frobnicate: unknown option"),
    ],
)
def test_subprocess_errors_name_their_source_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    (tmp_path / "portico.toml").write_text("workers = 1\n# timeouts\nkeepalive = 80\n")
    result = portico_cli(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"portico: error: {message}"), result.stderr
    assert "Traceback" not in result.stderr


def test_subprocess_check_config_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text("async def app(scope, receive, send):\n    pass\n")
    (tmp_path / "bad.py").write_text("raise RuntimeError('boom at import')\n")
    ok = portico_cli("--check-config", "good:app", cwd=tmp_path)
    assert (ok.returncode, ok.stdout) == (0, "portico: configuration OK; app good:app (asgi3)\n")
    bad = portico_cli("--check-config", "bad:app", cwd=tmp_path)
    assert bad.returncode == 4
    assert bad.stderr.startswith(
        "portico: error: could not import module 'bad': RuntimeError: boom at import\n\n"
        "Traceback (most recent call last):\n"
    )
    elsewhere = portico_cli("--check-config", "--app-dir", str(tmp_path), "good", cwd=Path("/"))
    assert elsewhere.returncode == 0, elsewhere.stderr
