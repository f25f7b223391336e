"""The peer options Portico accepts with a note, and the ones it refuses, as data.

Each row is ``(peer, flags, gunicorn's config-file name, takes, text)``: for a noted option the
text says what Portico does instead (logged once at start); for a refused one, why not and what
to use (the error message). ``portico.config.compat`` turns the rows into options.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["NOTED", "REFUSED", "Takes"]

Takes = Literal["value", "switch"]

_G, _U = "gunicorn", "uvicorn"
_STRICT = "Portico never accepts it: ambiguous input is rejected, not guessed (RFC 9112 §2.2, §5.2)"
_NO_STATSD = (
    "StatsD is not supported; Portico's master serves Prometheus metrics instead: "
    "--metrics-bind ADDRESS (pip install 'portico[metrics]')"
)
_NO_SYSLOG = "syslog output is not built in: use --log-config with a logging.handlers.SysLogHandler"
_NO_DIRTY = (
    "there is no dirty-worker pool: run long tasks in a task queue (Celery, RQ, arq) or a "
    "thread of the app"
)
_PLAIN = "Portico parses HTTP/1.1 itself"
_NO_SOCKET = "Portico has no control socket; signals control it (HUP, TTIN/TTOU, USR2)"
_NO_HOOK = "per-request hooks are not run: wrap the app in a WSGI or ASGI middleware"
# (peer, flags, gunicorn's config-file name, takes, what Portico does instead)
NOTED: tuple[tuple[str, str, str, Takes, str], ...] = (
    (_U, "--http", "", "value", f"{_PLAIN} (--http ignored)"),
    (_G, "--http-parser", "http_parser", "value", f"{_PLAIN} (--http-parser ignored)"),
    (_U, "--use-colors --no-use-colors", "", "switch", "Portico's logs are never coloured"),
    (_U, "--http2", "", "switch", "Portico serves HTTP/2 by default (--http-protocols h1,h2)"),
    (_U, "--reload-delay", "", "value", "Portico's watcher waits for changes to settle itself"),
    (_G, "--reload-engine", "reload_engine", "value", "Portico watches with watchfiles (inotify)"),
    (_U, "--reset-contextvars", "", "switch", "each request runs in a fresh copy of the context"),
    (
        _G,
        "--worker-tmp-dir",
        "worker_tmp_dir",
        "value",
        "Portico's heartbeat is a pipe, not a temporary file: nothing is written there",
    ),
    (
        _G,
        "-R --enable-stdio-inheritance",
        "enable_stdio_inheritance",
        "switch",
        "the workers always write to the master's stdout and stderr",
    ),
    (
        _G,
        "--disable-redirect-access-to-syslog",
        "disable_redirect_access_to_syslog",
        "switch",
        "Portico never sends the access log to syslog",
    ),
    (
        _G,
        "--suppress-ragged-eofs",
        "suppress_ragged_eofs",
        "switch",
        "a TLS client that leaves without close_notify ends its connection quietly",
    ),
    (
        _G,
        "--do-handshake-on-connect",
        "do_handshake_on_connect",
        "switch",
        "the TLS handshake starts as soon as a connection is accepted, off the app's time",
    ),
    (
        _G,
        "--asgi-disconnect-grace-period",
        "asgi_disconnect_grace_period",
        "value",
        "an app whose client left gets http.disconnect and may run to its end",
    ),
    (_G, "--control-socket", "control_socket", "value", _NO_SOCKET),
    (_G, "--control-socket-mode", "control_socket_mode", "value", _NO_SOCKET),
    (_G, "--no-control-socket", "control_socket_disable", "switch", _NO_SOCKET),
    (
        _G,
        "",
        "secure_scheme_headers",
        "value",
        "the scheme comes from X-Forwarded-Proto or Forwarded, from forwarded_allow_ips only",
    ),
    (_G, "", "tmp_upload_dir", "value", "unused, as in gunicorn"),
    (
        _G,
        "--forwarder-headers",
        "forwarder_headers",
        "value",
        "the prefix comes from a trusted X-Forwarded-Prefix, never SCRIPT_NAME from headers",
    ),
)
# (peer, flags, gunicorn's config-file name, takes, why not and what to use)
REFUSED: tuple[tuple[str, str, str, Takes, str], ...] = (
    (
        _G,
        "-D --daemon",
        "daemon",
        "switch",
        "Portico stays in the foreground: run it under systemd, supervisord or a container "
        "runtime (see the README's deployment recipes)",
    ),
    (_G, "--spew", "spew", "switch", "no line tracer built in: use a debugger"),
    (
        _G,
        "--paste --paster",
        "paste",
        "value",
        "PasteDeploy is not read: serve a module that does "
        "app = paste.deploy.loadapp('config:/path/app.ini')",
    ),
    (
        _G,
        "--paste-global",
        "raw_paste_global_conf",
        "value",
        "PasteDeploy is not read: pass the variables to loadapp(global_conf=...) in a module",
    ),
    (
        _G,
        "--logger-class",
        "logger_class",
        "value",
        "logging is configured with --log-config (dictConfig or fileConfig), not a class",
    ),
    (_G, "--log-syslog", "syslog", "switch", _NO_SYSLOG),
    (_G, "--log-syslog-to", "syslog_addr", "value", _NO_SYSLOG),
    (_G, "--log-syslog-prefix", "syslog_prefix", "value", _NO_SYSLOG),
    (_G, "--log-syslog-facility", "syslog_facility", "value", _NO_SYSLOG),
    (_G, "--statsd-host", "statsd_host", "value", _NO_STATSD),
    (_G, "--dogstatsd-tags", "dogstatsd_tags", "value", _NO_STATSD),
    (_G, "--statsd-prefix", "statsd_prefix", "value", _NO_STATSD),
    (_G, "--enable-backlog-metric", "enable_backlog_metric", "switch", _NO_STATSD),
    (_G, "--permit-obsolete-folding", "permit_obsolete_folding", "switch", _STRICT),
    (_G, "--strip-header-spaces", "strip_header_spaces", "switch", _STRICT),
    (
        _G,
        "--permit-unconventional-http-method",
        "permit_unconventional_http_method",
        "switch",
        _STRICT,
    ),
    (
        _G,
        "--permit-unconventional-http-version",
        "permit_unconventional_http_version",
        "switch",
        _STRICT,
    ),
    (_G, "--casefold-http-method", "casefold_http_method", "switch", _STRICT),
    (_G, "--dirty-app", "dirty_apps", "value", _NO_DIRTY),
    (_G, "--dirty-workers", "dirty_workers", "value", _NO_DIRTY),
    (_G, "--dirty-timeout", "dirty_timeout", "value", _NO_DIRTY),
    (_G, "--dirty-threads", "dirty_threads", "value", _NO_DIRTY),
    (_G, "--dirty-graceful-timeout", "dirty_graceful_timeout", "value", _NO_DIRTY),
    (_G, "", "on_dirty_starting", "value", _NO_DIRTY),
    (_G, "", "dirty_post_fork", "value", _NO_DIRTY),
    (_G, "", "dirty_worker_init", "value", _NO_DIRTY),
    (_G, "", "dirty_worker_exit", "value", _NO_DIRTY),
    (_G, "", "pre_request", "value", _NO_HOOK),
    (_G, "", "post_request", "value", _NO_HOOK),
    (
        _G,
        "--http2-max-header-list-size",
        "http2_max_header_list_size",
        "value",
        "HTTP/2's header list is bounded by the HTTP/1.1 limits (max_header_bytes plus 32 bytes "
        "per field of max_header_count, RFC 9113 §6.5.2), so that one request has one limit "
        "whatever its protocol: set those",
    ),
    (
        _G,
        "--protocol",
        "protocol",
        "value",
        "Portico chooses the protocol per bind: write --bind uwsgi:ADDRESS (or fastcgi:ADDRESS) "
        "for each socket nginx's uwsgi_pass or fastcgi_pass talks to",
    ),
    (
        _G,
        "--uwsgi-allow-from",
        "uwsgi_allow_ips",
        "value",
        "Portico trusts every peer of a uwsgi: or fastcgi: bind (nginx's variables say who the "
        "client is), so the bind itself is the boundary: put it on a unix socket or an address "
        "only nginx reaches",
    ),
    (
        _G,
        "",
        "ssl_context",
        "value",
        "Portico builds its own TLS context: set certfile, keyfile, ca_certs, cert_reqs, "
        "ciphers and tls_min_version",
    ),
)
