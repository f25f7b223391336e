"""Value kinds of settings: how a raw value becomes a typed, validated one.

A raw value is either a string (from a command-line flag or an environment variable) or a native
TOML value (from the config file). Every converter accepts both and raises ``ValueError`` with a
short reason; the caller adds the source (``--workers``, ``PORTICO_WORKERS``, ``portico.toml:7``).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    """The type of a setting: a description for the docs, a converter, a metavar for ``--help``."""

    description: str
    convert: Callable[[object], T]
    metavar: str = ""
    choices: tuple[str, ...] = ()
    is_flag: bool = False


def _type_name(raw: object) -> str:
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, int):
        return "an integer"
    if isinstance(raw, float):
        return "a float"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, dict):
        return "a table"
    return type(raw).__name__


def _convert_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"expected a boolean (true/false, 1/0, yes/no, on/off), got {raw!r}")
    raise ValueError(f"expected a boolean, got {_type_name(raw)}")


def _convert_str(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueError(f"expected a string, got {_type_name(raw)}")


def _convert_optional_str(raw: object) -> str | None:
    return _convert_str(raw)


def integer(minimum: int, maximum: int | None = None) -> Kind[int]:
    """An integer that is at least ``minimum`` (and at most ``maximum``, when given)."""

    def convert(raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError(f"expected an integer, got {_type_name(raw)}")
        if isinstance(raw, str):
            try:
                value = int(raw.strip(), 10)
            except ValueError:
                raise ValueError(f"expected an integer, got {raw!r}") from None
        else:
            value = raw
        if value < minimum:
            raise ValueError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum}, got {value}")
        return value

    if maximum is not None:
        return Kind(f"integer {minimum}..{maximum}", convert, metavar="N")
    return Kind(f"integer >= {minimum}", convert, metavar="N")


def _convert_seconds(raw: object, *, zero: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"expected a number of seconds, got {_type_name(raw)}")
    if isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number of seconds, got {raw!r}") from None
    else:
        value = float(raw)
    if zero and value == 0:
        return value
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a finite number > 0{' (or 0)' if zero else ''}, got {raw!r}")
    return value


def _convert_seconds_or_zero(raw: object) -> float:
    return _convert_seconds(raw, zero=True)


def _convert_mode(raw: object) -> int | None:
    """A file mode bit mask written in octal: ``0o117`` or ``0117`` (or a single digit).

    ``117`` alone is refused: chmod reads it as octal, gunicorn's ``--umask`` as decimal (0o165),
    and a mask read the wrong way opens a socket to everyone.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ValueError(f"expected an octal number like 0o117, got {_type_name(raw)}")
    if isinstance(raw, int):  # TOML 0o117 arrives as an integer already
        value = raw
    else:
        text = raw.strip().lower()
        digits = text.removeprefix("0o")
        if digits == text and len(text) > 1 and not text.startswith("0"):
            raise ValueError(f"{raw!r} is ambiguous: write it in octal as 0o{text} or 0{text}")
        try:
            value = int(digits, 8)
        except ValueError:
            raise ValueError(f"expected an octal number like 0o117, got {raw!r}") from None
    if not 0 <= value <= 0o777:
        raise ValueError(f"must be between 0o000 and 0o777, got {oct(value)}")
    return value


def _convert_strings(raw: object) -> tuple[str, ...]:
    return tuple(_convert_str(item) for item in _items(raw, "a list of strings"))


def _convert_http_protocols(raw: object) -> tuple[str, ...]:
    names = [_convert_str(item).strip().lower() for item in _items(raw, "a list of protocols")]
    for name in names:
        if name not in ("h1", "h2"):
            raise ValueError(f"unknown HTTP protocol {name!r} (choose from h1, h2)")
    if not names:
        raise ValueError("at least one HTTP protocol must be served")
    return tuple(dict.fromkeys(names))


def choice(*choices: str) -> Kind[str]:
    """One of a fixed set of lower-case words; input is compared case-insensitively."""

    def convert(raw: object) -> str:
        value = _convert_str(raw).strip().lower()
        if value in choices:
            return value
        message = f"invalid choice {raw!r} (choose from {', '.join(choices)})"
        close = difflib.get_close_matches(value, choices, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        raise ValueError(message)

    return Kind(
        "one of " + ", ".join(f"`{c}`" for c in choices),
        convert,
        metavar="{" + ",".join(choices) + "}",
        choices=choices,
    )


def _convert_root_path(raw: object) -> str:
    value = _convert_str(raw)
    if value and (not value.startswith("/") or value.endswith("/")):
        raise ValueError(f"must be empty or start with '/' and not end with '/', got {value!r}")
    return value


def _convert_health_path(raw: object) -> str | None:
    value = _convert_optional_str(raw)
    if value is not None and (not value.startswith("/") or not value.isascii() or " " in value):
        raise ValueError(f"must be an absolute URL path such as /healthz, got {value!r}")
    return value


_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_SPLIT = re.compile(r"[,\s]+")


def _port(text: str, spec: str) -> None:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"{spec!r}: the port must be a number from 0 to 65535")


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


#: The port of a bind given as a host alone (gunicorn's and uvicorn's default).
DEFAULT_PORT = 8000

#: the protocols a bind may name before its address (``uwsgi:unix:/run/app.sock``); a bind
#: without one serves HTTP
BIND_PROTOCOLS = ("uwsgi", "fastcgi")


def bind_protocol(spec: str) -> tuple[str, str]:
    """``(protocol, address)`` of a bind spec: ``uwsgi``, ``fastcgi`` or ``http``."""
    head, sep, rest = spec.partition(":")
    if sep and head in BIND_PROTOCOLS:
        return head, rest
    return "http", spec


def validate_bind(spec: str) -> str:
    """Check one bind: ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` or ``fd://N``, optionally
    after a protocol (``uwsgi:`` or ``fastcgi:``); a host alone gets port 8000. Returns the
    bind as it will be used."""
    protocol, address = bind_protocol(spec)
    try:
        address = _validate_address(address)
    except ValueError as exc:
        if protocol == "http":
            raise
        raise ValueError(f"{spec!r}: {protocol}:ADDRESS, {exc}") from None
    if protocol == "http":
        if bind_protocol(address)[0] != "http":
            # -b uwsgi would become uwsgi:8000, which reads as a uwsgi bind: ambiguous, refused
            raise ValueError(f"{spec!r}: name the port ({spec}:PORT) or the protocol's address")
        return address
    return f"{protocol}:{address}"


def _validate_address(spec: str) -> str:
    if spec.startswith("unix:"):
        if not spec[5:]:
            raise ValueError(f"{spec!r}: expected unix:PATH")
        return spec
    if spec.startswith("fd://"):
        if not spec[5:].isdigit():
            raise ValueError(f"{spec!r}: expected fd://N with N a file descriptor number")
        return spec
    if spec.startswith("["):
        host, sep, port = spec[1:].partition("]:")
        if not sep:
            raise ValueError(f"{spec!r}: expected [IPv6]:PORT")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{spec!r}: {host!r} is not an IPv6 address") from None
        _port(port, spec)
        return spec
    host, sep, port = spec.rpartition(":")
    if not sep:
        # gunicorn's -b HOST: the port defaults to 8000; a number alone (a port? an address?)
        # is refused, not guessed
        if (_HOSTNAME.fullmatch(spec) and not spec.replace(".", "").isdigit()) or _is_ipv4(spec):
            return f"{spec}:{DEFAULT_PORT}"
        raise ValueError(f"{spec!r}: expected HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N")
    if ":" in host:
        raise ValueError(f"{spec!r}: write an IPv6 address in brackets, as [{host}]:{port}")
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{spec!r}: {host!r} is not a host name or IPv4 address")
    _port(port, spec)
    return spec


def _items(raw: object, expected: str) -> list[object]:
    """A list setting's items: a TOML list, or a comma/space-separated string (CLI, env)."""
    if isinstance(raw, str):
        return [item for item in _SPLIT.split(raw) if item]
    if isinstance(raw, list):
        return list(raw)
    raise ValueError(f"expected {expected}, got {_type_name(raw)}")


def _convert_binds(raw: object) -> tuple[str, ...]:
    items = _items(raw, "an address or a list of addresses")
    if not items:
        raise ValueError("expected at least one address")
    return tuple(validate_bind(_convert_str(item)) for item in items)


def _convert_binds_or_none(raw: object) -> tuple[str, ...]:
    items = _items(raw, "an address or a list of addresses")
    return tuple(validate_bind(_convert_str(item)) for item in items)


_MOUNT_PREFIX = re.compile(
    r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@%]+(?:/[A-Za-z0-9\-._~!$&'()*+,;=:@%]+)*)?"
)


def validate_mount(spec: str) -> str:
    """``PREFIX=APP``: an absolute URL path without a trailing slash (or ``/``) and an app spec."""
    prefix, sep, app = spec.partition("=")
    if not sep or not app.strip():
        raise ValueError(f"{spec!r} is not PREFIX=APP (e.g. /api=myproject.api:app)")
    if not _MOUNT_PREFIX.fullmatch(prefix):
        raise ValueError(
            f"mount prefix {prefix!r} must be a URL path like /api (no trailing slash), or /"
        )
    return f"{prefix}={app.strip()}"


def _convert_mounts(raw: object) -> tuple[str, ...]:
    items = _items(raw, "PREFIX=APP or a list of them")
    mounts = tuple(validate_mount(_convert_str(item)) for item in items)
    prefixes = [mount.partition("=")[0] for mount in mounts]
    duplicates = sorted({prefix for prefix in prefixes if prefixes.count(prefix) > 1})
    if duplicates:
        raise ValueError(f"prefix mounted twice: {', '.join(duplicates)}")
    return mounts


_CERT_REQS = {"0": "none", "1": "optional", "2": "required"}


def _convert_cert_reqs(raw: object) -> str:
    # gunicorn's --cert-reqs takes the ssl module's numbers (0, 1, 2); accept them as well
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    value = _convert_str(raw).strip().lower()
    return CERT_REQS_WORDS.convert(_CERT_REQS.get(value, value))


def _convert_allow_ips(raw: object) -> str:
    """gunicorn's and uvicorn's ``--forwarded-allow-ips``: addresses, networks, or ``*``."""
    text = ",".join(_convert_strings(raw)) if isinstance(raw, list) else _convert_str(raw)
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    for entry in entries:
        if entry == "*":
            continue
        try:
            if "/" in entry:
                ipaddress.ip_network(entry)
            else:
                ipaddress.ip_address(entry)
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address, a network (with its host bits zero) or *"
            ) from None
    return ",".join(entries)


def _convert_static_mounts(raw: object) -> tuple[str, ...]:
    items = _items(raw, "PREFIX=DIR or a list of them")
    mounts = []
    for item in items:
        prefix, equals, directory = _convert_str(item).partition("=")
        if not equals or not directory or not prefix.startswith("/"):
            raise ValueError(f"{item!r} is not PREFIX=DIR (e.g. /static=./public)")
        mounts.append(f"{prefix}={directory}")
    return tuple(mounts)


_CODINGS = ("br", "zstd", "gzip")


def _convert_codings(raw: object) -> tuple[str, ...]:
    codings = _convert_strings(raw)
    for coding in codings:
        if coding not in _CODINGS:
            raise ValueError(f"{coding!r} is not one of {', '.join(_CODINGS)}")
    return codings


def _convert_regex(raw: object) -> str:
    value = _convert_str(raw)
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _pairs(raw: object, expected: str) -> list[str]:
    """Items that may hold spaces and commas: a TOML list, or one item per flag (the command line
    passes each flag's value as a one-item list); a bare string (environment) is one item."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        return [_convert_str(item) for item in raw]
    raise ValueError(f"expected {expected}, got {_type_name(raw)}")


def _convert_env_pairs(raw: object) -> tuple[str, ...]:
    pairs = _pairs(raw, "KEY=VALUE or a list of them")
    for pair in pairs:
        name, equals, _ = pair.partition("=")
        if not equals or not _ENV_NAME.fullmatch(name):
            raise ValueError(f"{pair!r} is not KEY=VALUE (KEY letters, digits and _)")
    return tuple(pairs)


def _convert_header_pairs(raw: object) -> tuple[str, ...]:
    # the check of RFC 9110 field syntax is the protocol layer's (the same one app headers get);
    # here only the shape, so that the message names the flag
    pairs = _pairs(raw, "Name:Value or a list of them")
    for pair in pairs:
        name, colon, _ = pair.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"{pair!r} is not Name:Value")
    return tuple(pairs)


def _convert_action(raw: object) -> bool:
    return _convert_bool(raw)


BOOL: Kind[bool] = Kind("boolean", _convert_bool, is_flag=True)
STR: Kind[str] = Kind("string", _convert_str, metavar="TEXT")
OPTIONAL_STR: Kind[str | None] = Kind("string", _convert_optional_str, metavar="TEXT")
DIRECTORY: Kind[str] = Kind("directory", _convert_str, metavar="DIR")
OPTIONAL_DIRECTORY: Kind[str | None] = Kind("directory", _convert_optional_str, metavar="DIR")
ENV_PAIRS: Kind[tuple[str, ...]] = Kind(
    "list of `KEY=VALUE` (one per flag; a list in the file)",
    _convert_env_pairs,
    metavar="KEY=VALUE",
)
HEADER_PAIRS: Kind[tuple[str, ...]] = Kind(
    "list of `Name:Value` (one per flag; a list in the file)",
    _convert_header_pairs,
    metavar="NAME:VALUE",
)
TOML_FILE: Kind[str | None] = Kind(
    "path of a TOML file or a gunicorn.conf.py", _convert_optional_str, metavar="FILE"
)
SECONDS: Kind[float] = Kind("seconds > 0", _convert_seconds, metavar="SECONDS")
SECONDS_OR_ZERO: Kind[float] = Kind(
    "seconds >= 0 (0 disables)", _convert_seconds_or_zero, metavar="SECONDS"
)
MODE: Kind[int | None] = Kind("octal file mode mask, e.g. `0o117`", _convert_mode, metavar="OCTAL")
STRINGS: Kind[tuple[str, ...]] = Kind(
    "list of strings (comma- or space-separated in flags and env)", _convert_strings, metavar="TEXT"
)
OPTIONAL_PATH: Kind[str | None] = Kind("path of a file", _convert_optional_str, metavar="FILE")
ROOT_PATH: Kind[str] = Kind("URL path, empty or `/prefix`", _convert_root_path, metavar="PATH")
BINDS: Kind[tuple[str, ...]] = Kind(
    "list of addresses: `HOST:PORT`, `[IPv6]:PORT`, `unix:PATH`, `fd://N`, each optionally "
    "after `uwsgi:` or `fastcgi:`",
    _convert_binds,
    metavar="ADDRESS",
)
OPTIONAL_BINDS: Kind[tuple[str, ...]] = Kind(
    "list of addresses, as `bind` takes them", _convert_binds_or_none, metavar="ADDRESS"
)
HEALTH_PATH: Kind[str | None] = Kind(
    "URL path, e.g. `/healthz`", _convert_health_path, metavar="PATH"
)
HTTP_PROTOCOLS: Kind[tuple[str, ...]] = Kind(
    "list of `h1`, `h2` (comma- or space-separated in flags and env)",
    _convert_http_protocols,
    metavar="PROTOCOLS",
)
MOUNTS: Kind[tuple[str, ...]] = Kind("list of `PREFIX=APP`", _convert_mounts, metavar="PREFIX=APP")
ACTION: Kind[bool] = Kind("command-line action", _convert_action, is_flag=True)
ALLOW_IPS: Kind[str] = Kind(
    "comma-separated IP addresses and networks, or `*`", _convert_allow_ips, metavar="IPS"
)
STATIC_MOUNTS: Kind[tuple[str, ...]] = Kind(
    "list of `PREFIX=DIR`", _convert_static_mounts, metavar="PREFIX=DIR"
)
CODINGS: Kind[tuple[str, ...]] = Kind(
    "list of `br`, `zstd`, `gzip`", _convert_codings, metavar="CODING"
)
REGEX: Kind[str] = Kind("regular expression", _convert_regex, metavar="REGEX")
CERT_REQS_WORDS: Kind[str] = choice("none", "optional", "required")
CERT_REQS: Kind[str] = Kind(
    "one of `none`, `optional`, `required` (or gunicorn's `0`, `1`, `2`)",
    _convert_cert_reqs,
    metavar="{none,optional,required}",
    choices=("none", "optional", "required"),
)
