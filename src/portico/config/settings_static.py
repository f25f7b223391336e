"""The static-file rows of the settings table: what ``--static`` serves and how it is cached.

Inherited by ``settings.Config``; read into ``StaticOptions`` in ``runtime.limits``, nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from portico.config import kinds
from portico.config.setting import setting

__all__ = ["StaticSettings"]


@dataclass(frozen=True)
class StaticSettings:
    """The static-file settings (a base of ``Config``; see the module docstring)."""

    # No slots of its own: several groups are bases of Config, which makes the slots for all.
    __slots__ = ()

    static: tuple[str, ...] = setting(
        (),
        kinds.STATIC_MOUNTS,
        "Serve the files of a folder under a URL prefix without calling the app: "
        "`PREFIX=DIR`, e.g. `/static=./public`, repeatable. GET and HEAD with ETag, "
        "Last-Modified, conditional requests and ranges; nothing outside the folder is ever "
        "served.",
        flags=("--static",),
        repeatable=True,
    )
    static_index: str = setting(
        "index.html",
        kinds.STR,
        "The file served for a directory path (`/static/docs/`); empty: directories are 404. "
        "Directories are never listed.",
        flags=("--static-index",),
    )
    static_hidden: bool = setting(
        False,
        kinds.BOOL,
        "Serve names that start with a dot (`.well-known`, but also `.env` and `.git`, which "
        "is why it is off).",
        flags=("--static-hidden", "--no-static-hidden"),
    )
    static_symlinks: str = setting(
        "inside",
        kinds.choice("deny", "inside", "follow"),
        "Symbolic links under a static folder: `inside` follows one only to a place inside the "
        "folder, `deny` never follows one, `follow` follows any (the folder's owner decides "
        "what is served).",
        flags=("--static-symlinks",),
    )
    static_precompressed: tuple[str, ...] = setting(
        ("br", "zstd", "gzip"),
        kinds.CODINGS,
        "Precompressed siblings looked for (`app.js.br`, `app.js.zst`, `app.js.gz`), chosen "
        "by the client's `Accept-Encoding`, in this order of preference when it likes several; "
        "empty: none.",
        flags=("--static-precompressed",),
        repeatable=True,
    )
    static_cache_control: str = setting(
        "no-cache",
        kinds.STR,
        "`Cache-Control` of a static file (empty: none). `no-cache` lets browsers keep it and "
        "revalidate each time, which the ETag makes a cheap 304.",
        flags=("--static-cache-control",),
    )
    static_immutable_cache_control: str = setting(
        "public, max-age=31536000, immutable",
        kinds.STR,
        "`Cache-Control` of a fingerprinted file name (`app.3f2a9c.js`, see "
        "`static_fingerprint`): its content never changes under that name.",
        flags=("--static-immutable-cache-control",),
    )
    static_fingerprint: str = setting(
        r"[.-](?=[a-f]*[0-9])(?=[0-9]*[a-f])[0-9a-f]{6,}\.[A-Za-z0-9]+$",
        kinds.REGEX,
        "A regular expression searched in a file name that marks it fingerprinted: by default "
        "a dot or dash, 6 or more lower-case hex digits with a letter and a digit among them, "
        "and the extension (webpack, Django's ManifestStaticFilesStorage, Rails, esbuild). "
        "Empty: no name is.",
        flags=("--static-fingerprint",),
    )
