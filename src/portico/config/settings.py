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
from portico.config.observability import ACCESS_LOG_FORMAT, DEFAULT_ACCESS_FORMAT, METRICS_BIND
from portico.config.setting import (
    ACTIONS,
    ENV_PREFIX,
    METADATA_KEY,
    Setting,
    gunicorn,
    setting,
    uvicorn,
)
from portico.config.settings_gateways import GatewaySettings
from portico.config.settings_http2 import HTTP2Settings
from portico.config.settings_process import ProcessSettings
from portico.config.settings_static import StaticSettings
from portico.config.settings_tls import TLSSettings
from portico.config.settings_websocket import WebSocketSettings

__all__ = ["ACTIONS", "ENV_PREFIX", "SETTINGS", "Config", "Setting"]


#: The groups declared in modules of their own (a table per concern keeps each readable), in the
#: order the reference lists them, after the settings of ``Config`` itself.
_GROUPS = (
    TLSSettings,
    HTTP2Settings,
    ProcessSettings,
    StaticSettings,
    WebSocketSettings,
    GatewaySettings,
)


@dataclass(frozen=True, slots=True)
class Config(
    GatewaySettings, HTTP2Settings, WebSocketSettings, StaticSettings, ProcessSettings, TLSSettings
):
    """Every setting of a Portico server, validated. Build it with ``portico.config.resolve``.

    The groups of ``_GROUPS`` are inherited from their own modules.
    """

    app: str | None = setting(
        None,
        kinds.OPTIONAL_STR,
        "The app to serve, as `module:attribute` (or `module`, which looks for `app`, then "
        "`application`); unset serves the built-in demo app.",
        positional="APP",
        peers=(gunicorn("wsgi_app"),),
    )
    bind: tuple[str, ...] = setting(
        ("127.0.0.1:8000",),
        kinds.BINDS,
        "Address to listen on: `HOST:PORT`, `[IPv6]:PORT`, `unix:PATH` or `fd://N` (a socket "
        "inherited from the parent, e.g. systemd); after `uwsgi:` or `fastcgi:` (e.g. "
        "`uwsgi:unix:/run/app.sock`) it speaks that protocol to nginx instead of HTTP, never "
        "TLS. Repeat the flag to listen on several; the environment variable takes a comma- "
        "or space-separated list, the file a list.",
        flags=("--bind", "-b"),
        repeatable=True,
        peers=(gunicorn("bind", "--bind", "-b"),),
    )
    reuse_port: bool = setting(
        False,
        kinds.BOOL,
        "Give each worker its own `SO_REUSEPORT` listening socket on TCP binds, so the kernel "
        "spreads connections evenly instead of waking every worker. The master keeps each "
        "socket open while its worker is replaced, so queued connections are not reset.",
        flags=("--reuse-port", "--no-reuse-port"),
        peers=(gunicorn("reuse_port", "--reuse-port"),),
    )
    dual_stack: bool = setting(
        False,
        kinds.BOOL,
        "Let an IPv6 wildcard bind (`[::]:PORT`) accept IPv4 too (clears `IPV6_V6ONLY`); off, "
        "it serves IPv6 only and `0.0.0.0:PORT` can be bound beside it.",
        flags=("--dual-stack", "--no-dual-stack"),
    )
    umask: int | None = setting(
        None,
        kinds.MODE,
        "umask applied while creating `unix:` sockets, e.g. `0o117` for a socket file of mode "
        "0660 (the group's proxy may connect); unset uses the process umask.",
        flags=("--umask",),
    )
    insecure_bind: tuple[str, ...] = setting(
        (),
        kinds.OPTIONAL_BINDS,
        "Address to listen on without TLS when `certfile` is set (hypercorn's name), e.g. "
        "port 80 beside a TLS `bind` on 443 for an app that redirects to HTTPS; the same forms "
        "as `bind`, repeatable. Without `certfile`, it is one more plain bind.",
        flags=("--insecure-bind",),
        repeatable=True,
    )
    app_dir: str = setting(
        ".",
        kinds.DIRECTORY,
        "Directory put first on `sys.path` before the app is imported.",
        flags=("--app-dir",),
        peers=(uvicorn("--app-dir"),),
    )
    factory: bool = setting(
        False,
        kinds.BOOL,
        "Treat APP as a zero-argument factory and serve what it returns.",
        flags=("--factory", "--no-factory"),
        peers=(uvicorn("--factory"),),
    )
    interface: str = setting(
        "auto",
        kinds.choice("auto", "asgi3", "asgi2", "wsgi"),
        "The app's interface; `auto` detects it from the callable's signature.",
        flags=("--interface",),
        peers=(uvicorn("--interface"),),
    )
    lifespan: str = setting(
        "auto",
        kinds.choice("auto", "on", "off"),
        "ASGI lifespan protocol: `on` requires the app to support it, `auto` tolerates an app "
        "that raises on the lifespan scope, `off` never sends it. WSGI apps have no lifespan.",
        flags=("--lifespan",),
        peers=(
            gunicorn("asgi_lifespan", "--asgi-lifespan"),
            uvicorn("--lifespan"),
        ),
    )
    log_level: str = setting(
        "info",
        kinds.choice("critical", "error", "warning", "info", "debug"),
        "Level of the error log (`portico.error`), written to stderr.",
        flags=("--log-level",),
        peers=(
            gunicorn("loglevel", "--log-level"),
            uvicorn("--log-level"),
        ),
    )
    access_log: bool = setting(
        False,
        kinds.BOOL,
        "Write one line per response to the access log (`portico.access`) on stderr. Off by "
        "default: a proxy in front usually logs requests already.",
        flags=("--access-log", "--no-access-log"),
        peers=(uvicorn("--access-log", "--no-access-log"),),
    )
    log_file: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "Append the error log to this file instead of stderr; SIGUSR1 reopens it (logrotate).",
        flags=("--log-file",),
        peers=(gunicorn("errorlog", "--error-logfile", "--log-file"),),
    )
    access_log_file: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "Append the access log to this file instead of stderr (turns on `--access-log`); "
        "SIGUSR1 reopens it.",
        flags=("--access-log-file",),
        peers=(gunicorn("accesslog", "--access-logfile"),),
    )
    access_log_format: str = setting(
        DEFAULT_ACCESS_FORMAT,
        ACCESS_LOG_FORMAT,
        "The access log's line: `common` or `combined` (Apache's), `json` (one object per "
        "line; `json:FIELD,...` picks the fields), a template of named fields "
        '(`{client_addr} "{request_line}" {status} {duration_us} {request_header:x-forwarded-for}`)'
        ' or a gunicorn format (`%(h)s "%(r)s" %(s)s %(D)s`). Fields are listed in the README.',
        flags=("--access-log-format",),
        peers=(gunicorn("access_log_format", "--access-logformat"),),
    )
    request_id: bool = setting(
        False,
        kinds.BOOL,
        "Give every request an `X-Request-ID`: the one it came with if valid (1 to 200 letters, "
        "digits and `-_.:+/=@`), else a new one, which the app sees among the request headers. "
        "It is added to the response and shown by the access log's `request_id` field.",
        flags=("--request-id", "--no-request-id"),
    )
    log_format: str = setting(
        "text",
        kinds.choice("text", "json"),
        "The error log's lines: `text`, or `json` (one object per line: time, level, pid, "
        "message and, for an error, the exception).",
        flags=("--log-format",),
    )
    metrics_bind: str | None = setting(
        None,
        METRICS_BIND,
        "Serve Prometheus metrics at `/metrics` on this address, from the master (not the app's "
        "port): requests, durations, connections, bytes and workers, summed over the workers.",
        flags=("--metrics-bind",),
    )
    workers: int = setting(
        1,
        kinds.integer(1),
        "Number of worker processes the master keeps running; SIGTTIN and SIGTTOU add and "
        "remove one. Read from `WEB_CONCURRENCY` (Heroku, Render) when `PORTICO_WORKERS` is "
        "unset. For CPU-bound apps, one per core.",
        flags=("--workers", "-w"),
        env_fallbacks=("WEB_CONCURRENCY",),
        peers=(
            gunicorn("workers", "--workers", "-w"),
            uvicorn("--workers"),
        ),
    )
    timeout: float = setting(
        30.0,
        kinds.SECONDS_OR_ZERO,
        "Seconds a worker's event loop may stay silent (no heartbeat) before the master sends "
        "it SIGABRT, which dumps every thread's Python stack to the error log, then SIGKILL, and "
        "starts a replacement. Also bounds how long a worker may take to import the app. "
        "0 disables the check.",
        flags=("--timeout", "-t"),
        peers=(
            gunicorn("timeout", "--timeout", "-t"),
            uvicorn("--timeout-worker-healthcheck"),
        ),
    )
    preload: bool = setting(
        False,
        kinds.BOOL,
        "Import the app in the master before starting the workers: they share its memory "
        "copy-on-write and start faster, but SIGHUP then cannot load changed code (restart, or "
        "use SIGUSR2).",
        flags=("--preload", "--no-preload"),
        peers=(gunicorn("preload_app", "--preload"),),
    )
    max_requests: int = setting(
        0,
        kinds.integer(0),
        "Retire a worker gracefully after it has handled this many requests (0: never), a "
        "remedy for leaks in the app; a replacement is ready before the worker stops accepting.",
        flags=("--max-requests",),
        peers=(
            gunicorn("max_requests", "--max-requests"),
            uvicorn("--limit-max-requests"),
        ),
    )
    max_requests_jitter: int = setting(
        0,
        kinds.integer(0),
        "Add a random 0..N to each worker's `--max-requests`, so workers started together do "
        "not all retire together.",
        flags=("--max-requests-jitter",),
        peers=(
            gunicorn("max_requests_jitter", "--max-requests-jitter"),
            uvicorn("--limit-max-requests-jitter"),
        ),
    )
    max_worker_memory: int = setting(
        0,
        kinds.integer(0),
        "Retire a worker gracefully when its resident memory (RSS) exceeds this many MiB "
        "(0: no limit). The master checks every second; one worker retires at a time.",
        flags=("--max-worker-memory",),
    )
    reload: bool = setting(
        False,
        kinds.BOOL,
        "Development: watch the app's source and replace the workers when it changes. An edit "
        "that breaks the import is reported and the old workers keep serving until the next "
        "change. Needs `watchfiles` (`pip install 'portico[reload]'`).",
        flags=("--reload", "--no-reload"),
        peers=(
            gunicorn("reload", "--reload"),
            uvicorn("--reload"),
        ),
    )
    reload_dir: tuple[str, ...] = setting(
        (),
        kinds.STRINGS,
        "Directory watched by `--reload` (repeatable); default: `--app-dir`.",
        flags=("--reload-dir",),
        repeatable=True,
        peers=(uvicorn("--reload-dir"),),
    )
    reload_include: tuple[str, ...] = setting(
        ("*.py",),
        kinds.STRINGS,
        "Glob of file names whose change triggers `--reload` (repeatable).",
        flags=("--reload-include",),
        repeatable=True,
        peers=(uvicorn("--reload-include"),),
    )
    reload_exclude: tuple[str, ...] = setting(
        (".*", "*.pyc", "__pycache__", "*~"),
        kinds.STRINGS,
        "Glob of file or directory names `--reload` ignores (repeatable); wins over "
        "`--reload-include`.",
        flags=("--reload-exclude",),
        repeatable=True,
        peers=(uvicorn("--reload-exclude"),),
    )
    pid_file: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "Write the master's process id to this file, and remove it on exit. During a SIGUSR2 "
        "upgrade the old master renames it to `FILE.oldbin`.",
        flags=("--pid",),
        peers=(gunicorn("pidfile", "--pid", "-p"),),
    )
    threads: int = setting(
        8,
        kinds.integer(1),
        "Threads per worker that run a WSGI app (ignored for ASGI): a request holds one while "
        "the app runs, so this many requests per worker can wait on I/O (a database, an API) "
        "at once; more wait in a queue. The GIL lets one thread compute at a time, so threads "
        "add overlap, not CPU. 8 overlaps typical I/O waits and stays within the connections "
        "a process-wide database pool allows by default (SQLAlchemy: 5 + 10 overflow), so "
        "threads do not queue for a connection (waitress uses 4 threads, mod_wsgi 15). Raise "
        "it for slow upstream calls; add workers for CPU. Threads are woken as the work needs "
        "them: one takes request after request while the app computes, and more join within "
        "a millisecond when the running ones wait on I/O.",
        flags=("--threads",),
        peers=(gunicorn("threads", "--threads"),),
    )
    mount: tuple[str, ...] = setting(
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
    root_path: str = setting(
        "",
        kinds.ROOT_PATH,
        "URL prefix the app is mounted under behind a proxy (ASGI `root_path`, WSGI "
        "`SCRIPT_NAME`), e.g. `/api`. A trusted proxy's `X-Forwarded-Prefix` replaces it for "
        "its requests.",
        flags=("--root-path",),
        peers=(
            gunicorn("root_path", "--root-path"),
            uvicorn("--root-path"),
        ),
    )
    proxy_headers: bool = setting(
        True,
        kinds.BOOL,
        "Believe the client address, scheme, host, port and prefix that proxies in "
        "`forwarded_allow_ips` report (`X-Forwarded-*` or `Forwarded`, see "
        "`proxy_headers_source`). From any other peer the headers reach the app untouched but "
        "are never applied.",
        flags=("--proxy-headers", "--no-proxy-headers"),
        peers=(uvicorn("--proxy-headers", "--no-proxy-headers"),),
    )
    forwarded_allow_ips: str = setting(
        "127.0.0.1,::1",
        kinds.ALLOW_IPS,
        "The proxies trusted with `proxy_headers` and `proxy_protocol`: comma-separated "
        "addresses and networks (`10.0.0.0/8`, `fd00::/8`), or `*` for every peer (only when "
        "nothing but the proxy can reach Portico). Peers on a unix socket are trusted. Read from "
        "`FORWARDED_ALLOW_IPS` too, as gunicorn and uvicorn do.",
        flags=("--forwarded-allow-ips",),
        env_fallbacks=("FORWARDED_ALLOW_IPS",),
        peers=(
            gunicorn("forwarded_allow_ips", "--forwarded-allow-ips"),
            uvicorn("--forwarded-allow-ips"),
        ),
    )
    proxy_headers_source: str = setting(
        "x-forwarded",
        kinds.choice("x-forwarded", "forwarded"),
        "Which family of headers trusted proxies write: `x-forwarded` (`X-Forwarded-For`, "
        "`-Proto`, `-Host`, `-Port`, `-Prefix`, as nginx, HAProxy and cloud load balancers "
        "write them) or `forwarded` (RFC 7239). The other family is ignored: a proxy vouches "
        "only for the header it writes, and passes the other one on from the client.",
        flags=("--proxy-headers-source",),
    )
    proxy_protocol: bool = setting(
        False,
        kinds.BOOL,
        "Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy's "
        "`send-proxy`/`send-proxy-v2` and AWS NLBs send it) giving the client's address; a "
        "connection without a valid one within `header_timeout`, or from a peer not in "
        "`forwarded_allow_ips`, is closed.",
        flags=("--proxy-protocol", "--no-proxy-protocol"),
        peers=(gunicorn("proxy_protocol", "--proxy-protocol"),),
    )
    headers: tuple[str, ...] = setting(
        (),
        kinds.HEADER_PAIRS,
        "A header added to every response the app or `--static` makes, `Name:Value` (repeat "
        "the flag for several), unless the response has a field of that name already: the app "
        "wins, where uvicorn would send both.",
        flags=("--header",),
        repeatable=True,
        peers=(uvicorn("--header"),),
    )
    sendfile: bool = setting(
        True,
        kinds.BOOL,
        "Send files (`--static`, `wsgi.file_wrapper`, ASGI pathsend) with the kernel's "
        "`sendfile` on plain connections; off, they are read and written, as under TLS (for "
        "file systems where sendfile misbehaves, such as some VM shared folders).",
        flags=("--sendfile", "--no-sendfile"),
        peers=(gunicorn("sendfile", "--no-sendfile"),),
    )
    server_header: bool = setting(
        True,
        kinds.BOOL,
        "Add a `Server: portico` header to responses that have none.",
        flags=("--server-header", "--no-server-header"),
        peers=(uvicorn("--server-header", "--no-server-header"),),
    )
    date_header: bool = setting(
        True,
        kinds.BOOL,
        "Add a `Date` header to responses that have none (RFC 9110 §6.6.1 asks origin servers "
        "with a clock to send one).",
        flags=("--date-header", "--no-date-header"),
        peers=(uvicorn("--date-header", "--no-date-header"),),
    )
    max_request_line: int = setting(
        8190,
        kinds.integer(1),
        "Longest request-target accepted, in bytes; longer gets 414. 8190 is Apache's limit "
        "(gunicorn's is 4094); nginx allows 8 KiB per header line.",
        flags=("--max-request-line",),
    )
    max_header_count: int = setting(
        100,
        kinds.integer(1),
        "Most header fields accepted in one request; more gets 431 (gunicorn and Apache: 100).",
        flags=("--max-header-count",),
    )
    max_header_bytes: int = setting(
        65536,
        kinds.integer(1),
        "Most bytes of header names and values accepted in one request; more gets 431.",
        flags=("--max-header-bytes",),
        peers=(uvicorn("--h11-max-incomplete-event-size"),),
    )
    max_body_size: int = setting(
        1073741824,
        kinds.integer(0),
        "Largest request body accepted, in bytes (0: unlimited); larger gets 413.",
        flags=("--max-body-size",),
    )
    header_timeout: float = setting(
        15.0,
        kinds.SECONDS,
        "Seconds a client has to send a complete request head; slower gets 408 and is closed "
        "(a defence against slowloris).",
        flags=("--header-timeout",),
    )
    keepalive_timeout: float = setting(
        75.0,
        kinds.SECONDS,
        "Seconds an idle keep-alive connection is kept open. Longer than the 60 s idle timeout "
        "of AWS ALB and of nginx upstream keep-alive, so that the proxy, not Portico, closes "
        "idle connections: a server that closes first races the proxy's next request, a known "
        "source of 502s. Behind a Google Cloud load balancer use more than its 600 s (620).",
        flags=("--keepalive-timeout",),
        peers=(
            gunicorn("keepalive", "--keep-alive"),
            uvicorn("--timeout-keep-alive"),
        ),
    )
    max_connections: int = setting(
        10000,
        kinds.integer(1),
        "Most open connections per worker; a connection over the limit gets 503 and is closed.",
        flags=("--max-connections",),
        peers=(gunicorn("worker_connections", "--worker-connections"),),
    )
    max_in_flight: int = setting(
        1000,
        kinds.integer(1),
        "Most requests being handled at once per worker; over the limit a request gets 503 "
        "with `Retry-After`.",
        flags=("--max-in-flight",),
        peers=(uvicorn("--limit-concurrency"),),
    )
    backlog: int = setting(
        2048,
        kinds.integer(1),
        "Length of the listen queue of each socket (capped by the kernel's `somaxconn`).",
        flags=("--backlog",),
        peers=(
            gunicorn("backlog", "--backlog"),
            uvicorn("--backlog"),
        ),
    )
    loop: str = setting(
        "auto",
        kinds.choice("auto", "asyncio", "uvloop"),
        "Event loop: `auto` uses uvloop when it is installed, else asyncio.",
        flags=("--loop",),
        peers=(
            gunicorn("asgi_loop", "--asgi-loop"),
            uvicorn("--loop"),
        ),
    )
    graceful_timeout: float = setting(
        30.0,
        kinds.SECONDS,
        "Seconds given to requests in flight to finish after SIGTERM before they are cut off "
        "(Kubernetes waits 30 s before SIGKILL by default).",
        flags=("--graceful-timeout",),
        peers=(
            gunicorn("graceful_timeout", "--graceful-timeout"),
            uvicorn("--timeout-graceful-shutdown"),
        ),
    )
    config_file: str | None = setting(
        None,
        kinds.TOML_FILE,
        "TOML file of settings (top-level keys are setting names), or a gunicorn config file "
        "(`FILE.py`: its settings and server hooks). Without it, `[tool.portico]` of "
        "`pyproject.toml` in the working directory is read, if present, else "
        "`gunicorn.conf.py` there, as gunicorn does.",
        flags=("--config", "-c"),
        in_file=False,
        env_name="PORTICO_CONFIG",
    )

    def tls_for(self, spec: str) -> bool:
        """Whether the bind ``spec`` serves TLS: every HTTP bind does when ``certfile`` is set,
        except the ``insecure_bind`` ones; a ``uwsgi:`` or ``fastcgi:`` bind never does."""
        return (
            self.certfile is not None
            and spec not in self.insecure_bind
            and kinds.bind_protocol(spec)[0] == "http"
        )


def _rows() -> list[dataclasses.Field[object]]:
    inherited = [dataclasses.fields(group) for group in _GROUPS]
    names = {field.name for group in inherited for field in group}
    own = [field for field in dataclasses.fields(Config) if field.name not in names]
    return own + [field for group in inherited for field in group]


#: Every setting: the fields of ``Config`` in declaration order, then each group's, then the
#: command-line actions.
SETTINGS: tuple[Setting, ...] = (
    *(dataclasses.replace(field.metadata[METADATA_KEY], name=field.name) for field in _rows()),
    *ACTIONS,
)
