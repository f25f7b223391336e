"""The process rows of the settings table: what the master sets up before any app is imported.

Inherited by ``settings.Config``. The working directory, the import path, the environment, the
identity the workers run as, and where the process's own output goes: gunicorn's and uvicorn's
flags for these are spelled here as peers, so that a command line written for them keeps its
meaning. They are applied by ``portico.cli`` (directory, path, environment, logging) and by the
supervisor (identity, in each worker after the sockets are bound).
"""

from __future__ import annotations

from dataclasses import dataclass

from portico.config import kinds
from portico.config.setting import gunicorn, setting, uvicorn

__all__ = ["ProcessSettings"]


@dataclass(frozen=True)
class ProcessSettings:
    """The process settings (a base of ``Config``; see the module docstring)."""

    # No slots of its own: several groups are bases of Config, which makes the slots for all.
    __slots__ = ()

    chdir: str | None = setting(
        None,
        kinds.OPTIONAL_DIRECTORY,
        "Change to this directory before anything else, and put it first on `sys.path`: "
        "relative paths in the other settings (the app, certificates, log files) are then "
        "relative to it.",
        flags=("--chdir",),
        peers=(gunicorn("chdir", "--chdir"),),
    )
    python_path: tuple[str, ...] = setting(
        (),
        kinds.STRINGS,
        "Directories put first on `sys.path` before the app is imported (comma-separated, or "
        "repeat the flag), e.g. a project's `src`.",
        flags=("--python-path",),
        repeatable=True,
        peers=(gunicorn("pythonpath", "--pythonpath"),),
    )
    env: tuple[str, ...] = setting(
        (),
        kinds.ENV_PAIRS,
        "Set an environment variable for the app, `KEY=VALUE` (repeat the flag for several); "
        "it wins over the environment Portico was started with and over `env_file`.",
        flags=("--env", "-e"),
        repeatable=True,
        peers=(gunicorn("raw_env", "--env", "-e"),),
    )
    env_file: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "A dotenv file (`KEY=VALUE` lines) loaded into the environment before the app is "
        "imported, as uvicorn does: variables already set win over the file. SIGHUP reads it "
        "again for the new workers. Needs `python-dotenv` (`pip install 'portico[dotenv]'`).",
        flags=("--env-file",),
        peers=(uvicorn("--env-file"),),
    )
    user: str | None = setting(
        None,
        kinds.OPTIONAL_STR,
        "Run the workers as this user (a name or a number); the master binds the sockets "
        "first, so a root-started server can listen on port 80 and serve as `www-data`. Also "
        "the owner of the log files and `unix:` sockets. Needs a master started as root.",
        flags=("--user", "-u"),
        peers=(gunicorn("user", "--user", "-u"),),
    )
    group: str | None = setting(
        None,
        kinds.OPTIONAL_STR,
        "Run the workers with this group (a name or a number); default: the primary group of "
        "`user` (gunicorn keeps the master's, which is root's).",
        flags=("--group", "-g"),
        peers=(gunicorn("group", "--group", "-g"),),
    )
    initgroups: bool = setting(
        False,
        kinds.BOOL,
        "Give the workers all the supplementary groups of `user` (from /etc/group); without "
        "it they have `group` alone, never the master's groups.",
        flags=("--initgroups", "--no-initgroups"),
        peers=(gunicorn("initgroups", "--initgroups"),),
    )
    proc_name: str | None = setting(
        None,
        kinds.OPTIONAL_STR,
        "Name shown in process titles (`portico: worker [NAME]`) instead of the app, to tell "
        "several servers apart in `ps` and `top` (with `setproctitle` installed).",
        flags=("--name", "-n"),
        peers=(gunicorn("proc_name", "--name", "-n"),),
    )
    capture_output: bool = setting(
        False,
        kinds.BOOL,
        "Send what the app prints (stdout and stderr of every process) to `log_file` too, so "
        "that nothing goes to a terminal or a closed descriptor under a process manager.",
        flags=("--capture-output", "--no-capture-output"),
        peers=(gunicorn("capture_output", "--capture-output"),),
    )
    log_config: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "A `logging` configuration applied after Portico's own: `.json` (and `.yaml`, with "
        "PyYAML) as `logging.config.dictConfig`, anything else as `fileConfig` (ini). Loggers "
        "`portico.error` and `portico.access` can be routed there; existing loggers stay "
        "enabled.",
        flags=("--log-config",),
        peers=(
            gunicorn("logconfig", "--log-config"),
            gunicorn("logconfig_json", "--log-config-json"),
            uvicorn("--log-config"),
        ),
    )
