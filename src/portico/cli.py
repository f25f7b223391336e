"""The ``portico`` command: resolve the settings, run the requested action or serve.

Only this module reads the real world (``sys.argv``, ``os.environ``, files, the working directory)
and hands it to the pure ``portico.config``. The worker is imported only when serving, so
``--print-config``, ``--check-config`` and ``--version`` never load the runtime.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from portico import __version__, logs
from portico.config import Config, Resolved, format_resolved, resolve
from portico.config.argv import build_parser
from portico.errors import EXIT_OK, StartupError
from portico.gateways.loader import load_app

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
    config = resolved.config
    loaded = load_app(
        config.app, app_dir=config.app_dir, factory=config.factory, interface=config.interface
    )
    print(f"portico: configuration OK; app {loaded.name} ({loaded.interface})")
    return EXIT_OK


def _serve(config: Config) -> int:
    logs.configure(config.log_level, config.access_log)
    from portico.worker.main import serve  # noqa: PLC0415 -- lazy: keeps the runtime unloaded

    return serve(config)


def main(argv: list[str] | None = None) -> int:
    """Run ``portico`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    try:
        resolved = resolve(
            sys.argv[1:] if argv is None else argv, os.environ, _read_text, os.getcwd()
        )
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
        return _serve(resolved.config)
    except StartupError as error:
        return _fail(error)
    except KeyboardInterrupt:
        return 130
