"""``-c gunicorn.conf.py``: a gunicorn configuration file, read as gunicorn reads it.

The file is Python: it is run, and its module-level names that are gunicorn settings become
settings (``workers = multiprocessing.cpu_count() * 2 + 1`` works); any other name (an import,
a helper) is ignored, as gunicorn ignores it. Each gunicorn name is mapped to the Portico setting
that means the same (``keepalive`` is ``keepalive_timeout``), translated where the meaning takes
more (``worker_class``), or refused by name where Portico lacks the feature. Hooks
(``post_fork``, ``child_exit``...) are collected into :class:`portico.config.hooks.Hooks`.

Values keep the file's place in the order of sources: the command line and the environment win
over them. Origins name the line, as for a TOML file: ``file gunicorn.conf.py:12``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

from portico.config import compat
from portico.config.hooks import ARITY, GUNICORN_NAMES, Hooks, check_hook
from portico.config.settings import SETTINGS, Setting
from portico.errors import ConfigError

__all__ = ["GUNICORN_NAMES", "KNOWN", "is_python_config", "read_gunicorn_file"]

#: Every name gunicorn 27 reads from a config file.
KNOWN = frozenset(
    [
        "config",
        "wsgi_app",
        "bind",
        "backlog",
        "workers",
        "worker_class",
        "threads",
        "worker_connections",
        "max_requests",
        "max_requests_jitter",
        "timeout",
        "graceful_timeout",
        "keepalive",
        "limit_request_line",
        "limit_request_fields",
        "limit_request_field_size",
        "reload",
        "reload_engine",
        "reload_extra_files",
        "spew",
        "check_config",
        "print_config",
        "preload_app",
        "sendfile",
        "reuse_port",
        "chdir",
        "daemon",
        "raw_env",
        "pidfile",
        "worker_tmp_dir",
        "user",
        "group",
        "umask",
        "initgroups",
        "tmp_upload_dir",
        "secure_scheme_headers",
        "forwarded_allow_ips",
        "accesslog",
        "disable_redirect_access_to_syslog",
        "access_log_format",
        "errorlog",
        "loglevel",
        "capture_output",
        "logger_class",
        "logconfig",
        "logconfig_dict",
        "logconfig_json",
        "syslog_addr",
        "syslog",
        "syslog_prefix",
        "syslog_facility",
        "enable_stdio_inheritance",
        "statsd_host",
        "dogstatsd_tags",
        "statsd_prefix",
        "enable_backlog_metric",
        "proc_name",
        "default_proc_name",
        "pythonpath",
        "paste",
        "on_starting",
        "on_reload",
        "when_ready",
        "pre_fork",
        "post_fork",
        "post_worker_init",
        "worker_int",
        "worker_abort",
        "pre_exec",
        "pre_request",
        "post_request",
        "child_exit",
        "worker_exit",
        "nworkers_changed",
        "on_exit",
        "ssl_context",
        "proxy_protocol",
        "proxy_allow_ips",
        "protocol",
        "uwsgi_allow_ips",
        "keyfile",
        "certfile",
        "ssl_version",
        "cert_reqs",
        "ca_certs",
        "suppress_ragged_eofs",
        "do_handshake_on_connect",
        "ciphers",
        "http_protocols",
        "http2_cleartext",
        "http2_max_concurrent_streams",
        "http2_initial_window_size",
        "http2_max_frame_size",
        "http2_max_header_list_size",
        "raw_paste_global_conf",
        "permit_obsolete_folding",
        "strip_header_spaces",
        "permit_unconventional_http_method",
        "permit_unconventional_http_version",
        "casefold_http_method",
        "forwarder_headers",
        "header_map",
        "asgi_loop",
        "asgi_lifespan",
        "asgi_disconnect_grace_period",
        "websocket_max_message_size",
        "http_parser",
        "root_path",
        "dirty_apps",
        "dirty_workers",
        "dirty_timeout",
        "dirty_threads",
        "dirty_graceful_timeout",
        "on_dirty_starting",
        "dirty_post_fork",
        "dirty_worker_init",
        "dirty_worker_exit",
        "control_socket",
        "control_socket_mode",
        "control_socket_disable",
    ]
)
# Names that only matter to gunicorn's own command line or defaults.
_IGNORED = frozenset({"config", "default_proc_name", "check_config", "print_config"})

_Values = dict[str, tuple[str, object]]
_BY_NAME = {setting.name: setting for setting in SETTINGS}


def is_python_config(path: str) -> bool:
    """gunicorn's forms: a ``.py`` file, or ``python:module`` (not supported: named)."""
    return path.endswith(".py") or path.startswith(("python:", "file:"))


def _lines(text: str) -> dict[str, int]:
    """Module-level name -> the line of its last assignment (or ``def``)."""
    out: dict[str, int] = {}
    for node in ast.parse(text).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out[node.name] = node.lineno
        for target in targets:
            if isinstance(target, ast.Name):
                out[target.id] = node.lineno
    return out


def _convert(setting: Setting, value: object) -> object:
    if isinstance(value, tuple):
        value = list(value)
    try:
        return setting.kind.convert(value)
    except ValueError:
        # gunicorn takes `user = 1000` or `keepalive = "5"` alike; so do we
        if isinstance(value, int | float) and not isinstance(value, bool):
            return setting.kind.convert(str(value))
        raise


def read_gunicorn_file(text: str, path: str, shown: str) -> tuple[_Values, Hooks, list[str]]:
    """Run the file and map its names: settings with origins, hooks, and notes to log."""
    namespace = _run(text, path, shown)
    lines = _lines(text)
    values: _Values = {}
    functions: dict[str, Callable[..., object]] = {}
    logconfig: Mapping[str, Any] | None = None
    notes: list[str] = []
    pseudo: dict[str, list[tuple[str, str]]] = {}
    defaults: list[tuple[str, str, object]] = []
    options = compat.by_name()
    for name, value in namespace.items():
        if name not in KNOWN or name in _IGNORED:
            continue  # a helper, an import: gunicorn ignores these too
        where = f"{shown}:{lines[name]}" if name in lines else shown
        origin = f"file {where}"
        if name in ARITY:
            functions[name] = check_hook(name, value, where)
        elif name == "logconfig_dict":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: logconfig_dict must be a dict")
            logconfig = value if value else None
        elif name in GUNICORN_NAMES:
            setting = _BY_NAME[GUNICORN_NAMES[name]]
            try:
                values[setting.name] = (origin, _convert(setting, value))
            except ValueError as exc:
                raise ConfigError(f"{where}: {name}: {exc}") from None
        elif name in options:
            option = options[name]
            if option.takes == "switch" and not value:
                continue  # gunicorn's default, written out
            items = value if isinstance(value, list | tuple) else [value]
            for item in items:
                try:
                    outcome = option.handle(None if option.takes == "switch" else item)
                except ValueError as exc:
                    raise ConfigError(f"{where}: {name}: {exc}") from None
                if outcome.note:
                    notes.append(f"{where}: {name}: {outcome.note}")
                for key, raw in outcome.values:
                    if key in compat.PSEUDO_KEYS:
                        pseudo.setdefault(key, []).append((origin, str(raw)))
                    else:
                        _add(values, _BY_NAME[key], origin, raw, where, name)
                defaults += [(origin, key, raw) for key, raw in outcome.defaults]
        else:
            raise ConfigError(f"{where}: {name}: a gunicorn setting Portico does not have")
    for origin, key, raw in defaults:
        if key not in values:
            _add(values, _BY_NAME[key], origin, raw, shown, key)
    try:
        made, more = compat.finish(pseudo, values, lambda key, raw: _BY_NAME[key].kind.convert(raw))
    except ValueError as exc:
        raise ConfigError(f"{shown}: {exc}") from None
    values.update(made)
    return values, Hooks(functions, logconfig), notes + more


def _add(  # noqa: PLR0917 -- private
    values: _Values, setting: Setting, origin: str, raw: object, where: str, name: str
) -> None:
    """Set ``setting`` from a translated value; a list setting gains the items."""
    try:
        value = setting.kind.convert([raw] if setting.repeatable else raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {name}: {exc}") from None
    if setting.repeatable and setting.name in values:
        previous = values[setting.name][1]
        assert isinstance(previous, tuple) and isinstance(value, tuple)
        value = previous + value
    values[setting.name] = (origin, value)


def _run(text: str, path: str, shown: str) -> dict[str, Any]:
    if path.startswith(("python:", "file:")):
        raise ConfigError(
            f"--config {path}: gunicorn's python: and file: forms are not read; give the "
            "file's path (FILE.py)"
        )
    try:
        code = compile(text, shown, "exec")
    except SyntaxError as exc:
        raise ConfigError(f"{shown}:{exc.lineno}: invalid Python: {exc.msg}") from None
    namespace: dict[str, Any] = {"__file__": path, "__name__": "__config__"}
    try:
        exec(code, namespace)
    except Exception as exc:
        raise ConfigError(f"{shown}: running it raised {type(exc).__name__}: {exc}") from None
    return namespace
