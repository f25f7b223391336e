"""The settings table and resolving a Config from argv, environment, file and defaults."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portico.config import SETTINGS, Config, Resolved, render_markdown, resolve
from portico.config.docs import embed
from portico.config.kinds import bind_protocol, integer, validate_bind
from portico.config.sources import _line_of
from portico.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def files(contents: Mapping[str, str]) -> object:
    """A read_text over an in-memory directory /w."""

    def read_text(path: str) -> str:
        try:
            return contents[path]
        except KeyError:
            raise FileNotFoundError(2, "No such file or directory", path) from None

    return read_text


def run(
    argv: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    fs: Mapping[str, str] | None = None,
) -> Resolved:
    return resolve(argv or [], env or {}, files(fs or {}), "/w")  # type: ignore[arg-type]


def error(
    argv: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    fs: Mapping[str, str] | None = None,
) -> str:
    with pytest.raises(ConfigError) as info:
        run(argv, env, fs)
    assert info.value.exit_code == 2
    return str(info.value)


# -- the table ---------------------------------------------------------------------------------

EXPECTED_FIELDS = {
    "app": None,
    "bind": ("127.0.0.1:8000",),
    "reuse_port": False,
    "dual_stack": False,
    "umask": None,
    "insecure_bind": (),
    "app_dir": ".",
    "factory": False,
    "interface": "auto",
    "lifespan": "auto",
    "log_level": "info",
    "access_log": False,
    "log_file": None,
    "access_log_file": None,
    "access_log_format": '{client} - - [{time}] "{request_line}" {status} {bytes} {duration_s}',
    "request_id": False,
    "log_format": "text",
    "metrics_bind": None,
    "workers": 1,
    "timeout": 30.0,
    "preload": False,
    "max_requests": 0,
    "max_requests_jitter": 0,
    "max_worker_memory": 0,
    "reload": False,
    "reload_dir": (),
    "reload_include": ("*.py",),
    "reload_exclude": (".*", "*.pyc", "__pycache__", "*~"),
    "pid_file": None,
    "threads": 8,
    "mount": (),
    "root_path": "",
    "proxy_headers": True,
    "forwarded_allow_ips": "127.0.0.1,::1",
    "proxy_headers_source": "x-forwarded",
    "proxy_protocol": False,
    "headers": (),
    "sendfile": True,
    "server_header": True,
    "date_header": True,
    "max_request_line": 8190,
    "max_header_count": 100,
    "max_header_bytes": 65536,
    "max_body_size": 1073741824,
    "header_timeout": 15.0,
    "keepalive_timeout": 75.0,
    "max_connections": 10000,
    "max_in_flight": 1000,
    "backlog": 2048,
    "loop": "auto",
    "graceful_timeout": 30.0,
    "config_file": None,
    "certfile": None,
    "keyfile": None,
    "keyfile_password": None,
    "ca_certs": None,
    "cert_reqs": "none",
    "ciphers": None,
    "tls_min_version": "1.2",
    "http_protocols": ("h1", "h2"),
    "h2_max_concurrent_streams": 100,
    "h2_initial_window_size": 262144,
    "h2_connection_window_size": 1048576,
    "h2_max_frame_size": 16384,
    "h2_header_table_size": 4096,
    "h2_enable_connect_protocol": True,
    "h2_header_block_margin": 4096,
    "h2_max_continuation_frames": 32,
    "h2_reset_budget": 200,
    "h2_control_frame_budget": 1000,
    "h2_small_window_update": 1024,
    "h2_max_queued_control_bytes": 65536,
    "h2_closed_streams_remembered": 256,
    "h2_write_timeout": 30.0,
    "chdir": None,
    "python_path": (),
    "env": (),
    "env_file": None,
    "user": None,
    "group": None,
    "initgroups": False,
    "proc_name": None,
    "capture_output": False,
    "log_config": None,
    "static": (),
    "static_index": "index.html",
    "static_hidden": False,
    "static_symlinks": "inside",
    "static_precompressed": ("br", "zstd", "gzip"),
    "static_cache_control": "no-cache",
    "static_immutable_cache_control": "public, max-age=31536000, immutable",
    "static_fingerprint": r"[.-](?=[a-f]*[0-9])(?=[0-9]*[a-f])[0-9a-f]{6,}\.[A-Za-z0-9]+$",
    "ws_max_message_size": 1048576,
    "ws_max_queue": 16,
    "ws_ping_interval": 20.0,
    "ws_ping_timeout": 20.0,
    "ws_per_message_deflate": True,
    "ws_deflate_window_bits": 12,
    "ws_deflate_memory_level": 5,
    "ws_write_limit": 65536,
    "cgi_max_vars_size": 65536,
    "cgi_max_var_count": 128,
    "fastcgi_max_management_size": 4096,
    "health_path": None,
    "shutdown_delay": 0.0,
}


def test_config_fields_are_the_public_contract() -> None:
    config = Config()
    assert {f.name: getattr(config, f.name) for f in dataclasses.fields(Config)} == EXPECTED_FIELDS
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 2  # type: ignore[misc]
    assert not hasattr(config, "__dict__")  # slotted


def test_table_rows_match_config_and_actions_are_cli_only() -> None:
    names = [s.name for s in SETTINGS if not s.cli_only]
    assert names == list(EXPECTED_FIELDS)
    actions = {s.name: s.flags for s in SETTINGS if s.cli_only}
    assert actions == {
        "help": ("--help", "-h"),
        "version": ("--version", "-v"),
        "print_config": ("--print-config",),
        "check_config": ("--check-config",),
    }
    for setting in SETTINGS:
        assert setting.doc.strip(), setting.name
        assert setting.default == (None if setting.cli_only else EXPECTED_FIELDS[setting.name]) or (
            setting.cli_only and setting.default is False
        )
        # every default passes its own validation
        if not setting.cli_only and setting.default is not None:
            raw = list(setting.default) if isinstance(setting.default, tuple) else setting.default
            assert setting.kind.convert(raw) == setting.default


def test_env_names() -> None:
    env = {s.name: s.env for s in SETTINGS}
    assert env["max_body_size"] == "PORTICO_MAX_BODY_SIZE"
    assert env["config_file"] == "PORTICO_CONFIG"
    assert env["version"] is None


def test_keepalive_doc_explains_the_proxy_timeout() -> None:
    doc = next(s.doc for s in SETTINGS if s.name == "keepalive_timeout")
    assert "60" in doc
    assert "502" in doc
    assert "620" in doc


def test_docs_settings_md_is_fresh() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), (
        "docs/settings.md is stale: run `python -m portico.config.docs > docs/settings.md`"
    )


def test_readme_settings_section_is_fresh() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == embed(readme), "README settings section is stale: run scripts/gen-docs"


def test_docs_mention_every_setting_flag_and_env() -> None:
    text = render_markdown()
    for setting in SETTINGS:
        for flag in setting.flags:
            assert f"`{flag}" in text
        if setting.env:
            assert f"`{setting.env}`" in text


# -- precedence --------------------------------------------------------------------------------


def test_defaults_when_nothing_is_given() -> None:
    resolved = run()
    assert resolved.config == Config()
    assert resolved.action == "serve"
    assert set(resolved.origins) == set(EXPECTED_FIELDS)
    assert set(resolved.origins.values()) == {"default"}
    with pytest.raises(TypeError):
        resolved.origins["workers"] = "x"  # type: ignore[index]


FILE = "/w/portico.toml"


@pytest.mark.parametrize(
    ("argv", "env", "expected", "origin"),
    [
        (["--workers", "4"], {"PORTICO_WORKERS": "3"}, 4, "flag --workers"),
        (["-w", "4"], {"PORTICO_WORKERS": "3"}, 4, "flag -w"),
        ([], {"PORTICO_WORKERS": "3", "WEB_CONCURRENCY": "5"}, 3, "env PORTICO_WORKERS"),
        ([], {"WEB_CONCURRENCY": "5"}, 5, "env WEB_CONCURRENCY"),
        ([], {}, 2, "file portico.toml:2"),
    ],
)
def test_precedence_flag_env_file_default(
    argv: list[str], env: dict[str, str], expected: int, origin: str
) -> None:
    fs = {FILE: "log_level = 'debug'\nworkers = 2\n"}
    resolved = run(["--config", "portico.toml", *argv], env, fs)
    assert resolved.config.workers == expected
    assert resolved.origins["workers"] == origin
    assert resolved.origins["log_level"] == "file portico.toml:1"
    assert resolved.origins["backlog"] == "default"
    assert resolved.origins["config_file"] == "flag --config"
    assert resolved.config.config_file == "portico.toml"


def test_every_setting_from_every_source() -> None:
    argv = ["app:x", "--access-log", "--no-date-header", "--max-body-size=0", "-b", "unix:/s"]
    env = {"PORTICO_ROOT_PATH": "/api", "PORTICO_LOOP": "ASYNCIO", "PORTICO_SERVER_HEADER": "no"}
    fs = {FILE: 'header-timeout = 2.5\nkeepalive_timeout = 620\ninterface = "wsgi"\n'}
    config = run([*argv, "--config", "portico.toml"], env, fs).config
    assert config.app == "app:x"
    assert config.access_log is True
    assert config.date_header is False
    assert config.max_body_size == 0
    assert config.bind == ("unix:/s",)
    assert config.root_path == "/api"
    assert config.loop == "asyncio"
    assert config.server_header is False
    assert config.header_timeout == 2.5
    assert config.keepalive_timeout == 620.0
    assert isinstance(config.keepalive_timeout, float)
    assert config.interface == "wsgi"


def test_bool_flag_last_one_wins() -> None:
    assert run(["--access-log", "--no-access-log"]).config.access_log is False
    assert run(["--no-access-log", "--access-log"]).config.access_log is True


def test_portico_config_env_names_the_file() -> None:
    fs = {"/etc/p.toml": "backlog = 10\n"}
    resolved = run([], {"PORTICO_CONFIG": "/etc/p.toml"}, fs)
    assert resolved.config.backlog == 10
    assert resolved.origins["backlog"] == "file /etc/p.toml:1"
    assert resolved.origins["config_file"] == "env PORTICO_CONFIG"


def test_pyproject_tool_portico() -> None:
    pyproject = (
        '[project]\nname = "x"\nworkers = 9\n\n'
        '[tool.portico]\n# comment\nworkers = 3\n"max-body-size" = 10\n\n'
        "[tool.other]\nbacklog = 1\n"
    )
    resolved = run([], {}, {"/w/pyproject.toml": pyproject})
    assert resolved.config.workers == 3
    assert resolved.config.max_body_size == 10
    assert resolved.config.backlog == 2048
    assert resolved.origins["workers"] == "file pyproject.toml:7"
    assert resolved.origins["max_body_size"] == "file pyproject.toml:8"


def test_pyproject_without_table_or_missing_is_ignored() -> None:
    assert run([], {}, {"/w/pyproject.toml": "[project]\nname='x'\n"}).config == Config()
    assert run().config == Config()


def test_config_flag_replaces_pyproject() -> None:
    fs = {"/w/pyproject.toml": "[tool.portico]\nworkers = 3\n", FILE: "backlog = 5\n"}
    config = run(["--config", "portico.toml"], {}, fs).config
    assert (config.workers, config.backlog) == (1, 5)


# -- bind --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "127.0.0.1:8000",
        "0.0.0.0:0",
        "localhost:65535",
        "example.com:80",
        "[::1]:8000",
        "[::]:80",
        "[fe80::1%eth0]:80",
        "unix:/run/portico.sock",
        "unix:relative.sock",
        "fd://3",
        "uwsgi:127.0.0.1:3031",
        "uwsgi:[::1]:3031",
        "uwsgi:unix:/run/app.sock",
        "uwsgi:fd://3",
        "fastcgi:127.0.0.1:9000",
        "fastcgi:unix:/run/app.fcgi",
        "fastcgi:fd://4",
    ],
)
def test_valid_binds(spec: str) -> None:
    assert validate_bind(spec) == spec


@pytest.mark.parametrize("host", ["localhost", "0.0.0.0", "example.com"])
def test_a_host_alone_gets_gunicorns_port(host: str) -> None:
    assert validate_bind(host) == f"{host}:8000"


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("8000", "expected HOST:PORT"),
        ("10.1", "expected HOST:PORT"),
        ("::1:8000", "in brackets"),
        ("[::1]8000", "expected [IPv6]:PORT"),
        ("[nope]:80", "not an IPv6 address"),
        ("host:99999", "port"),
        ("host:http", "port"),
        ("host:", "port"),
        (":8000", "not a host name"),
        ("bad host:80", "not a host name"),
        ("unix:", "unix:PATH"),
        ("fd://x", "fd://N"),
        ("fd://", "fd://N"),
        ("uwsgi:3031", "uwsgi:ADDRESS"),
        ("uwsgi:", "uwsgi:ADDRESS"),
        ("fastcgi:unix:", "unix:PATH"),
        ("scgi:127.0.0.1:1", "in brackets"),
    ],
)
def test_invalid_binds(spec: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        validate_bind(spec)
    assert error(["--bind", spec]).startswith("--bind: ")


def test_bind_protocol_and_tls() -> None:
    assert bind_protocol("uwsgi:unix:/run/a.sock") == ("uwsgi", "unix:/run/a.sock")
    assert bind_protocol("fastcgi:fd://3") == ("fastcgi", "fd://3")
    assert bind_protocol("unix:/run/a.sock") == ("http", "unix:/run/a.sock")
    assert bind_protocol("[::1]:80") == ("http", "[::1]:80")
    config = Config(bind=("127.0.0.1:443", "uwsgi:127.0.0.1:3031"), certfile="cert.pem")
    # nginx terminates TLS: a uwsgi or FastCGI bind never serves it
    assert config.tls_for("127.0.0.1:443") and not config.tls_for("uwsgi:127.0.0.1:3031")


def test_bind_repeatable_flag_env_list_and_file() -> None:
    resolved = run(["-b", "a:1", "--bind", "[::1]:2", "-b", "unix:/x"])
    assert resolved.config.bind == ("a:1", "[::1]:2", "unix:/x")
    assert resolved.origins["bind"] == "flag -b"
    env = {"PORTICO_BIND": " a:1, b:2\tunix:/x  fd://3 "}
    assert run([], env).config.bind == ("a:1", "b:2", "unix:/x", "fd://3")
    assert run(["--config", "p.toml"], {}, {"/w/p.toml": 'bind = ["a:1", "b:2"]'}).config.bind == (
        "a:1",
        "b:2",
    )
    assert run(["--config", "p.toml"], {}, {"/w/p.toml": 'bind = "a:1,b:2"'}).config.bind == (
        "a:1",
        "b:2",
    )


def test_bind_errors_name_their_source() -> None:
    message = error([], {"PORTICO_BIND": "a:1,80"})
    assert message.startswith("PORTICO_BIND: '80': expected HOST:PORT")
    assert error([], {"PORTICO_BIND": " , "}) == "PORTICO_BIND: expected at least one address"
    message = error(["--config", "p.toml"], {}, {"/w/p.toml": "\nbind = [1]\n"})
    assert message == "p.toml:2: bind: expected a string, got an integer"


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers: must be >= 1, got 0"),
        (["-w", "two"], "-w: expected an integer, got 'two'"),
        (["--max-body-size", "-1"], "--max-body-size: must be >= 0, got -1"),
        (["--header-timeout", "0"], "--header-timeout: must be a finite number > 0, got '0'"),
        (["--graceful-timeout", "nan"], "--graceful-timeout: must be a finite number > 0"),
        (["--keepalive-timeout", "soon"], "--keepalive-timeout: expected a number of seconds"),
        (
            ["--loop", "uvlop"],
            "--loop: invalid choice 'uvlop' (choose from auto, asyncio, uvloop)"
            "; did you mean 'uvloop'?",
        ),
        (["--root-path", "api"], "--root-path: must be empty or start with '/'"),
        (["--root-path", "/api/"], "--root-path: must be empty or start with '/'"),
        (["--wokers", "3"], "--wokers: unknown option; did you mean --workers?"),
        (["--max-body=3"], "--max-body: unknown option; did you mean --max-body-size?"),
        (["--zzzzzz"], "--zzzzzz: unknown option"),
        (["a:b", "c:d"], "unexpected argument 'c:d' (the app was already given)"),
        (["--workers"], "argument --workers/-w: expected one argument"),
        (["--version", "--print-config"], "--print-config cannot be combined with --version"),
    ],
)
def test_flag_errors(argv: list[str], message: str) -> None:
    assert error(argv).startswith(message)


def test_unknown_env_variable_is_a_warning_not_an_error() -> None:
    env = {"PORTICO_WOKERS": "3", "PORTICO_QQQ_ZZZ": "/x", "PORTICO_WORKERS": "2"}
    resolved = run([], env)
    assert resolved.config.workers == 2
    assert resolved.warnings == (
        "PORTICO_QQQ_ZZZ: not a Portico setting, ignored",
        "PORTICO_WOKERS: not a Portico setting, ignored; did you mean PORTICO_WORKERS?",
    )
    assert run().warnings == ()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORTICO_WORKERS": "0"}, "PORTICO_WORKERS: must be >= 1, got 0"),
        ({"WEB_CONCURRENCY": "x"}, "WEB_CONCURRENCY: expected an integer, got 'x'"),
        ({"PORTICO_ACCESS_LOG": "maybe"}, "PORTICO_ACCESS_LOG: expected a boolean"),
        ({"PORTICO_LOG_LEVEL": "verbose"}, "PORTICO_LOG_LEVEL: invalid choice 'verbose'"),
        ({"PORTICO_CONFIG": "nope.toml"}, "PORTICO_CONFIG: cannot read 'nope.toml': "),
    ],
)
def test_env_errors(env: dict[str, str], message: str) -> None:
    assert error([], env).startswith(message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "workers = 1\n\n\nwrkers = 2\n",
            "portico.toml:4: unknown setting 'wrkers'; did you mean 'workers'?",
        ),
        (
            "max-bdy-size = 2\n",
            "portico.toml:1: unknown setting 'max-bdy-size'; did you mean 'max-body-size'?",
        ),
        ("workers = 0\n", "portico.toml:1: workers: must be >= 1, got 0"),
        ("workers = true\n", "portico.toml:1: workers: expected an integer, got a boolean"),
        ("workers = '2'\n", None),
        ("access_log = 'yes'\n", None),
        ("header_timeout = 'x'\n", "portico.toml:1: header_timeout: expected a number of seconds"),
        ("backlog = 1.5\n", "portico.toml:1: backlog: expected an integer, got a float"),
        ("[server]\nworkers = 1\n", "portico.toml:1: unknown setting 'server'"),
        ("config_file = 'x'\n", "portico.toml:1: config_file cannot be set in a config file"),
        ("workers = 1\nworkers = 2\n", "portico.toml: invalid TOML: "),
        ("max_body_size = 1\nmax-body-size = 2\n", "portico.toml:2: max-body-size is set twice"),
        ("version = true\n", "portico.toml:1: unknown setting 'version'"),
    ],
)
def test_file_errors(text: str, message: str | None) -> None:
    fs = {FILE: text}
    if message is None:  # strings in a file are accepted where the flag would accept them
        run(["--config", "portico.toml"], {}, fs)
        return
    assert error(["--config", "portico.toml"], {}, fs).startswith(message)


def test_file_read_errors() -> None:
    assert error(["--config", "missing.toml"]) == (
        "--config: cannot read 'missing.toml': no such file"
    )

    def denied(path: str) -> str:
        raise PermissionError(13, "Permission denied", path)

    with pytest.raises(ConfigError, match=r"^pyproject.toml: cannot read 'pyproject.toml': Perm"):
        resolve([], {}, denied, "/w")

    def not_utf8(path: str) -> str:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    with pytest.raises(ConfigError, match=r"^--config: cannot read 'x.toml': not UTF-8"):
        resolve(["--config", "x.toml"], {}, not_utf8, "/w")


def test_pyproject_errors_name_the_line() -> None:
    text = "[project]\nname = 'x'\n\n[tool.portico]\nbacklog = 0\n"
    assert error([], {}, {"/w/pyproject.toml": text}) == (
        "pyproject.toml:5: backlog: must be >= 1, got 0"
    )
    assert error([], {}, {"/w/pyproject.toml": "[tool]\nportico = 3\n"}) == (
        "pyproject.toml: tool.portico must be a table"
    )
    assert error([], {}, {"/w/pyproject.toml": "[tool.portico\n"}).startswith(
        "pyproject.toml: invalid TOML"
    )


def test_line_of() -> None:
    text = (
        "workers = 1\n"
        "[tool.portico]\n"
        "  'backlog' = 2\n"
        '"loop"="auto"\n'
        "[[tool.portico.list]]\n"
        "app = 'x'\n"
        '[ tool . "portico" ]  # again\n'
        "app = 'y'\n"
    )
    assert _line_of(text, "workers", ()) == 1
    assert _line_of(text, "workers", ("tool", "portico")) is None
    assert _line_of(text, "backlog", ("tool", "portico")) == 3
    assert _line_of(text, "loop", ("tool", "portico")) == 4
    assert _line_of(text, "app", ("tool", "portico")) == 8


# -- actions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "action"),
    [
        ("--version", "version"),
        ("-h", "help"),
        ("--help", "help"),
        ("--print-config", "print_config"),
        ("--check-config", "check_config"),
    ],
)
def test_actions(flag: str, action: str) -> None:
    assert run([flag]).action == action


def test_version_and_help_ignore_a_broken_environment() -> None:
    env = {"PORTICO_WORKERS": "zero"}
    assert run(["--version"], env).config == Config()
    assert run(["--help"], env).action == "help"
    assert error(["--print-config"], env).startswith("PORTICO_WORKERS:")


# -- kinds -------------------------------------------------------------------------------------


@given(st.integers(min_value=1))
def test_integer_round_trips_as_text_and_toml(value: int) -> None:
    kind = integer(1)
    assert kind.convert(str(value)) == value
    assert kind.convert(value) == value


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_seconds_accept_only_finite_positive(value: float) -> None:
    setting = next(s for s in SETTINGS if s.name == "graceful_timeout")
    if math.isfinite(value) and value > 0:
        assert setting.kind.convert(repr(value)) == value
    else:
        with pytest.raises(ValueError):
            setting.kind.convert(value)
