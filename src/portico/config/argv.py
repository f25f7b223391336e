"""The command line, generated from ``SETTINGS``.

argparse only collects raw strings and which option string carried them; the setting's own kind
converts them afterwards, so that a bad value is reported as ``--workers: must be >= 1, got 0`` in
the same words as ``PORTICO_WORKERS`` or ``portico.toml:7`` would be. Every parse error raises
``ConfigError`` instead of exiting, so this module does no I/O.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from portico.config.settings import SETTINGS, Setting
from portico.errors import ConfigError

__all__ = ["ParsedArgv", "build_parser", "parse_argv"]

_ACTION_DEST = "_portico_action"

_DESCRIPTION = (
    "Serve an ASGI or WSGI app. Every option can also be set with an environment variable "
    "PORTICO_<NAME> or in a TOML file (--config FILE, or [tool.portico] in ./pyproject.toml); "
    "the command line wins over the environment, which wins over the file. "
    "portico call APP [METHOD] TARGET calls the app in process instead (portico call --help)."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


class _Collect(argparse.Action):
    """Record ``(source, raw value)`` for the setting; conversion happens after parsing."""

    def __init__(self, *args: Any, setting: Setting, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting = setting

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setting = self.setting
        source = f"flag {option_string}" if option_string else f"argument {setting.positional}"
        # a flag's value is its spelling: --access-log is true, --no-access-log false
        raw = not (option_string or "").startswith("--no-") if setting.kind.is_flag else values
        if setting.cli_only:
            previous = getattr(namespace, _ACTION_DEST, None)
            if previous is not None and previous[1] != setting.name:
                raise ConfigError(f"{option_string} cannot be combined with {previous[0]}")
            setattr(namespace, _ACTION_DEST, (option_string, setting.name))
            return
        given: list[tuple[str, object]] = list(getattr(namespace, setting.name, None) or [])
        if not setting.repeatable:
            given.clear()
        given.append((source, raw))
        setattr(namespace, setting.name, given)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``portico``, one argument per row of ``SETTINGS``."""
    parser = _Parser(
        prog="portico",
        description=_DESCRIPTION,
        add_help=False,
        allow_abbrev=False,
    )
    for setting in SETTINGS:
        help_text = setting.doc.replace("%", "%%").replace("`", "")
        if setting.env:
            help_text += f" [env {setting.env}]"
        if setting.positional:
            parser.add_argument(
                setting.name,
                nargs="?",
                metavar=setting.positional,
                default=argparse.SUPPRESS,
                action=_Collect,
                setting=setting,
                help=help_text,
            )
        elif setting.kind.is_flag:
            parser.add_argument(
                *setting.flags,
                dest=setting.name,
                nargs=0,
                default=argparse.SUPPRESS,
                action=_Collect,
                setting=setting,
                help=help_text,
            )
        else:
            parser.add_argument(
                *setting.flags,
                dest=setting.name,
                metavar=setting.kind.metavar or None,
                choices=None,
                default=argparse.SUPPRESS,
                action=_Collect,
                setting=setting,
                help=help_text,
            )
    return parser


@dataclass(frozen=True, slots=True)
class ParsedArgv:
    """What the command line asked: an action, and converted values with their sources."""

    action: str = "serve"
    #: setting name -> (origin such as ``flag --workers``, converted value)
    values: dict[str, tuple[str, object]] = field(default_factory=dict)


def _all_flags() -> list[str]:
    return [flag for setting in SETTINGS for flag in setting.flags if flag.startswith("--")]


def _reject_extra(extra: list[str]) -> None:
    for arg in extra:
        if arg.startswith("-") and arg != "-":
            option = arg.partition("=")[0]
            message = f"{option}: unknown option"
            close = difflib.get_close_matches(option, _all_flags(), n=1)
            if close:
                message += f"; did you mean {close[0]}?"
            raise ConfigError(message)
    raise ConfigError(f"unexpected argument {extra[0]!r} (the app was already given)")


def parse_argv(argv: Sequence[str]) -> ParsedArgv:
    """Parse ``argv`` (without the program name); ``ConfigError`` names the offending flag."""
    namespace, extra = build_parser().parse_known_args(list(argv))
    if extra:
        _reject_extra(extra)
    action = getattr(namespace, _ACTION_DEST, None)
    values: dict[str, tuple[str, object]] = {}
    for setting in SETTINGS:
        given: list[tuple[str, object]] | None = getattr(namespace, setting.name, None)
        if setting.cli_only or not given:
            continue
        converted: list[object] = []
        for source, raw in given:
            # A repeated flag adds one address each time; it is not split on commas like env.
            value = [raw] if setting.repeatable else raw
            try:
                converted.append(setting.kind.convert(value))
            except ValueError as exc:
                raise ConfigError(f"{source.partition(' ')[2]}: {exc}") from None
        if setting.repeatable:
            merged: object = tuple(
                item for part in converted if isinstance(part, tuple) for item in part
            )
        else:
            merged = converted[-1]
        values[setting.name] = (given[-1][0], merged)
    return ParsedArgv(action=action[1] if action else "serve", values=values)
