"""The ``portico`` command: resolve the settings, run the requested action or serve.

Only this module reads the real world (``sys.argv``, ``os.environ``, files, the working directory)
and hands it to the pure ``portico.config``. The worker is imported only when serving, so
``--print-config``, ``--check-config`` and ``--version`` never load the runtime.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from portico import __version__, logs
from portico.config import Config, Resolved, format_resolved, resolve
from portico.config.argv import build_parser
from portico.errors import EXIT_OK, ConfigError, StartupError

if TYPE_CHECKING:
    from portico.worker.link import MasterLink

__all__ = ["main", "version"]

log = logging.getLogger("portico.error")


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
    _check_tls(config)
    loaded = load_app(
        config.app, app_dir=config.app_dir, factory=config.factory, interface=config.interface
    )
    print(f"portico: configuration OK; app {loaded.name} ({loaded.interface})")
    return EXIT_OK


def _serve(config: Config, argv: list[str]) -> int:
    _check_tls(config)  # a certificate that does not load stops the server here, with exit 2
    _configure_logs(config)
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

    def boot(config: Config, sockets: list[tuple[str, socket.socket]], link: MasterLink) -> int:
        from portico.worker.main import LoadedApps, serve  # noqa: PLC0415 -- in the worker only

        apps = preloaded if isinstance(preloaded, LoadedApps) else None
        return serve(config, sockets, link, apps)

    def reconfigure() -> Config:
        resolved = resolve(argv, os.environ, _read_text, os.getcwd())
        for warning in resolved.warnings:
            log.warning("%s", warning)
        # before any worker is replaced: a certificate that does not load keeps the old one
        _check_tls(resolved.config)
        _configure_logs(resolved.config)
        return resolved.config

    return Master(config, boot, reconfigure).run()


def _check_tls(config: Config) -> None:
    """Load the TLS files once (``ConfigError`` naming the file at fault), if TLS is on."""
    if config.certfile is not None:
        from portico.runtime import tls  # noqa: PLC0415 -- only with TLS

        tls.check(config)


def _configure_logs(config: Config) -> None:
    logs.configure(
        config.log_level,
        config.access_log,
        config.log_file,
        config.access_log_file,
        config.log_format,
    )


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
        return _serve(resolved.config, sys.argv[1:] if argv is None else argv)
    except StartupError as error:
        return _fail(error)
    except KeyboardInterrupt:
        return 130
