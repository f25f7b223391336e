"""gunicorn's and uvicorn's command lines and gunicorn's config files, read with their meaning.

Every flag of gunicorn 27 and uvicorn 0.54 is known (an alias, a translation, a note or a
refusal); each kind is checked here on the parsed settings, and end to end in test_compat_e2e.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

import pytest

from portico.config import resolve
from portico.config.argv import build_parser, parse_argv
from portico.config.compat import OPTIONS
from portico.config.gunicorn_file import KNOWN
from portico.config.hooks import ARITY, GUNICORN_NAMES
from portico.config.settings import SETTINGS
from portico.errors import ConfigError

# `uvicorn --help` (0.54) and `gunicorn --help` (27.0), every option string
UVICORN_FLAGS = [
    "--host",
    "--port",
    "--uds",
    "--fd",
    "--reload",
    "--reload-dir",
    "--reload-include",
    "--reload-exclude",
    "--reload-delay",
    "--workers",
    "--loop",
    "--http",
    "--http2",
    "--ws",
    "--ws-max-size",
    "--ws-max-queue",
    "--ws-ping-interval",
    "--ws-ping-timeout",
    "--ws-per-message-deflate",
    "--lifespan",
    "--interface",
    "--env-file",
    "--log-config",
    "--log-level",
    "--access-log",
    "--no-access-log",
    "--use-colors",
    "--no-use-colors",
    "--proxy-headers",
    "--no-proxy-headers",
    "--server-header",
    "--no-server-header",
    "--date-header",
    "--no-date-header",
    "--forwarded-allow-ips",
    "--root-path",
    "--limit-concurrency",
    "--backlog",
    "--limit-max-requests",
    "--limit-max-requests-jitter",
    "--timeout-keep-alive",
    "--timeout-graceful-shutdown",
    "--timeout-worker-healthcheck",
    "--ssl-keyfile",
    "--ssl-certfile",
    "--ssl-keyfile-password",
    "--ssl-version",
    "--ssl-cert-reqs",
    "--ssl-ca-certs",
    "--ssl-ciphers",
    "--header",
    "--version",
    "--app-dir",
    "--h11-max-incomplete-event-size",
    "--reset-contextvars",
    "--factory",
    "--help",
]
GUNICORN_FLAGS = [
    "-h",
    "--help",
    "-v",
    "--version",
    "-c",
    "--config",
    "-b",
    "--bind",
    "--backlog",
    "-w",
    "--workers",
    "-k",
    "--worker-class",
    "--threads",
    "--worker-connections",
    "--max-requests",
    "--max-requests-jitter",
    "-t",
    "--timeout",
    "--graceful-timeout",
    "--keep-alive",
    "--limit-request-line",
    "--limit-request-fields",
    "--limit-request-field_size",
    "--reload",
    "--reload-engine",
    "--reload-extra-file",
    "--spew",
    "--check-config",
    "--print-config",
    "--preload",
    "--no-sendfile",
    "--reuse-port",
    "--chdir",
    "-D",
    "--daemon",
    "-e",
    "--env",
    "-p",
    "--pid",
    "--worker-tmp-dir",
    "-u",
    "--user",
    "-g",
    "--group",
    "-m",
    "--umask",
    "--initgroups",
    "--forwarded-allow-ips",
    "--access-logfile",
    "--disable-redirect-access-to-syslog",
    "--access-logformat",
    "--error-logfile",
    "--log-file",
    "--log-level",
    "--capture-output",
    "--logger-class",
    "--log-config",
    "--log-config-json",
    "--log-syslog-to",
    "--log-syslog",
    "--log-syslog-prefix",
    "--log-syslog-facility",
    "-R",
    "--enable-stdio-inheritance",
    "--statsd-host",
    "--dogstatsd-tags",
    "--statsd-prefix",
    "--enable-backlog-metric",
    "-n",
    "--name",
    "--pythonpath",
    "--paste",
    "--paster",
    "--proxy-protocol",
    "--proxy-allow-from",
    "--protocol",
    "--uwsgi-allow-from",
    "--keyfile",
    "--certfile",
    "--ssl-version",
    "--cert-reqs",
    "--ca-certs",
    "--suppress-ragged-eofs",
    "--do-handshake-on-connect",
    "--ciphers",
    "--http-protocols",
    "--http2-cleartext",
    "--http2-max-concurrent-streams",
    "--http2-initial-window-size",
    "--http2-max-frame-size",
    "--http2-max-header-list-size",
    "--paste-global",
    "--permit-obsolete-folding",
    "--strip-header-spaces",
    "--permit-unconventional-http-method",
    "--permit-unconventional-http-version",
    "--casefold-http-method",
    "--forwarder-headers",
    "--header-map",
    "--asgi-loop",
    "--asgi-lifespan",
    "--asgi-disconnect-grace-period",
    "--websocket-max-message-size",
    "--http-parser",
    "--root-path",
    "--dirty-app",
    "--dirty-workers",
    "--dirty-timeout",
    "--dirty-threads",
    "--dirty-graceful-timeout",
    "--control-socket",
    "--control-socket-mode",
    "--no-control-socket",
]


def values(command: str) -> dict[str, object]:
    return {name: value for name, (_, value) in parse_argv(shlex.split(command)).values.items()}


def origins(command: str) -> dict[str, str]:
    return {name: origin for name, (origin, _) in parse_argv(shlex.split(command)).values.items()}


def notes(command: str) -> tuple[str, ...]:
    return parse_argv(shlex.split(command)).notes


def refused(command: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_argv(shlex.split(command))
    return str(info.value)


@pytest.mark.parametrize("flag", sorted(set(UVICORN_FLAGS + GUNICORN_FLAGS)))
def test_every_peer_flag_is_known(flag: str) -> None:
    assert flag in build_parser()._option_string_actions


def test_every_gunicorn_config_name_is_known() -> None:
    handled = set(GUNICORN_NAMES) | {o.name for o in OPTIONS if o.name} | set(ARITY)
    handled |= {"config", "default_proc_name", "check_config", "print_config", "logconfig_dict"}
    assert sorted(KNOWN - handled) == []


# a value for each setting that a peer flag spells; booleans are given as switches
SAMPLES: Mapping[str, tuple[str, object]] = {
    "app": ("", None),
    "bind": ("0.0.0.0:9000", ("0.0.0.0:9000",)),
    "certfile": ("c.pem", "c.pem"),
    "keyfile": ("k.pem", "k.pem"),
    "keyfile_password": ("secret", "secret"),
    "ca_certs": ("ca.pem", "ca.pem"),
    "cert_reqs": ("2", "required"),
    "ciphers": ("ECDHE+AESGCM", "ECDHE+AESGCM"),
    "app_dir": ("src", "src"),
    "interface": ("wsgi", "wsgi"),
    "lifespan": ("off", "off"),
    "log_level": ("warning", "warning"),
    "log_file": ("e.log", "e.log"),
    "access_log_file": ("a.log", "a.log"),
    "access_log_format": ('%(h)s "%(r)s" %(s)s', '%(h)s "%(r)s" %(s)s'),
    "workers": ("3", 3),
    "timeout": ("12", 12.0),
    "max_requests": ("500", 500),
    "max_requests_jitter": ("20", 20),
    "reload_dir": ("src", ("src",)),
    "reload_include": ("*.html", ("*.html",)),
    "reload_exclude": ("*.tmp", ("*.tmp",)),
    "pid_file": ("p.pid", "p.pid"),
    "threads": ("4", 4),
    "root_path": ("/api", "/api"),
    "forwarded_allow_ips": ("10.0.0.0/8", "10.0.0.0/8"),
    "max_header_bytes": ("16384", 16384),
    "keepalive_timeout": ("5", 5.0),
    "max_connections": ("300", 300),
    "max_in_flight": ("100", 100),
    "backlog": ("64", 64),
    "loop": ("asyncio", "asyncio"),
    "graceful_timeout": ("10", 10.0),
    "headers": ("X-A:1", ("X-A:1",)),
    "chdir": ("/srv", "/srv"),
    "python_path": ("/srv/lib", ("/srv/lib",)),
    "env": ("KEY=VALUE", ("KEY=VALUE",)),
    "env_file": (".env", ".env"),
    "user": ("nobody", "nobody"),
    "group": ("nogroup", "nogroup"),
    "proc_name": ("shop", "shop"),
    "log_config": ("logging.ini", "logging.ini"),
    "ws_max_message_size": ("65536", 65536),
    "ws_max_queue": ("4", 4),
    "ws_ping_interval": ("5", 5.0),
    "ws_ping_timeout": ("5", 5.0),
    "http_protocols": ("h2,h1", ("h2", "h1")),
    "h2_max_concurrent_streams": ("250", 250),
    "h2_initial_window_size": ("1048576", 1048576),
    "h2_max_frame_size": ("32768", 32768),
}

ALIASES = sorted(
    (setting.name, flag)
    for setting in SETTINGS
    for peer in setting.peers
    for flag in peer.flags
    if setting.name != "app"
)


@pytest.mark.parametrize(("setting", "flag"), ALIASES)
def test_peer_spellings_set_their_setting(setting: str, flag: str) -> None:
    kind = next(s.kind for s in SETTINGS if s.name == setting)
    if kind.is_flag:
        parsed = parse_argv([flag]).values[setting]
        assert parsed == (f"flag {flag}", not flag.startswith("--no-"))
        return
    raw, expected = SAMPLES[setting]
    assert parse_argv([flag, raw]).values[setting] == (f"flag {flag}", expected)


def test_uvicorns_everyday_command_line() -> None:
    command = (
        "main:app --host 0.0.0.0 --port 8000 --workers 4 --reload --proxy-headers "
        "--forwarded-allow-ips '*' --timeout-keep-alive 5 --limit-concurrency 100 "
        "--no-access-log --root-path /api --uds /run/app.sock --env-file .env --header X-A:1"
    )
    assert values(command) == {
        "app": "main:app",
        "bind": ("unix:/run/app.sock",),  # uvicorn listens on the unix socket alone
        "workers": 4,
        "reload": True,
        "proxy_headers": True,
        "forwarded_allow_ips": "*",
        "keepalive_timeout": 5.0,
        "max_in_flight": 100,
        "access_log": False,
        "root_path": "/api",
        "env_file": ".env",
        "headers": ("X-A:1",),
    }
    assert notes(command) == (
        "--host, --port ignored: uvicorn listens on unix:/run/app.sock alone",
    )


def test_the_gunicorn_and_uvicorn_worker_recipe() -> None:
    command = (
        "-w 4 -k uvicorn.workers.UvicornWorker -b 0.0.0.0:8000 --threads 4 -t 30 "
        "--graceful-timeout 10 --keep-alive 5 --access-logfile - --error-logfile - --chdir /srv "
        "--pythonpath /srv/lib --max-requests 1000 --max-requests-jitter 50 -e KEY=VALUE "
        "--user www-data --group www-data app.main:app"
    )
    assert values(command) == {
        "app": "app.main:app",
        "workers": 4,
        "bind": ("0.0.0.0:8000",),
        "threads": 4,
        "timeout": 30.0,
        "graceful_timeout": 10.0,
        "keepalive_timeout": 5.0,
        "access_log_file": "-",
        "log_file": "-",
        "chdir": "/srv",
        "python_path": ("/srv/lib",),
        "max_requests": 1000,
        "max_requests_jitter": 50,
        "env": ("KEY=VALUE",),
        "user": "www-data",
        "group": "www-data",
    }
    assert origins(command)["keepalive_timeout"] == "flag --keep-alive"
    assert notes(command) == (
        "-k uvicorn.workers.UvicornWorker: Portico serves ASGI apps itself (no worker class "
        "needed)",
    )


def test_host_and_port_make_one_bind() -> None:
    assert values("--host 0.0.0.0 --port 9000")["bind"] == ("0.0.0.0:9000",)
    assert values("--port 9000")["bind"] == ("127.0.0.1:9000",)  # uvicorn's default host
    assert values("--host ::")["bind"] == ("[::]:8000",)
    assert origins("--host 0.0.0.0 --port 9000")["bind"] == "flag --host/--port"
    assert values("--fd 3")["bind"] == ("fd://3",)
    assert "give one of them" in refused("--bind 127.0.0.1:1 --port 2")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("-k sync", {"threads": 1}),  # a sync worker runs one request at a time
        ("-k gthread --threads 4", {"threads": 4}),
        ("--threads 4 -k sync", {"threads": 4}),
        ("-k egg:gunicorn#gthread", {"threads": 1}),
        ("-k uvicorn_worker.UvicornWorker", {}),
        ("-k asgi", {}),
    ],
)
def test_worker_classes_that_portico_serves(command: str, expected: dict[str, object]) -> None:
    assert values(command) == expected
    assert len(notes(command)) == 1


@pytest.mark.parametrize("name", ["gevent", "eventlet", "tornado", "gevent_pywsgi"])
def test_green_worker_classes_are_refused_with_the_alternative(name: str) -> None:
    message = refused(f"-k {name}")
    assert message.startswith("-k: ")
    assert "--threads N" in message and "ASGI" in message


def test_an_unknown_worker_class_is_refused() -> None:
    assert "unknown worker class 'myworkers.Custom'" in refused("-k myworkers.Custom")


@pytest.mark.parametrize(
    ("command", "setting", "value", "note"),
    [
        ("--proxy-protocol", "proxy_protocol", True, ""),
        ("--proxy-protocol v2", "proxy_protocol", True, "reads both versions"),
        ("--proxy-protocol=v1", "proxy_protocol", True, "reads both versions"),
        ("--proxy-protocol off", "proxy_protocol", False, ""),
        ("--ws-per-message-deflate false", "ws_per_message_deflate", False, ""),
        ("--ws-per-message-deflate=true", "ws_per_message_deflate", True, ""),
        ("--reload=no", "reload", False, ""),
        ("--log-level trace", "log_level", "debug", "no trace level"),
        ("--limit-request-line 4094", "max_request_line", 4094, ""),
        ("--limit-request-fields 50", "max_header_count", 50, ""),
        ("-m 0o117", "umask", 0o117, ""),
        ("-m 0117", "umask", 0o117, ""),
        ("-m 18", "umask", 0o22, ""),  # gunicorn reads it as decimal
        ("--proxy-allow-from 10.0.0.1", "forwarded_allow_ips", "10.0.0.1", ""),
        ("--cert-reqs 1", "cert_reqs", "optional", ""),
        ("-b localhost", "bind", ("localhost:8000",), ""),
        ("--no-sendfile", "sendfile", False, ""),
    ],
)
def test_translations(command: str, setting: str, value: object, note: str) -> None:
    assert values(command)[setting] == value
    assert note in " ".join(notes(command))


def test_a_proxy_protocol_switch_before_the_app_leaves_the_app() -> None:
    assert values("--proxy-protocol app:app") == {"proxy_protocol": True, "app": "app:app"}


def test_extra_reload_files_are_watched_beside_the_app() -> None:
    got = values("--reload --reload-extra-file /srv/conf/settings.yaml")
    assert got["reload_dir"] == (".", "/srv/conf")
    assert got["reload_include"] == ("*.py", "settings.yaml")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("--limit-request-line 0", "gunicorn's 0 means no limit"),
        ("--limit-request-fields 0", "gunicorn's 0 means no limit"),
        ("--forwarded-allow-ips 10.0.0.1 --proxy-allow-from 10.0.0.2", "one list of proxies"),
        ("-D", "stays in the foreground"),
        ("--daemon", "stays in the foreground"),
        ("--statsd-host localhost:8125", "Prometheus"),
        ("--log-syslog", "SysLogHandler"),
        ("--paste app.ini", "paste.deploy.loadapp"),
        ("--permit-obsolete-folding", "ambiguous input is rejected"),
        ("--header-map dangerous", "drops header names with underscores"),
        ("--ssl-version 3", "RFC 8996"),
        ("--ws none", "always speaks WebSocket"),
        ("--dirty-workers 2", "task queue"),
        ("--umask 117", "ambiguous"),
    ],
)
def test_refusals_name_the_flag_and_the_alternative(command: str, message: str) -> None:
    assert message in refused(command)


@pytest.mark.parametrize(
    "command",
    [
        "--http httptools",
        "--ws websockets",
        "--use-colors",
        "--reload-delay 0.5",
        "--worker-tmp-dir /dev/shm",
        "--limit-request-field_size 8190",
        "--ssl-version 2",
        "-R",
        "--header-map drop",
        "--control-socket /tmp/x.ctl",
    ],
)
def test_meaningless_flags_are_accepted_with_a_note(command: str) -> None:
    assert values(command) == {}
    assert len(notes(command)) == 1


# -- a gunicorn config file --------------------------------------------------------------------

CONF = """\
import multiprocessing

bind = ["127.0.0.1:9000", "unix:/tmp/app.sock"]
workers = multiprocessing.cpu_count() * 0 + 3
worker_class = "sync"
keepalive = 5
raw_env = ["A=1", "B=two words"]
preload_app = True
daemon = False
accesslog = "-"
user = 1000
helper = "ignored, as gunicorn ignores it"


def post_fork(server, worker):
    pass


def child_exit(server, worker):
    pass
"""


def read(text: str, argv: list[str] | None = None) -> object:
    fs = {"/w/gunicorn.conf.py": text}

    def read_text(path: str) -> str:
        if path not in fs:
            raise FileNotFoundError(path)
        return fs[path]

    return resolve(argv if argv is not None else ["-c", "gunicorn.conf.py"], {}, read_text, "/w")


def test_a_gunicorn_config_file_maps_its_names() -> None:
    resolved = read(CONF)
    config = resolved.config  # type: ignore[attr-defined]
    assert config.bind == ("127.0.0.1:9000", "unix:/tmp/app.sock")
    assert config.workers == 3
    assert config.threads == 1  # worker_class = "sync"
    assert config.keepalive_timeout == 5.0
    assert config.env == ("A=1", "B=two words")
    assert config.preload is True
    assert config.access_log_file == "-"
    assert config.user == "1000"
    assert resolved.origins["keepalive_timeout"] == "file gunicorn.conf.py:6"  # type: ignore[attr-defined]
    assert set(resolved.hooks.functions) == {"post_fork", "child_exit"}  # type: ignore[attr-defined]


def test_the_command_line_wins_over_the_gunicorn_file() -> None:
    config = read(CONF, ["-c", "gunicorn.conf.py", "-w", "5", "--threads", "2"]).config  # type: ignore[attr-defined]
    assert (config.workers, config.threads) == (5, 2)


def test_gunicorn_conf_py_is_read_without_c_as_gunicorn_does() -> None:
    resolved = read("workers = 2\n", [])
    assert resolved.config.workers == 2  # type: ignore[attr-defined]
    assert "read ./gunicorn.conf.py" in resolved.notes[0]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("statsd_host = 'localhost:8125'\n", "gunicorn.conf.py:1: statsd_host: StatsD"),
        ("worker_class = 'gevent'\n", "gunicorn.conf.py:1: worker_class: gevent workers"),
        ("def post_fork(server):\n    pass\n", "post_fork must take 2 argument(s)"),
        ("on_starting = 3\n", "on_starting must be a function"),
        ("pre_request = lambda worker, req: None\n", "wrap the app in a WSGI or ASGI middleware"),
        ("workers = 0\n", "gunicorn.conf.py:1: workers: must be >= 1"),
        ("workers = (\n", "invalid Python"),
        ("raise RuntimeError('boom')\n", "running it raised RuntimeError: boom"),
    ],
)
def test_gunicorn_file_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read(text)
