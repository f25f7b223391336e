"""Resolving a ``Config`` from its four sources: command line > environment > file > defaults.

No I/O happens here: the caller passes ``argv``, the environment mapping, the working directory and
a ``read_text(path)`` function, so tests hand in dictionaries and the CLI hands in the real thing.
Every error is a ``ConfigError`` whose message starts with its source — ``--workers``,
``PORTICO_WORKERS``, ``portico.toml:7`` — and suggests the closest known name.

Unknown flags and file keys are errors. An unknown ``PORTICO_*`` environment variable is only a
warning: the environment is shared with the app and everything else in the process tree (an app
may well read ``PORTICO_TEST_FILE``), so refusing to start over it would be wrong; the warning
still catches ``PORTICO_WOKERS``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from portico.config.argv import parse_argv
from portico.config.gunicorn_file import is_python_config, read_gunicorn_file
from portico.config.hooks import Hooks
from portico.config.settings import ENV_PREFIX, SETTINGS, Config, Setting
from portico.errors import ConfigError

__all__ = ["Action", "Resolved", "resolve"]

Action = Literal["serve", "help", "version", "print_config", "check_config"]

#: name -> (origin, value)
_Values = dict[str, tuple[str, object]]

_CONFIG_SETTINGS = tuple(setting for setting in SETTINGS if not setting.cli_only)
_FILE_KEYS = {s.file_key: s for s in _CONFIG_SETTINGS if s.file_key is not None}
_ENV_NAMES = {s.env: s for s in _CONFIG_SETTINGS if s.env is not None}


@dataclass(frozen=True, slots=True)
class Resolved:
    """A validated ``Config``, where each of its settings came from, and what to do with it.

    For the ``help`` and ``version`` actions nothing but ``argv`` is read: ``config`` holds the
    defaults.
    """

    config: Config
    #: setting name -> ``default``, ``env PORTICO_X``, ``flag --x``, ``argument APP``,
    #: ``file path:line``
    origins: Mapping[str, str]
    action: Action = "serve"
    #: things worth telling the user that do not stop the server (unknown ``PORTICO_*`` variables)
    warnings: tuple[str, ...] = ()
    #: what gunicorn's and uvicorn's options asked that Portico does its own way (logged at
    #: start, at info level)
    notes: tuple[str, ...] = ()
    #: the server hooks of a gunicorn config file
    hooks: Hooks = dataclasses.field(default_factory=Hooks)


def resolve(
    argv: Sequence[str],
    environ: Mapping[str, str],
    read_text: Callable[[str], str],
    cwd: str,
) -> Resolved:
    """Build the ``Config`` from the command line, the environment, a TOML file and the defaults.

    The file is ``--config FILE`` or ``PORTICO_CONFIG`` (relative to ``cwd``): TOML, or a
    gunicorn config file if its name ends in ``.py``. Without either, ``[tool.portico]`` of
    ``cwd/pyproject.toml`` if that file exists, else ``cwd/gunicorn.conf.py`` if that one does
    (gunicorn's default). ``read_text`` is called with the path and should raise ``OSError``
    (``FileNotFoundError``) as ``Path.read_text`` does.
    """
    parsed = parse_argv(argv)
    action = cast(Action, parsed.action)
    if action in ("help", "version"):
        return _build({}, action)
    from_env, warnings = _read_env(environ)
    config_file = parsed.values.get("config_file") or from_env.get("config_file")
    notes = list(parsed.notes)
    hooks = Hooks()
    if config_file is not None:
        origin, path = config_file
        source = origin.partition(" ")[2]
        if is_python_config(str(path)):
            from_file, hooks, more = _read_gunicorn(str(path), source, read_text, cwd)
            notes += more
        else:
            from_file = _read_config_file(str(path), source, read_text, cwd)
    else:
        from_pyproject = _read_pyproject(read_text, cwd)
        if from_pyproject is not None:
            from_file = from_pyproject
        else:
            from_file, hooks, more = _read_gunicorn(
                _GUNICORN_DEFAULT, _GUNICORN_DEFAULT, read_text, cwd, missing_ok=True
            )
            if from_file or hooks:
                notes.append(f"read ./{_GUNICORN_DEFAULT}, as gunicorn does without -c")
            notes += more
    resolved = _build({**from_file, **from_env, **parsed.values}, action, warnings)
    return dataclasses.replace(resolved, notes=tuple(notes), hooks=hooks)


_GUNICORN_DEFAULT = "gunicorn.conf.py"


def _read_gunicorn(
    path: str,
    source: str,
    read_text: Callable[[str], str],
    cwd: str,
    *,
    missing_ok: bool = False,
) -> tuple[_Values, Hooks, list[str]]:
    full = os.path.join(cwd, path)
    text = _read(read_text, full, source, path, missing_ok=missing_ok)
    if text is None:
        return {}, Hooks(), []
    return read_gunicorn_file(text, full, path)


def _build(values: _Values, action: Action, warnings: tuple[str, ...] = ()) -> Resolved:
    kwargs: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for setting in _CONFIG_SETTINGS:
        origin, value = values.get(setting.name, ("default", setting.default))
        kwargs[setting.name] = value
        origins[setting.name] = origin
    config = Config(**kwargs)
    _check_together(config, origins)
    return Resolved(config, types.MappingProxyType(origins), action, warnings)


def _check_together(config: Config, origins: Mapping[str, str]) -> None:
    """Settings that are valid alone but not in combination (the message names both)."""

    def named(name: str) -> str:
        origin = origins[name]
        return f"{name} ({origin})" if origin != "default" else name

    if config.certfile is None:
        for name in ("keyfile", "keyfile_password", "ca_certs", "ciphers"):
            if getattr(config, name) is not None:
                raise ConfigError(f"{named(name)} is a TLS setting: it needs certfile too")
        if config.cert_reqs != "none":
            raise ConfigError(f"{named('cert_reqs')} is a TLS setting: it needs certfile too")
    if config.cert_reqs != "none" and config.ca_certs is None:
        raise ConfigError(
            f"{named('cert_reqs')} = {config.cert_reqs} needs ca_certs: the CA certificates "
            "that client certificates are verified against"
        )
    twice = sorted(set(config.bind) & set(config.insecure_bind))
    if twice:
        raise ConfigError(f"{', '.join(twice)} is both a bind and an insecure_bind")


def _suggest(name: str, candidates: Sequence[str], *, quote: bool = False, prefix: str = "") -> str:
    """``; did you mean X?`` for the closest candidate, if one is close.

    Names are compared without a shared ``prefix``, which would make them all look alike.
    """
    close = difflib.get_close_matches(
        name.removeprefix(prefix), [c.removeprefix(prefix) for c in candidates], n=1
    )
    if not close:
        return ""
    best = prefix + close[0]
    return f"; did you mean {best!r}?" if quote else f"; did you mean {best}?"


def _read_env(environ: Mapping[str, str]) -> tuple[_Values, tuple[str, ...]]:
    warnings = tuple(
        f"{variable}: not a Portico setting, ignored"
        + _suggest(variable, sorted(_ENV_NAMES), prefix=ENV_PREFIX)
        for variable in sorted(environ)
        if variable.startswith(ENV_PREFIX) and variable not in _ENV_NAMES
    )
    values: _Values = {}
    for setting in _CONFIG_SETTINGS:
        assert setting.env is not None
        for variable in (setting.env, *setting.env_fallbacks):
            if variable in environ:
                try:
                    value = setting.kind.convert(environ[variable])
                except ValueError as exc:
                    raise ConfigError(f"{variable}: {exc}") from None
                values[setting.name] = (f"env {variable}", value)
                break
    return values, warnings


def _read(
    read_text: Callable[[str], str], path: str, source: str, shown: str, *, missing_ok: bool = False
) -> str | None:
    """The file's text; None if it is missing and ``missing_ok``; else a ConfigError."""
    try:
        return read_text(path)
    except FileNotFoundError:
        if missing_ok:
            return None
        reason = "no such file"
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 ({exc.reason})"
    except OSError as exc:
        reason = str(exc.strerror or exc)
    raise ConfigError(f"{source}: cannot read {shown!r}: {reason}")


def _parse_toml(text: str, shown: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown}: invalid TOML: {exc}") from None


def _read_config_file(path: str, source: str, read_text: Callable[[str], str], cwd: str) -> _Values:
    text = _read(read_text, os.path.join(cwd, path), source, path)
    assert text is not None
    return _settings_from_table(_parse_toml(text, path), text, path, ())


def _read_pyproject(read_text: Callable[[str], str], cwd: str) -> _Values | None:
    """The ``[tool.portico]`` settings; None when there is no such table."""
    shown = "pyproject.toml"
    text = _read(read_text, os.path.join(cwd, shown), shown, shown, missing_ok=True)
    if text is None:
        return None
    tool = _parse_toml(text, shown).get("tool", {})
    table = tool.get("portico") if isinstance(tool, dict) else None
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{shown}: tool.portico must be a table")
    return _settings_from_table(table, text, shown, ("tool", "portico"))


def _settings_from_table(
    table: dict[str, Any], text: str, shown: str, header: tuple[str, ...]
) -> _Values:
    values: _Values = {}
    for key, raw in table.items():
        line = _line_of(text, key, header)
        where = f"{shown}:{line}" if line else shown
        name = key.replace("-", "_")
        setting: Setting | None = _FILE_KEYS.get(name)
        if setting is None:
            if name == "config_file":
                raise ConfigError(
                    f"{where}: {key} cannot be set in a config file; use --config or PORTICO_CONFIG"
                )
            spelled = sorted(k.replace("_", "-") if "-" in key else k for k in _FILE_KEYS)
            raise ConfigError(
                f"{where}: unknown setting {key!r}" + _suggest(key, spelled, quote=True)
            )
        if name in values:
            raise ConfigError(f"{where}: {key} is set twice (as {name} and with dashes)")
        try:
            value = setting.kind.convert(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
        values[name] = (f"file {where}", value)
    return values


_HEADER = re.compile(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?")


def _header_parts(inner: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in inner.split("."))


def _line_of(text: str, key: str, header: tuple[str, ...]) -> int | None:
    """The 1-based line where ``key`` is assigned under table ``header``, if it can be found.

    tomllib reports no positions, so the text is scanned: good enough for the plain
    ``key = value`` lines of a settings table, and ``None`` (no line number) otherwise.
    """
    quoted = re.escape(key)
    assignment = re.compile(rf"\s*(?:{quoted}|\"{quoted}\"|'{quoted}')\s*=")
    current: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        match = _HEADER.fullmatch(line)
        if line.lstrip().startswith("[["):
            current = ("[[array of tables]]",)
        elif match:
            current = _header_parts(match.group(1))
            if current[: len(header) + 1] == (*header, key):
                return number  # the key is a table of its own: [key] or [key.sub]
        elif current == header and assignment.match(line):
            return number
    return None
