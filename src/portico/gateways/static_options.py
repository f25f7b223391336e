"""The static-file settings: ``--static PREFIX=DIR`` and what shapes the responses.

Plain data, checked when built, with no file system access (the folders are looked at by
:meth:`portico.gateways.static.StaticFiles.check` when a worker starts). Split from
:mod:`portico.gateways.static` so that the settings can be read without the serving code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from portico.gateways.static_fs import DENY, FOLLOW, INSIDE

__all__ = ["CODING_SUFFIXES", "StaticOptions", "parse_mount"]

CODING_SUFFIXES: Final = {"br": b".br", "zstd": b".zst", "gzip": b".gz"}


@dataclass(frozen=True, slots=True)
class StaticOptions:
    """The static-file settings (plain data: validated here, no file system access).

    Each field is a ``static_*`` setting; values and defaults come from the settings table, built
    in one place (``portico.runtime.limits``).
    """

    #: ``(url prefix, directory)`` pairs, e.g. ``(("/static", "./public"),)`` (:func:`parse_mount`)
    mounts: tuple[tuple[str, str], ...]
    #: the file served for a directory (``dir/``); ``""``: directories are 404
    index: str
    #: serve names starting with ``.`` (``.well-known``, but also ``.env``, ``.git``)
    hidden: bool
    #: symbolic links under a folder: ``"deny"``, ``"inside"`` (only to a place inside the
    #: folder) or ``"follow"`` (anywhere)
    symlinks: str
    #: precompressed siblings looked for, in the server's order of preference
    precompressed: tuple[str, ...]
    #: ``Cache-Control`` of an ordinary file (``""``: none): revalidate each time, cheap with 304s
    cache_control: str
    #: ``Cache-Control`` of a fingerprinted file name
    immutable_cache_control: str
    #: a regular expression (searched in the file name) that marks a name fingerprinted; ``""``:
    #: none is. A name it takes by mistake would be cached for a year, so the default errs the
    #: other way: a word (``facade``) or a number (``photo.20240115.jpg``) is not a hash.
    fingerprint: str

    def __post_init__(self) -> None:
        for prefix, directory in self.mounts:
            if not _valid_prefix(prefix):
                raise ValueError(
                    f"static prefix {prefix!r} must be '/' or start with '/' and not end with"
                    " one, with letters, digits and -._~ only between slashes"
                )
            if not directory:
                raise ValueError(f"static prefix {prefix!r} has no directory")
        prefixes = [prefix for prefix, _ in self.mounts]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("a static prefix is given twice")
        if self.index and ("/" in self.index or "\\" in self.index or self.index.startswith(".")):
            raise ValueError(f"static index {self.index!r} must be a plain, visible file name")
        if self.symlinks not in (DENY, INSIDE, FOLLOW):
            raise ValueError(f"static symlinks must be {DENY!r}, {INSIDE!r} or {FOLLOW!r}")
        for coding in self.precompressed:
            if coding not in CODING_SUFFIXES:
                raise ValueError(
                    f"precompressed coding {coding!r} is not one of {', '.join(CODING_SUFFIXES)}"
                )
        for value in (self.cache_control, self.immutable_cache_control):
            if not all(" " <= ch <= "~" for ch in value):
                raise ValueError("a Cache-Control setting must be printable ASCII")
        try:
            re.compile(self.fingerprint)
        except re.error as exc:
            raise ValueError(f"static fingerprint is not a regular expression: {exc}") from None


_prefix_text = re.compile(r"(?:/[A-Za-z0-9\-._~]+)+").fullmatch


def _valid_prefix(prefix: str) -> bool:
    if prefix == "/":
        return True
    return _prefix_text(prefix) is not None and not any(
        part in (".", "..") for part in prefix.split("/")
    )


def parse_mount(text: str) -> tuple[str, str]:
    """``"/static=./public"`` → ``("/static", "./public")`` (the form of ``--static``)."""
    prefix, equals, directory = text.partition("=")
    if not equals or not directory:
        raise ValueError(f"--static takes PREFIX=DIR, got {text!r}")
    prefix = prefix.strip()
    if prefix != "/":
        prefix = prefix.rstrip("/")
    return prefix, directory
