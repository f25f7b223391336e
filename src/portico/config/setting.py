"""The row type of the settings table, and the command-line actions that are not settings.

Split from ``settings`` (the table itself: the fields of ``Config``) so that the table's module
holds nothing but the table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from portico.config import kinds
from portico.config.kinds import Kind

__all__ = [
    "ACTIONS",
    "ENV_PREFIX",
    "METADATA_KEY",
    "PeerSpelling",
    "Setting",
    "gunicorn",
    "setting",
    "uvicorn",
]

T = TypeVar("T")

METADATA_KEY = "portico.setting"
ENV_PREFIX = "PORTICO_"


@dataclass(frozen=True, slots=True)
class PeerSpelling:
    """How gunicorn or uvicorn spells a setting that means the same as Portico's: its flags
    (accepted as aliases on Portico's command line) and, for gunicorn, the name it has in a
    ``gunicorn.conf.py`` (read by ``-c``). The value goes through the setting's own kind."""

    peer: str  # "gunicorn" or "uvicorn"
    flags: tuple[str, ...]
    name: str = ""  # the gunicorn config-file name


def gunicorn(name: str, *flags: str) -> PeerSpelling:
    """gunicorn's spelling: its config-file ``name`` and its flags (none for file-only names)."""
    return PeerSpelling("gunicorn", flags, name)


def uvicorn(*flags: str) -> PeerSpelling:
    return PeerSpelling("uvicorn", flags)


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the table."""

    name: str
    kind: Kind[Any]
    default: object
    doc: str
    #: option strings, e.g. ``("--bind", "-b")``; a boolean lists its ``--no-`` form too
    flags: tuple[str, ...] = ()
    #: metavar of a positional argument (``APP``), empty for options
    positional: str = ""
    #: a flag that may be given several times, each adding to a list
    repeatable: bool = False
    #: environment variables read after ``PORTICO_<NAME>``, in order (``WEB_CONCURRENCY``)
    env_fallbacks: tuple[str, ...] = ()
    #: an action of the command line (``--version``), not a field of ``Config``
    cli_only: bool = False
    #: may be set in a config file (``config_file`` itself may not)
    in_file: bool = True
    #: the environment variable, when it is not ``PORTICO_<NAME>``
    env_name: str = ""
    #: a password: ``--print-config`` shows whether it is set, never its value
    secret: bool = False
    #: the same setting as gunicorn and uvicorn spell it (their flags are aliases here)
    peers: tuple[PeerSpelling, ...] = ()

    @property
    def env(self) -> str | None:
        """``PORTICO_<NAME>`` (or ``env_name``), or None for command-line actions."""
        if self.cli_only:
            return None
        return self.env_name or ENV_PREFIX + self.name.upper()

    @property
    def file_key(self) -> str | None:
        """The key in a config file (``max-body-size`` is accepted as well), or None."""
        return self.name if self.in_file and not self.cli_only else None


def setting(
    default: T,
    kind: Kind[T],
    doc: str,
    *,
    flags: tuple[str, ...] = (),
    positional: str = "",
    repeatable: bool = False,
    env_fallbacks: tuple[str, ...] = (),
    in_file: bool = True,
    env_name: str = "",
    secret: bool = False,
    peers: tuple[PeerSpelling, ...] = (),
) -> T:
    row = Setting(
        name="",  # filled in from the field name below
        kind=kind,
        default=default,
        doc=doc,
        flags=flags,
        positional=positional,
        repeatable=repeatable,
        env_fallbacks=env_fallbacks,
        in_file=in_file,
        env_name=env_name,
        secret=secret,
        peers=peers,
    )
    # Typed like dataclasses.field(): it returns the field's value type, so fields stay typed.
    return dataclasses.field(default=default, metadata={METADATA_KEY: row})


def _action(name: str, flags: tuple[str, ...], doc: str) -> Setting:
    return Setting(name=name, kind=kinds.ACTION, default=False, doc=doc, flags=flags, cli_only=True)


#: Command-line actions: they do something instead of serving, and are not fields of ``Config``.
ACTIONS: tuple[Setting, ...] = (
    _action("help", ("--help", "-h"), "Show the command-line help and exit."),
    _action("version", ("--version", "-v"), "Print `portico X.Y.Z` and exit."),
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
