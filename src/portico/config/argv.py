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

from portico.config import compat, kinds
from portico.config.compat import PeerOption
from portico.config.settings import SETTINGS, Setting
from portico.errors import ConfigError

__all__ = ["ParsedArgv", "build_parser", "parse_argv"]

_ACTION_DEST = "_portico_action"
_PEER_DEST = "_portico_peer"

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


class _Peer(argparse.Action):
    """Record ``(option string, option, raw value)`` of a peer option, in command-line order."""

    def __init__(self, *args: Any, option: PeerOption, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.option = option

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        given = list(getattr(namespace, _PEER_DEST, None) or [])
        raw = None if self.option.takes == "switch" else values
        given.append((option_string or "", self.option, raw))
        setattr(namespace, _PEER_DEST, given)


def _add_setting(
    parser: argparse.ArgumentParser, setting: Setting, flags: Sequence[str], help_text: str
) -> None:
    if setting.kind.is_flag:
        parser.add_argument(
            *flags,
            dest=setting.name,
            nargs=0,
            default=argparse.SUPPRESS,
            action=_Collect,
            setting=setting,
            help=help_text,
        )
    else:
        parser.add_argument(
            *flags,
            dest=setting.name,
            metavar=setting.kind.metavar or None,
            default=argparse.SUPPRESS,
            action=_Collect,
            setting=setting,
            help=help_text,
        )


def _peer_note(setting: Setting) -> str:
    spelled = [
        f"{peer.peer} {'/'.join(f for f in peer.flags if f not in setting.flags)}"
        for peer in setting.peers
        if any(f not in setting.flags for f in peer.flags)
    ]
    return f" (also {', '.join(spelled)})" if spelled else ""


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``portico``, one argument per row of ``SETTINGS``."""
    parser = _Parser(
        prog="portico",
        description=_DESCRIPTION,
        add_help=False,
        allow_abbrev=False,
    )
    taken: set[str] = set()
    for setting in SETTINGS:
        help_text = setting.doc.replace("%", "%%").replace("`", "") + _peer_note(setting)
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
            continue
        _add_setting(parser, setting, setting.flags, help_text)
        taken.update(setting.flags)
    # gunicorn's and uvicorn's spellings: the same arguments, kept out of --help's columns
    # (each setting's help names them)
    for setting in SETTINGS:
        aliases = [f for p in setting.peers for f in p.flags if f not in taken]
        if aliases:
            _add_setting(parser, setting, aliases, argparse.SUPPRESS)
            taken.update(aliases)
    for option in compat.OPTIONS:
        flags = [flag for flag in option.flags if flag not in taken]
        if flags:
            parser.add_argument(
                *flags,
                dest=_PEER_DEST,
                nargs=0 if option.takes == "switch" else None,
                default=argparse.SUPPRESS,
                action=_Peer,
                option=option,
                help=argparse.SUPPRESS,
            )
            taken.update(flags)
    return parser


@dataclass(frozen=True, slots=True)
class ParsedArgv:
    """What the command line asked: an action, and converted values with their sources."""

    action: str = "serve"
    #: setting name -> (origin such as ``flag --workers``, converted value)
    values: dict[str, tuple[str, object]] = field(default_factory=dict)
    #: what peer options asked that Portico does differently (logged at start)
    notes: tuple[str, ...] = ()


def _all_flags() -> list[str]:
    return [flag for setting in SETTINGS for flag in setting.flags if flag.startswith("--")]


_BOOL_WORDS = frozenset({"1", "0", "true", "false", "yes", "no", "on", "off"})
_PROXY_MODES = frozenset({"off", "v1", "v2", "auto"})


def _switch_flags() -> dict[str, tuple[str, str]]:
    """A boolean setting's positive flag -> (positive, negative) option strings."""
    out: dict[str, tuple[str, str]] = {}
    for setting in SETTINGS:
        if setting.kind is kinds.BOOL:
            positive = [
                f for f in setting.flags if f.startswith("--") and not f.startswith("--no-")
            ]
            negative = [f for f in setting.flags if f.startswith("--no-")]
            if positive and negative:
                out[positive[0]] = (positive[0], negative[0])
    return out


def _rewrite(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Switch flags given a value, as peers take them: ``--flag=false`` (any boolean setting),
    uvicorn's ``--ws-per-message-deflate false`` and gunicorn's ``--proxy-protocol v2``.

    The separate-word form is taken only for those two peer flags and only when the next word
    is one of their values, so ``--proxy-protocol app:app`` still serves ``app:app``.
    """
    switches = _switch_flags()
    out: list[str] = []
    notes: list[str] = []
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            out += words[i - 1 :]
            break
        flag, equals, value = word.partition("=")
        if not equals and i < len(words):
            following = words[i].lower()
            if (flag == "--proxy-protocol" and following in _PROXY_MODES) or (
                flag == "--ws-per-message-deflate" and following in _BOOL_WORDS
            ):
                value, equals = words[i], "="
                i += 1
        if not equals or flag not in switches:
            out.append(word)
            continue
        positive, negative = switches[flag]
        if flag == "--proxy-protocol":
            try:
                outcome = compat.by_flag()["--proxy-protocol"].handle(value)
            except ValueError as exc:
                raise ConfigError(f"{flag}: {exc}") from None
            on = outcome.values[0][1] == "true"
            if outcome.note:
                notes.append(outcome.note)
        else:
            try:
                on = kinds.BOOL.convert(value)
            except ValueError as exc:
                raise ConfigError(f"{flag}: {exc}") from None
        out.append(positive if on else negative)
    return out, notes


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
    words, notes = _rewrite(argv)
    namespace, extra = build_parser().parse_known_args(words)
    if extra:
        _reject_extra(extra)
    action = getattr(namespace, _ACTION_DEST, None)
    collected: dict[str, list[tuple[str, object]]] = {
        setting.name: list(getattr(namespace, setting.name, None) or [])
        for setting in SETTINGS
        if not setting.cli_only
    }
    pseudo: dict[str, list[tuple[str, str]]] = {}
    defaults: list[tuple[str, str, object]] = []
    for flag, option, raw in getattr(namespace, _PEER_DEST, None) or []:
        try:
            outcome = option.handle(raw)
        except ValueError as exc:
            raise ConfigError(f"{flag}: {exc}") from None
        if outcome.note:
            notes.append(outcome.note)
        for name, value in outcome.values:
            if name in compat.PSEUDO_KEYS:
                pseudo.setdefault(name, []).append((f"flag {flag}", str(value)))
            else:
                collected[name].append((f"flag {flag}", value))
        defaults += [(f"flag {flag}", name, value) for name, value in outcome.defaults]
    for origin, name, value in defaults:
        if not collected[name]:
            collected[name].append((origin, value))
    values: dict[str, tuple[str, object]] = {}
    for setting in SETTINGS:
        given = collected.get(setting.name)
        if not given:
            continue
        values[setting.name] = (given[-1][0], _convert(setting, given, notes))
    try:
        made, more = compat.finish(pseudo, values, _converter)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    values.update(made)
    return ParsedArgv(
        action=action[1] if action else "serve", values=values, notes=tuple(notes + more)
    )


_BY_NAME = {setting.name: setting for setting in SETTINGS}


def _converter(name: str, raw: object) -> object:
    return _BY_NAME[name].kind.convert(raw)


def _convert(setting: Setting, given: list[tuple[str, object]], notes: list[str]) -> object:
    converted: list[object] = []
    mapped = compat.VALUE_MAPS.get(setting.name, {})
    for source, given_raw in given:
        raw = given_raw
        if isinstance(given_raw, str) and given_raw.lower() in mapped:
            raw, note = mapped[given_raw.lower()]
            notes.append(note)
        # A repeated flag adds one item each time; it is not split on commas like env.
        value = [raw] if setting.repeatable else raw
        try:
            converted.append(setting.kind.convert(value))
        except ValueError as exc:
            raise ConfigError(f"{source.partition(' ')[2]}: {exc}") from None
    if setting.repeatable:
        return tuple(item for part in converted if isinstance(part, tuple) for item in part)
    return converted[-1]
