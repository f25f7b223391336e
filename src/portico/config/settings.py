"""The one table of settings, and the frozen ``Config`` it describes.

Each setting is declared once, as a field of ``Config``: its name, type and default are the field's,
and the rest (flags, kind, one-line doc) rides in the field's metadata. ``SETTINGS`` is read from
those fields, and the command line, environment variables, the TOML file and ``docs/settings.md``
are all generated from ``SETTINGS`` — gunicorn's idea of declaring each setting once, without its
metaclass registry, and without uvicorn's habit of spelling a setting in seven places.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from portico.config import kinds
from portico.config.setting import ENV_PREFIX, METADATA_KEY, Setting
from portico.config.setting import setting as _setting
from portico.config.settings_http2 import HTTP2Settings

__all__ = ["ACTIONS", "ENV_PREFIX", "SETTINGS", "Config", "Setting", "by_name"]


@dataclass(frozen=True, slots=True)
class Config(HTTP2Settings):
    """Every setting of a Portico server, validated. Build it with ``portico.config.resolve``.

    The HTTP/2 settings are declared in ``settings_http2`` (inherited), each protocol's in its
    own module so that this table stays readable; they are listed after these.
    """

    app: str | None = _setting(
        None,
        kinds.OPTIONAL_STR,
        "The app to serve, as `module:attribute` (or `module`, which looks for `app`, then "
        "`application`); unset serves the built-in demo app.",
        positional="APP",
    )
    bind: tuple[str, ...] = _setting(
        ("127.0.0.1:8000",),
        kinds.BINDS,
        "Address to listen on: `HOST:PORT`, `[IPv6]:PORT`, `unix:PATH` or `fd://N` (a socket "
        "inherited from the parent, e.g. systemd). Repeat the flag to listen on several; the "
        "environment variable takes a comma- or space-separated list, the file a list.",
        flags=("--bind", "-b"),
        repeatable=True,
    )
    reuse_port: bool = _setting(
        False,
        kinds.BOOL,
        "Give each worker its own `SO_REUSEPORT` listening socket on TCP binds, so the kernel "
        "spreads connections evenly instead of waking every worker. The master keeps each "
        "socket open while its worker is replaced, so queued connections are not reset.",
        flags=("--reuse-port", "--no-reuse-port"),
    )
    dual_stack: bool = _setting(
        False,
        kinds.BOOL,
        "Let an IPv6 wildcard bind (`[::]:PORT`) accept IPv4 too (clears `IPV6_V6ONLY`); off, "
        "it serves IPv6 only and `0.0.0.0:PORT` can be bound beside it.",
        flags=("--dual-stack", "--no-dual-stack"),
    )
    umask: int | None = _setting(
        None,
        kinds.MODE,
        "umask applied while creating `unix:` sockets, e.g. `0o117` for a socket file of mode "
        "0660 (the group's proxy may connect); unset uses the process umask.",
        flags=("--umask",),
    )
    insecure_bind: tuple[str, ...] = _setting(
        (),
        kinds.OPTIONAL_BINDS,
        "Address to listen on without TLS when `certfile` is set (hypercorn's name), e.g. "
        "port 80 beside a TLS `bind` on 443 for an app that redirects to HTTPS; the same forms "
        "as `bind`, repeatable. Without `certfile`, it is one more plain bind.",
        flags=("--insecure-bind",),
        repeatable=True,
    )
    certfile: str | None = _setting(
        None,
        kinds.OPTIONAL_PATH,
        "TLS certificate chain (PEM: the server's certificate first, then its intermediates). "
        "Set, every `bind` (TCP or unix) serves TLS; SIGHUP loads it again for new "
        "connections, and a file that does not load is logged and the old one kept.",
        flags=("--certfile",),
    )
    keyfile: str | None = _setting(
        None,
        kinds.OPTIONAL_PATH,
        "The private key of `certfile` (PEM); unset, the key is read from `certfile` itself.",
        flags=("--keyfile",),
    )
    keyfile_password: str | None = _setting(
        None,
        kinds.OPTIONAL_STR,
        "Password of an encrypted `keyfile`. Prefer the environment variable or the file: a "
        "command line is visible to every user of the machine in `ps`.",
        flags=("--keyfile-password",),
        secret=True,
    )
    ca_certs: str | None = _setting(
        None,
        kinds.OPTIONAL_PATH,
        "CA certificates (PEM) that client certificates must chain to; needed when "
        "`cert_reqs` is `optional` or `required` (mutual TLS).",
        flags=("--ca-certs",),
    )
    cert_reqs: str = _setting(
        "none",
        kinds.CERT_REQS,
        "Client certificates: `none` never asks for one, `optional` asks and verifies one if "
        "the client sends it, `required` refuses clients without a valid one (mutual TLS). "
        "Apps see it in the ASGI `tls` extension and the WSGI `SSL_CLIENT_*` variables.",
        flags=("--cert-reqs",),
    )
    ciphers: str | None = _setting(
        None,
        kinds.OPTIONAL_STR,
        "OpenSSL cipher list for TLS 1.2 (e.g. `ECDHE+AESGCM:ECDHE+CHACHA20`); unset keeps "
        "Python's default, which excludes weak ciphers. TLS 1.3's suites are all strong and "
        "Python's ssl module does not let them be chosen.",
        flags=("--ciphers",),
    )
    tls_min_version: str = _setting(
        "1.2",
        kinds.choice("1.2", "1.3"),
        "Oldest TLS version accepted. 1.2 by default (1.0 and 1.1 are deprecated by RFC 8996); "
        "1.3 for clients that all support it.",
        flags=("--tls-min-version",),
    )
    http_protocols: tuple[str, ...] = _setting(
        ("h1", "h2"),
        kinds.HTTP_PROTOCOLS,
        "HTTP versions served (gunicorn's name): `h1`, `h2` or both (the default). Under TLS, "
        "ALPN picks one (`h2` first); on a plain bind a connection that opens with HTTP/2's "
        "preface is HTTP/2 (prior knowledge, RFC 9113 §3.3) and any other HTTP/1.1, on the "
        "same port. `Upgrade: h2c` is not offered (RFC 9113 deprecates it).",
        flags=("--http-protocols",),
    )
    app_dir: str = _setting(
        ".",
        kinds.DIRECTORY,
        "Directory put first on `sys.path` before the app is imported.",
        flags=("--app-dir",),
    )
    factory: bool = _setting(
        False,
        kinds.BOOL,
        "Treat APP as a zero-argument factory and serve what it returns.",
        flags=("--factory", "--no-factory"),
    )
    interface: str = _setting(
        "auto",
        kinds.choice("auto", "asgi3", "asgi2", "wsgi"),
        "The app's interface; `auto` detects it from the callable's signature.",
        flags=("--interface",),
    )
    lifespan: str = _setting(
        "auto",
        kinds.choice("auto", "on", "off"),
        "ASGI lifespan protocol: `on` requires the app to support it, `auto` tolerates an app "
        "that raises on the lifespan scope, `off` never sends it. WSGI apps have no lifespan.",
        flags=("--lifespan",),
    )
    log_level: str = _setting(
        "info",
        kinds.choice("critical", "error", "warning", "info", "debug"),
        "Level of the error log (`portico.error`), written to stderr.",
        flags=("--log-level",),
    )
    access_log: bool = _setting(
        False,
        kinds.BOOL,
        "Write one line per response to the access log (`portico.access`) on stderr. Off by "
        "default: a proxy in front usually logs requests already.",
        flags=("--access-log", "--no-access-log"),
    )
    log_file: str | None = _setting(
        None,
        kinds.OPTIONAL_PATH,
        "Append the error log to this file instead of stderr; SIGUSR1 reopens it (logrotate).",
        flags=("--log-file",),
    )
    access_log_file: str | None = _setting(
        None,
        kinds.OPTIONAL_PATH,
        "Append the access log to this file instead of stderr (turns on `--access-log`); "
        "SIGUSR1 reopens it.",
        flags=("--access-log-file",),
    )
    workers: int = _setting(
        1,
        kinds.integer(1),
        "Number of worker processes the master keeps running; SIGTTIN and SIGTTOU add and "
        "remove one. Read from `WEB_CONCURRENCY` (Heroku, Render) when `PORTICO_WORKERS` is "
        "unset. For CPU-bound apps, one per core.",
        flags=("--workers", "-w"),
        env_fallbacks=("WEB_CONCURRENCY",),
    )
    timeout: float = _setting(
        30.0,
        kinds.SECONDS_OR_ZERO,
        "Seconds a worker's event loop may stay silent (no heartbeat) before the master sends "
        "it SIGABRT, which dumps every thread's Python stack to the error log, then SIGKILL, and "
        "starts a replacement. Also bounds how long a worker may take to import the app. "
        "0 disables the check.",
        flags=("--timeout", "-t"),
    )
    preload: bool = _setting(
        False,
        kinds.BOOL,
        "Import the app in the master before starting the workers: they share its memory "
        "copy-on-write and start faster, but SIGHUP then cannot load changed code (restart, or "
        "use SIGUSR2).",
        flags=("--preload", "--no-preload"),
    )
    max_requests: int = _setting(
        0,
        kinds.integer(0),
        "Retire a worker gracefully after it has handled this many requests (0: never), a "
        "remedy for leaks in the app; a replacement is ready before the worker stops accepting.",
        flags=("--max-requests",),
    )
    max_requests_jitter: int = _setting(
        0,
        kinds.integer(0),
        "Add a random 0..N to each worker's `--max-requests`, so workers started together do "
        "not all retire together.",
        flags=("--max-requests-jitter",),
    )
    max_worker_memory: int = _setting(
        0,
        kinds.integer(0),
        "Retire a worker gracefully when its resident memory (RSS) exceeds this many MiB "
        "(0: no limit). The master checks every second; one worker retires at a time.",
        flags=("--max-worker-memory",),
    )
    reload: bool = _setting(
        False,
        kinds.BOOL,
        "Development: watch the app's source and replace the workers when it changes. An edit "
        "that breaks the import is reported and the old workers keep serving until the next "
        "change. Needs `watchfiles` (`pip install 'portico[reload]'`).",
        flags=("--reload", "--no-reload"),
    )
    reload_dir: tuple[str, ...] = _setting(
        (),
        kinds.STRINGS,
        "Directory watched by `--reload` (repeatable); default: `--app-dir`.",
        flags=("--reload-dir",),
        repeatable=True,
    )
    reload_include: tuple[str, ...] = _setting(
        ("*.py",),
        kinds.STRINGS,
        "Glob of file names whose change triggers `--reload` (repeatable).",
        flags=("--reload-include",),
        repeatable=True,
    )
    reload_exclude: tuple[str, ...] = _setting(
        (".*", "*.pyc", "__pycache__", "*~"),
        kinds.STRINGS,
        "Glob of file or directory names `--reload` ignores (repeatable); wins over "
        "`--reload-include`.",
        flags=("--reload-exclude",),
        repeatable=True,
    )
    pid_file: str | None = _setting(
        None,
        kinds.OPTIONAL_PATH,
        "Write the master's process id to this file, and remove it on exit. During a SIGUSR2 "
        "upgrade the old master renames it to `FILE.oldbin`.",
        flags=("--pid",),
    )
    threads: int = _setting(
        8,
        kinds.integer(1),
        "Threads per worker that run a WSGI app (ignored for ASGI): a request holds one while "
        "the app runs, so this many requests per worker can wait on I/O (a database, an API) "
        "at once; more wait in a queue. The GIL lets one thread compute at a time, so threads "
        "add overlap, not CPU. 8 overlaps typical I/O waits and stays within the connections "
        "a process-wide database pool allows by default (SQLAlchemy: 5 + 10 overflow), so "
        "threads do not queue for a connection (waitress uses 4 threads, mod_wsgi 15). Raise "
        "it for slow upstream calls; add workers for CPU.",
        flags=("--threads",),
    )
    mount: tuple[str, ...] = _setting(
        (),
        kinds.MOUNTS,
        "Serve another app under a URL prefix: `PREFIX=APP`, e.g. `/api=myproject.api:app`. "
        "Repeat to mount several, WSGI and ASGI mixed; the longest matching prefix wins, and the "
        "positional APP (if given) serves `/`. A WSGI app gets the prefix as `SCRIPT_NAME` and "
        "the rest as `PATH_INFO`; an ASGI app gets it as `root_path` (with `path` unchanged). "
        "Requests no app matches get 404.",
        flags=("--mount",),
        repeatable=True,
    )
    root_path: str = _setting(
        "",
        kinds.ROOT_PATH,
        "URL prefix the app is mounted under behind a proxy (ASGI `root_path`, WSGI "
        "`SCRIPT_NAME`), e.g. `/api`.",
        flags=("--root-path",),
    )
    server_header: bool = _setting(
        True,
        kinds.BOOL,
        "Add a `Server: portico` header to responses that have none.",
        flags=("--server-header", "--no-server-header"),
    )
    date_header: bool = _setting(
        True,
        kinds.BOOL,
        "Add a `Date` header to responses that have none (RFC 9110 §6.6.1 asks origin servers "
        "with a clock to send one).",
        flags=("--date-header", "--no-date-header"),
    )
    max_request_line: int = _setting(
        8190,
        kinds.integer(1),
        "Longest request-target accepted, in bytes; longer gets 414. 8190 is gunicorn's and "
        "Apache's limit; nginx allows 8 KiB per header line.",
        flags=("--max-request-line",),
    )
    max_header_count: int = _setting(
        100,
        kinds.integer(1),
        "Most header fields accepted in one request; more gets 431 (gunicorn and Apache: 100).",
        flags=("--max-header-count",),
    )
    max_header_bytes: int = _setting(
        65536,
        kinds.integer(1),
        "Most bytes of header names and values accepted in one request; more gets 431.",
        flags=("--max-header-bytes",),
    )
    max_body_size: int = _setting(
        1073741824,
        kinds.integer(0),
        "Largest request body accepted, in bytes (0: unlimited); larger gets 413.",
        flags=("--max-body-size",),
    )
    header_timeout: float = _setting(
        15.0,
        kinds.SECONDS,
        "Seconds a client has to send a complete request head; slower gets 408 and is closed "
        "(a defence against slowloris).",
        flags=("--header-timeout",),
    )
    keepalive_timeout: float = _setting(
        75.0,
        kinds.SECONDS,
        "Seconds an idle keep-alive connection is kept open. Longer than the 60 s idle timeout "
        "of AWS ALB and of nginx upstream keep-alive, so that the proxy, not Portico, closes "
        "idle connections: a server that closes first races the proxy's next request, a known "
        "source of 502s. Behind a Google Cloud load balancer use more than its 600 s (620).",
        flags=("--keepalive-timeout",),
    )
    max_connections: int = _setting(
        10000,
        kinds.integer(1),
        "Most open connections per worker; a connection over the limit gets 503 and is closed.",
        flags=("--max-connections",),
    )
    max_in_flight: int = _setting(
        1000,
        kinds.integer(1),
        "Most requests being handled at once per worker; over the limit a request gets 503 "
        "with `Retry-After`.",
        flags=("--max-in-flight",),
    )
    backlog: int = _setting(
        2048,
        kinds.integer(1),
        "Length of the listen queue of each socket (capped by the kernel's `somaxconn`).",
        flags=("--backlog",),
    )
    loop: str = _setting(
        "auto",
        kinds.choice("auto", "asyncio", "uvloop"),
        "Event loop: `auto` uses uvloop when it is installed, else asyncio.",
        flags=("--loop",),
    )
    graceful_timeout: float = _setting(
        30.0,
        kinds.SECONDS,
        "Seconds given to requests in flight to finish after SIGTERM before they are cut off "
        "(Kubernetes waits 30 s before SIGKILL by default).",
        flags=("--graceful-timeout",),
    )
    ws_max_message_size: int = _setting(
        1048576,
        kinds.integer(0),
        "Largest WebSocket message accepted, in bytes, after decompression (0: unlimited); "
        "a larger one closes the connection with 1009 (RFC 6455 §7.4.1). 1 MiB, as uvicorn "
        "and the websockets library.",
        flags=("--ws-max-message-size",),
    )
    ws_max_queue: int = _setting(
        16,
        kinds.integer(1),
        "Most received WebSocket messages waiting for the app's `receive`; when the queue is "
        "full Portico stops reading the socket (TCP pushes back on the client). Memory per "
        "connection is bounded by this times `ws_max_message_size`.",
        flags=("--ws-max-queue",),
    )
    ws_ping_interval: float = _setting(
        20.0,
        kinds.SECONDS_OR_ZERO,
        "Seconds between keepalive pings on an open WebSocket (0: no pings). Pings keep "
        "proxies from closing idle connections and find clients that vanished.",
        flags=("--ws-ping-interval",),
    )
    ws_ping_timeout: float = _setting(
        20.0,
        kinds.SECONDS,
        "Seconds a client has to answer a ping (else the connection closes with 1011) and to "
        "answer a close frame (else the TCP connection is dropped).",
        flags=("--ws-ping-timeout",),
    )
    ws_per_message_deflate: bool = _setting(
        True,
        kinds.BOOL,
        "Negotiate permessage-deflate compression (RFC 7692) with clients that offer it.",
        flags=("--ws-per-message-deflate", "--no-ws-per-message-deflate"),
    )
    ws_deflate_window_bits: int = _setting(
        12,
        kinds.integer(9, 15),
        "Base-2 log of the deflate window, for Portico's compressor and (when the client lets "
        "the server choose, RFC 7692 §7.1.2.2) the client's. zlib's compressor keeps "
        "`2 ** (bits + 2)` bytes for it and the decompressor `2 ** bits`: at 12, 20 KiB per "
        "connection instead of zlib's 160 KiB at 15, for little loss of ratio on typical "
        "messages (the websockets library's default too).",
        flags=("--ws-deflate-window-bits",),
    )
    ws_deflate_memory_level: int = _setting(
        5,
        kinds.integer(1, 9),
        "zlib memory level of the compressor (1-9): its internal state takes "
        "`2 ** (level + 9)` bytes, 16 KiB at 5 instead of 128 KiB at zlib's default 8.",
        flags=("--ws-deflate-memory-level",),
    )
    ws_write_limit: int = _setting(
        65536,
        kinds.integer(1),
        "High-water mark of a WebSocket's write buffer, in bytes: above it the app's `send` "
        "waits until the client has read enough, so a slow client slows the app instead of "
        "growing the worker's memory.",
        flags=("--ws-write-limit",),
    )
    config_file: str | None = _setting(
        None,
        kinds.TOML_FILE,
        "TOML file of settings (top-level keys are setting names). Without it, "
        "`[tool.portico]` of `pyproject.toml` in the working directory is read, if present.",
        flags=("--config",),
        in_file=False,
        env_name="PORTICO_CONFIG",
    )

    def tls_for(self, spec: str) -> bool:
        """Whether the bind ``spec`` serves TLS: every bind does when ``certfile`` is set,
        except the ``insecure_bind`` ones."""
        return self.certfile is not None and spec not in self.insecure_bind


def _action(name: str, flags: tuple[str, ...], doc: str) -> Setting:
    return Setting(name=name, kind=kinds.ACTION, default=False, doc=doc, flags=flags, cli_only=True)


#: Command-line actions: they do something instead of serving, and are not fields of ``Config``.
ACTIONS: tuple[Setting, ...] = (
    _action("help", ("--help", "-h"), "Show the command-line help and exit."),
    _action("version", ("--version",), "Print `portico X.Y.Z` and exit."),
    _action(
        "print_config",
        ("--print-config",),
        "Print every setting as `name = value  # origin` and exit.",
    ),
    _action(
        "check_config",
        ("--check-config",),
        "Validate the settings and load the app, then exit: 0 if both are fine, else the "
        "error's exit code (2 for a setting, 4 for the app).",
    ),
)

#: Every setting, in declaration order: the fields of ``Config``, then the actions.
_INHERITED = {field.name for field in dataclasses.fields(HTTP2Settings)}
SETTINGS: tuple[Setting, ...] = (
    *(
        dataclasses.replace(field.metadata[METADATA_KEY], name=field.name)
        for field in sorted(dataclasses.fields(Config), key=lambda f: f.name in _INHERITED)
    ),
    *ACTIONS,
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


def by_name(name: str) -> Setting:
    """The setting called ``name``; ``KeyError`` if there is none."""
    return _BY_NAME[name]
