"""The ``portico`` command: resolve the settings, run the requested action or serve.

Only this module reads the real world (``sys.argv``, ``os.environ``, files, the working directory)
and hands it to the pure ``portico.config``. The worker is imported only when serving, so
``--print-config``, ``--check-config`` and ``--version`` never load the runtime.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from portico import __version__, logs
from portico.config import Config, Resolved, format_resolved, resolve
from portico.config.argv import build_parser
from portico.config.hooks import Hooks
from portico.errors import EXIT_OK, ConfigError, StartupError
from portico.logs import error_log as log
from portico.supervisor import environment

if TYPE_CHECKING:
    from portico.config.hooks import WorkerHooks
    from portico.supervisor.environment import Identity
    from portico.worker.link import MasterLink

__all__ = ["main", "version"]


def version() -> str:
    """The installed distribution's version, else the package's own."""
    import importlib.metadata  # noqa: PLC0415 -- lazy: it pulls in email and socket

    try:
        return importlib.metadata.version("portico")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def _fail(error: StartupError) -> int:
    print(f"portico: error: {error}", file=sys.stderr)
    return error.exit_code


def _check(resolved: Resolved) -> int:
    from portico.gateways.loader import load_app  # noqa: PLC0415 -- the master never loads it

    config = resolved.config
    environment.prepare(config)
    environment.identity(config)
    _check_tls(config)
    _check_headers(config)
    for note in resolved.notes:
        print(f"portico: {note}")
    loaded = load_app(
        config.app, app_dir=config.app_dir, factory=config.factory, interface=config.interface
    )
    print(f"portico: configuration OK; app {loaded.name} ({loaded.interface})")
    return EXIT_OK


def _serve(resolved: Resolved, argv: list[str]) -> int:
    config = resolved.config
    cwd = os.getcwd()  # before chdir: SIGHUP reads the command line's files from here again
    environment.prepare(config)
    identity = environment.identity(config)
    _check_tls(config)  # a certificate that does not load stops the server here, with exit 2
    _check_headers(config)
    _configure_logs(config, resolved.hooks, identity)
    for note in resolved.notes:
        log.info("%s", note)
    from portico.supervisor.master import Master  # noqa: PLC0415 -- lazy, as the worker below

    if config.reload:
        if config.preload:
            raise ConfigError("--reload cannot be combined with --preload")
        if importlib.util.find_spec("watchfiles") is None:
            raise ConfigError("--reload needs watchfiles: pip install 'portico[reload]'")
    preloaded: object = None
    if config.preload:
        from portico.worker.main import load  # noqa: PLC0415

        preloaded = load(config)

    def boot(
        config: Config,
        sockets: list[tuple[str, socket.socket]],
        link: MasterLink,
        hooks: WorkerHooks,
    ) -> int:
        from portico.worker.main import LoadedApps, serve  # noqa: PLC0415 -- in the worker only

        apps = preloaded if isinstance(preloaded, LoadedApps) else None
        return serve(config, sockets, link, apps, hooks)

    def reconfigure() -> tuple[Config, Hooks]:
        resolved = resolve(argv, os.environ, _read_text, cwd)
        for warning in resolved.warnings:
            log.warning("%s", warning)
        environment.prepare(resolved.config)
        identity = environment.identity(resolved.config)
        # before any worker is replaced: a certificate that does not load keeps the old one
        _check_tls(resolved.config)
        _check_headers(resolved.config)
        _configure_logs(resolved.config, resolved.hooks, identity)
        return resolved.config, resolved.hooks

    return Master(config, boot, reconfigure, hooks=resolved.hooks, identity=identity).run()


def _check_tls(config: Config) -> None:
    """Load the TLS files once (``ConfigError`` naming the file at fault), if TLS is on."""
    if config.certfile is not None:
        from portico.runtime import tls  # noqa: PLC0415 -- only with TLS

        tls.check(config)


def _check_headers(config: Config) -> None:
    """``--header`` values are checked as the app's headers are (ConfigError naming the one)."""
    if config.headers:
        from portico.runtime.limits import default_headers  # noqa: PLC0415

        default_headers(config)


def _configure_logs(config: Config, hooks: Hooks, identity: Identity | None) -> None:
    logs.configure(
        config.log_level,
        config.access_log,
        config.log_file,
        config.access_log_file,
        config.log_format,
    )
    logs.apply_config(config.log_config, hooks.logconfig_dict)
    files = [path for path in (config.log_file, config.access_log_file) if path not in (None, "-")]
    if identity is not None:
        identity.chown(files)  # the workers reopen them on SIGUSR1, as the user
    if config.capture_output and config.log_file not in (None, "-"):
        logs.capture_output(config.log_file)


def main(argv: list[str] | None = None) -> int:
    """Run ``portico`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["call"]:  # an app module named call is given as call:app
        from portico.call import main as call  # noqa: PLC0415 -- it loads the runtime

        return call(args[1:])
    try:
        resolved = resolve(args, os.environ, _read_text, os.getcwd())
        for warning in resolved.warnings:
            print(f"portico: warning: {warning}", file=sys.stderr)
        if resolved.action == "help":
            print(build_parser().format_help(), end="")
            return EXIT_OK
        if resolved.action == "version":
            print(f"portico {version()}")
            return EXIT_OK
        if resolved.action == "print_config":
            print(format_resolved(resolved), end="")
            return EXIT_OK
        if resolved.action == "check_config":
            return _check(resolved)
        return _serve(resolved, args)
    except StartupError as error:
        return _fail(error)
    except KeyboardInterrupt:
        return 130
