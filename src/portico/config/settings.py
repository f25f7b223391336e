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
from portico.config.setting import ACTIONS, ENV_PREFIX, METADATA_KEY, Setting, setting

__all__ = ["ACTIONS", "ENV_PREFIX", "SETTINGS", "Config", "Setting"]


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of a Portico server, validated. Build it with ``portico.config.resolve``."""

    app: str | None = setting(
        None,
        kinds.OPTIONAL_STR,
        "The app to serve, as `module:attribute` (or `module`, which looks for `app`, then "
        "`application`); unset serves the built-in demo app.",
        positional="APP",
    )
    bind: tuple[str, ...] = setting(
        ("127.0.0.1:8000",),
        kinds.BINDS,
        "Address to listen on: `HOST:PORT`, `[IPv6]:PORT`, `unix:PATH` or `fd://N` (a socket "
        "inherited from the parent, e.g. systemd). Repeat the flag to listen on several; the "
        "environment variable takes a comma- or space-separated list, the file a list.",
        flags=("--bind", "-b"),
        repeatable=True,
    )
    reuse_port: bool = setting(
        False,
        kinds.BOOL,
        "Give each worker its own `SO_REUSEPORT` listening socket on TCP binds, so the kernel "
        "spreads connections evenly instead of waking every worker. The master keeps each "
        "socket open while its worker is replaced, so queued connections are not reset.",
        flags=("--reuse-port", "--no-reuse-port"),
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
    certfile: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "TLS certificate chain (PEM: the server's certificate first, then its intermediates). "
        "Set, every `bind` (TCP or unix) serves TLS; SIGHUP loads it again for new "
        "connections, and a file that does not load is logged and the old one kept.",
        flags=("--certfile",),
    )
    keyfile: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "The private key of `certfile` (PEM); unset, the key is read from `certfile` itself.",
        flags=("--keyfile",),
    )
    keyfile_password: str | None = setting(
        None,
        kinds.OPTIONAL_STR,
        "Password of an encrypted `keyfile`. Prefer the environment variable or the file: a "
        "command line is visible to every user of the machine in `ps`.",
        flags=("--keyfile-password",),
        secret=True,
    )
    ca_certs: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "CA certificates (PEM) that client certificates must chain to; needed when "
        "`cert_reqs` is `optional` or `required` (mutual TLS).",
        flags=("--ca-certs",),
    )
    cert_reqs: str = setting(
        "none",
        kinds.CERT_REQS,
        "Client certificates: `none` never asks for one, `optional` asks and verifies one if "
        "the client sends it, `required` refuses clients without a valid one (mutual TLS). "
        "Apps see it in the ASGI `tls` extension and the WSGI `SSL_CLIENT_*` variables.",
        flags=("--cert-reqs",),
    )
    ciphers: str | None = setting(
        None,
        kinds.OPTIONAL_STR,
        "OpenSSL cipher list for TLS 1.2 (e.g. `ECDHE+AESGCM:ECDHE+CHACHA20`); unset keeps "
        "Python's default, which excludes weak ciphers. TLS 1.3's suites are all strong and "
        "Python's ssl module does not let them be chosen.",
        flags=("--ciphers",),
    )
    tls_min_version: str = setting(
        "1.2",
        kinds.choice("1.2", "1.3"),
        "Oldest TLS version accepted. 1.2 by default (1.0 and 1.1 are deprecated by RFC 8996); "
        "1.3 for clients that all support it.",
        flags=("--tls-min-version",),
    )
    app_dir: str = setting(
        ".",
        kinds.DIRECTORY,
        "Directory put first on `sys.path` before the app is imported.",
        flags=("--app-dir",),
    )
    factory: bool = setting(
        False,
        kinds.BOOL,
        "Treat APP as a zero-argument factory and serve what it returns.",
        flags=("--factory", "--no-factory"),
    )
    interface: str = setting(
        "auto",
        kinds.choice("auto", "asgi3", "asgi2", "wsgi"),
        "The app's interface; `auto` detects it from the callable's signature.",
        flags=("--interface",),
    )
    lifespan: str = setting(
        "auto",
        kinds.choice("auto", "on", "off"),
        "ASGI lifespan protocol: `on` requires the app to support it, `auto` tolerates an app "
        "that raises on the lifespan scope, `off` never sends it. WSGI apps have no lifespan.",
        flags=("--lifespan",),
    )
    log_level: str = setting(
        "info",
        kinds.choice("critical", "error", "warning", "info", "debug"),
        "Level of the error log (`portico.error`), written to stderr.",
        flags=("--log-level",),
    )
    access_log: bool = setting(
        False,
        kinds.BOOL,
        "Write one line per response to the access log (`portico.access`) on stderr. Off by "
        "default: a proxy in front usually logs requests already.",
        flags=("--access-log", "--no-access-log"),
    )
    log_file: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "Append the error log to this file instead of stderr; SIGUSR1 reopens it (logrotate).",
        flags=("--log-file",),
    )
    access_log_file: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "Append the access log to this file instead of stderr (turns on `--access-log`); "
        "SIGUSR1 reopens it.",
        flags=("--access-log-file",),
    )
    access_log_format: str = setting(
        DEFAULT_ACCESS_FORMAT,
        ACCESS_LOG_FORMAT,
        "The access log's line: `common` or `combined` (Apache's), `json` (one object per "
        "line; `json:FIELD,...` picks the fields), a template of named fields "
        '(`{client_addr} "{request_line}" {status} {duration_us} {request_header:x-forwarded-for}`)'
        ' or a gunicorn format (`%(h)s "%(r)s" %(s)s %(D)s`). Fields are listed in the README.',
        flags=("--access-log-format",),
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
    )
    timeout: float = setting(
        30.0,
        kinds.SECONDS_OR_ZERO,
        "Seconds a worker's event loop may stay silent (no heartbeat) before the master sends "
        "it SIGABRT, which dumps every thread's Python stack to the error log, then SIGKILL, and "
        "starts a replacement. Also bounds how long a worker may take to import the app. "
        "0 disables the check.",
        flags=("--timeout", "-t"),
    )
    preload: bool = setting(
        False,
        kinds.BOOL,
        "Import the app in the master before starting the workers: they share its memory "
        "copy-on-write and start faster, but SIGHUP then cannot load changed code (restart, or "
        "use SIGUSR2).",
        flags=("--preload", "--no-preload"),
    )
    max_requests: int = setting(
        0,
        kinds.integer(0),
        "Retire a worker gracefully after it has handled this many requests (0: never), a "
        "remedy for leaks in the app; a replacement is ready before the worker stops accepting.",
        flags=("--max-requests",),
    )
    max_requests_jitter: int = setting(
        0,
        kinds.integer(0),
        "Add a random 0..N to each worker's `--max-requests`, so workers started together do "
        "not all retire together.",
        flags=("--max-requests-jitter",),
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
    )
    reload_dir: tuple[str, ...] = setting(
        (),
        kinds.STRINGS,
        "Directory watched by `--reload` (repeatable); default: `--app-dir`.",
        flags=("--reload-dir",),
        repeatable=True,
    )
    reload_include: tuple[str, ...] = setting(
        ("*.py",),
        kinds.STRINGS,
        "Glob of file names whose change triggers `--reload` (repeatable).",
        flags=("--reload-include",),
        repeatable=True,
    )
    reload_exclude: tuple[str, ...] = setting(
        (".*", "*.pyc", "__pycache__", "*~"),
        kinds.STRINGS,
        "Glob of file or directory names `--reload` ignores (repeatable); wins over "
        "`--reload-include`.",
        flags=("--reload-exclude",),
        repeatable=True,
    )
    pid_file: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "Write the master's process id to this file, and remove it on exit. During a SIGUSR2 "
        "upgrade the old master renames it to `FILE.oldbin`.",
        flags=("--pid",),
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
        "it for slow upstream calls; add workers for CPU.",
        flags=("--threads",),
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
    )
    proxy_headers: bool = setting(
        True,
        kinds.BOOL,
        "Believe the client address, scheme, host, port and prefix that proxies in "
        "`forwarded_allow_ips` report (`X-Forwarded-*` or `Forwarded`, see "
        "`proxy_headers_source`). From any other peer the headers reach the app untouched but "
        "are never applied.",
        flags=("--proxy-headers", "--no-proxy-headers"),
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
    )
    static: tuple[str, ...] = setting(
        (),
        kinds.STATIC_MOUNTS,
        "Serve the files of a folder under a URL prefix without calling the app: "
        "`PREFIX=DIR`, e.g. `/static=./public`, repeatable. GET and HEAD with ETag, "
        "Last-Modified, conditional requests and ranges; nothing outside the folder is ever "
        "served.",
        flags=("--static",),
        repeatable=True,
    )
    static_index: str = setting(
        "index.html",
        kinds.STR,
        "The file served for a directory path (`/static/docs/`); empty: directories are 404. "
        "Directories are never listed.",
        flags=("--static-index",),
    )
    static_hidden: bool = setting(
        False,
        kinds.BOOL,
        "Serve names that start with a dot (`.well-known`, but also `.env` and `.git`, which "
        "is why it is off).",
        flags=("--static-hidden", "--no-static-hidden"),
    )
    static_symlinks: str = setting(
        "inside",
        kinds.choice("deny", "inside", "follow"),
        "Symbolic links under a static folder: `inside` follows one only to a place inside the "
        "folder, `deny` never follows one, `follow` follows any (the folder's owner decides "
        "what is served).",
        flags=("--static-symlinks",),
    )
    static_precompressed: tuple[str, ...] = setting(
        ("br", "zstd", "gzip"),
        kinds.CODINGS,
        "Precompressed siblings looked for (`app.js.br`, `app.js.zst`, `app.js.gz`), chosen "
        "by the client's `Accept-Encoding`, in this order of preference when it likes several; "
        "empty: none.",
        flags=("--static-precompressed",),
        repeatable=True,
    )
    static_cache_control: str = setting(
        "no-cache",
        kinds.STR,
        "`Cache-Control` of a static file (empty: none). `no-cache` lets browsers keep it and "
        "revalidate each time, which the ETag makes a cheap 304.",
        flags=("--static-cache-control",),
    )
    static_immutable_cache_control: str = setting(
        "public, max-age=31536000, immutable",
        kinds.STR,
        "`Cache-Control` of a fingerprinted file name (`app.3f2a9c.js`, see "
        "`static_fingerprint`): its content never changes under that name.",
        flags=("--static-immutable-cache-control",),
    )
    static_fingerprint: str = setting(
        r"[.-](?=[a-f]*[0-9])(?=[0-9]*[a-f])[0-9a-f]{6,}\.[A-Za-z0-9]+$",
        kinds.REGEX,
        "A regular expression searched in a file name that marks it fingerprinted: by default "
        "a dot or dash, 6 or more lower-case hex digits with a letter and a digit among them, "
        "and the extension (webpack, Django's ManifestStaticFilesStorage, Rails, esbuild). "
        "Empty: no name is.",
        flags=("--static-fingerprint",),
    )
    server_header: bool = setting(
        True,
        kinds.BOOL,
        "Add a `Server: portico` header to responses that have none.",
        flags=("--server-header", "--no-server-header"),
    )
    date_header: bool = setting(
        True,
        kinds.BOOL,
        "Add a `Date` header to responses that have none (RFC 9110 §6.6.1 asks origin servers "
        "with a clock to send one).",
        flags=("--date-header", "--no-date-header"),
    )
    max_request_line: int = setting(
        8190,
        kinds.integer(1),
        "Longest request-target accepted, in bytes; longer gets 414. 8190 is gunicorn's and "
        "Apache's limit; nginx allows 8 KiB per header line.",
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
    )
    max_connections: int = setting(
        10000,
        kinds.integer(1),
        "Most open connections per worker; a connection over the limit gets 503 and is closed.",
        flags=("--max-connections",),
    )
    max_in_flight: int = setting(
        1000,
        kinds.integer(1),
        "Most requests being handled at once per worker; over the limit a request gets 503 "
        "with `Retry-After`.",
        flags=("--max-in-flight",),
    )
    backlog: int = setting(
        2048,
        kinds.integer(1),
        "Length of the listen queue of each socket (capped by the kernel's `somaxconn`).",
        flags=("--backlog",),
    )
    loop: str = setting(
        "auto",
        kinds.choice("auto", "asyncio", "uvloop"),
        "Event loop: `auto` uses uvloop when it is installed, else asyncio.",
        flags=("--loop",),
    )
    graceful_timeout: float = setting(
        30.0,
        kinds.SECONDS,
        "Seconds given to requests in flight to finish after SIGTERM before they are cut off "
        "(Kubernetes waits 30 s before SIGKILL by default).",
        flags=("--graceful-timeout",),
    )
    ws_max_message_size: int = setting(
        1048576,
        kinds.integer(0),
        "Largest WebSocket message accepted, in bytes, after decompression (0: unlimited); "
        "a larger one closes the connection with 1009 (RFC 6455 §7.4.1). 1 MiB, as uvicorn "
        "and the websockets library.",
        flags=("--ws-max-message-size",),
    )
    ws_max_queue: int = setting(
        16,
        kinds.integer(1),
        "Most received WebSocket messages waiting for the app's `receive`; when the queue is "
        "full Portico stops reading the socket (TCP pushes back on the client). Memory per "
        "connection is bounded by this times `ws_max_message_size`.",
        flags=("--ws-max-queue",),
    )
    ws_ping_interval: float = setting(
        20.0,
        kinds.SECONDS_OR_ZERO,
        "Seconds between keepalive pings on an open WebSocket (0: no pings). Pings keep "
        "proxies from closing idle connections and find clients that vanished.",
        flags=("--ws-ping-interval",),
    )
    ws_ping_timeout: float = setting(
        20.0,
        kinds.SECONDS,
        "Seconds a client has to answer a ping (else the connection closes with 1011) and to "
        "answer a close frame (else the TCP connection is dropped).",
        flags=("--ws-ping-timeout",),
    )
    ws_per_message_deflate: bool = setting(
        True,
        kinds.BOOL,
        "Negotiate permessage-deflate compression (RFC 7692) with clients that offer it.",
        flags=("--ws-per-message-deflate", "--no-ws-per-message-deflate"),
    )
    ws_deflate_window_bits: int = setting(
        12,
        kinds.integer(9, 15),
        "Base-2 log of the deflate window, for Portico's compressor and (when the client lets "
        "the server choose, RFC 7692 §7.1.2.2) the client's. zlib's compressor keeps "
        "`2 ** (bits + 2)` bytes for it and the decompressor `2 ** bits`: at 12, 20 KiB per "
        "connection instead of zlib's 160 KiB at 15, for little loss of ratio on typical "
        "messages (the websockets library's default too).",
        flags=("--ws-deflate-window-bits",),
    )
    ws_deflate_memory_level: int = setting(
        5,
        kinds.integer(1, 9),
        "zlib memory level of the compressor (1-9): its internal state takes "
        "`2 ** (level + 9)` bytes, 16 KiB at 5 instead of 128 KiB at zlib's default 8.",
        flags=("--ws-deflate-memory-level",),
    )
    ws_write_limit: int = setting(
        65536,
        kinds.integer(1),
        "High-water mark of a WebSocket's write buffer, in bytes: above it the app's `send` "
        "waits until the client has read enough, so a slow client slows the app instead of "
        "growing the worker's memory.",
        flags=("--ws-write-limit",),
    )
    config_file: str | None = setting(
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


#: Every setting, in declaration order: the fields of ``Config``, then the actions.
SETTINGS: tuple[Setting, ...] = (
    *(
        dataclasses.replace(field.metadata[METADATA_KEY], name=field.name)
        for field in dataclasses.fields(Config)
    ),
    *ACTIONS,
)
