"""From a URL path to an open file inside a folder, with no way out of the folder.

Two steps, split so each can be tested alone:

1. :func:`url_segments` turns the percent-encoded path under a mount into file names, refusing
   everything with a second meaning: ``.`` and ``..`` segments; percent-encoded dots, slashes,
   backslashes, NUL and percent signs (``%2e``, ``%2f``, ``%5c``, ``%00``, ``%25``: the last one
   is what double encoding ``%252e`` needs); any other control character; a backslash; raw bytes
   outside ASCII (a client must percent-encode them); percent-encoding that is not valid UTF-8
   (overlong forms such as ``%c0%ae`` are invalid UTF-8, so Python's strict decoder refuses them);
   empty segments (``a//b``: nginx merges them, a file system ignores them, a proxy's rule may not
   — ambiguous, so refused), except a trailing ``/``, which asks for a directory's index; names
   starting with ``.`` unless hidden files are allowed. Nothing is ever normalised: a path either
   names files plainly or is refused.
2. :func:`open_beneath` opens those names one by one, each relative to the directory descriptor
   opened just before (``openat``), starting from the mount's folder, with ``O_NOFOLLOW``: a
   symbolic link is never followed silently, and since every step is relative to a descriptor
   already held, nothing can be swapped in between a check and the use (no TOCTOU window: the
   checks *are* the opens). Symbolic links are then handled by the ``symlinks`` setting:

   * ``"deny"``: a link anywhere under the folder is "not found";
   * ``"inside"`` (default): when a link is met, the whole path is resolved with ``realpath``; if
     the result lies inside the folder's own real path, its components (now link-free) are opened
     again from the folder, one by one with ``O_NOFOLLOW``. A link that changes between the two
     walks only makes the second one fail: a link is followed only to a place that was checked,
     and nothing outside the folder is ever opened, not even to look;
   * ``"follow"``: links are followed wherever they point (the operator vouches for the folder).

   The last name is opened with ``O_NONBLOCK`` (a FIFO would otherwise block the worker until a
   writer came) and ``fstat``-ed: only regular files are served, a directory may give its index.

The mount's folder itself is opened by its configured path on every request, following links in
that path: a deploy that swaps a ``current -> release-N`` link is served from the new release at
once, and the folder's own links are the operator's, not the client's.

Every descriptor this module opens is closed before it returns, except the ones it hands back,
which the caller closes (:meth:`Opened.close`).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Final, NamedTuple

__all__ = ["DENY", "FOLLOW", "INSIDE", "Opened", "open_beneath", "url_segments"]

DENY: Final = "deny"
INSIDE: Final = "inside"
FOLLOW: Final = "follow"

_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY: Final = getattr(os, "O_DIRECTORY", 0)
# O_PATH (Linux) opens a directory only to walk through it: it needs search permission, not read
_O_DIR_WALK: Final = getattr(os, "O_PATH", os.O_RDONLY) | _O_DIRECTORY | _O_CLOEXEC
_O_FILE: Final = os.O_RDONLY | os.O_NONBLOCK | _O_CLOEXEC | getattr(os, "O_NOCTTY", 0)

#: the errors that mean "not there, or not for you": answered 404, whatever the cause
NOT_FOUND_ERRORS: Final = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.ELOOP,
        errno.EACCES,
        errno.EPERM,
        errno.ENAMETOOLONG,
        errno.ENXIO,
        errno.EISDIR,
        errno.ENODEV,
    }
)
_MAX_SEGMENTS: Final = 64
_NAME_MAX: Final = 255
# percent-escapes that are refused outright: . / \ NUL %
_FORBIDDEN_ESCAPES: Final = frozenset({b"2e", b"2f", b"5c", b"00", b"25"})
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


def url_segments(rest: bytes, allow_hidden: bool) -> list[bytes] | None:
    """The file names a percent-encoded path under a mount asks for, or None if it is refused.

    ``rest`` is what follows the mount prefix: ``b""`` (the mount itself, without its slash) or a
    path starting with ``/``. A trailing ``/`` gives a last name of ``b""`` (the directory's index).
    """
    if not rest:
        return []
    if rest[0] != 0x2F:
        return None
    parts = rest[1:].split(b"/")
    if len(parts) > _MAX_SEGMENTS:
        return None
    names: list[bytes] = []
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if not part:
            if i == last:
                names.append(b"")  # "dir/": the directory's index
                break
            return None  # "a//b"
        name = _decode_segment(part)
        if name is None or name in (b".", b".."):
            return None
        if name[0] == 0x2E and not allow_hidden:  # ".env", ".git"
            return None
        names.append(name)
    return names


def _decode_segment(part: bytes) -> bytes | None:
    for byte in part:
        # controls, space, DEL, backslash and raw non-ASCII are refused (before decoding, so
        # that nothing decoded can be mistaken for them either)
        if byte <= 0x20 or byte >= 0x7F or byte == 0x5C:
            return None
    if part.find(b"%") < 0:
        name = part
    else:
        out = bytearray()
        pieces = part.split(b"%")
        out += pieces[0]
        for piece in pieces[1:]:
            code = piece[:2]
            if len(code) < 2 or code[0] not in _HEX or code[1] not in _HEX:
                return None  # a bare "%"
            if code.lower() in _FORBIDDEN_ESCAPES:
                return None
            value = int(code, 16)
            if value < 0x20 or value == 0x7F:
                return None
            out.append(value)
            out += piece[2:]
        name = bytes(out)
    if len(name) > _NAME_MAX:
        return None
    try:
        name.decode("utf-8")  # strict: overlong forms and surrogates are refused
    except UnicodeDecodeError:
        return None
    return name


class Opened(NamedTuple):
    """A file found under a mount: its descriptor and ``fstat``, and the directory it is in."""

    fd: int
    stat: os.stat_result
    #: the descriptor of the directory holding it (for precompressed siblings); closed with it
    dir_fd: int
    #: the file's name in that directory (the index name for a directory request)
    name: bytes

    def close(self) -> None:
        try:
            os.close(self.fd)
        finally:
            os.close(self.dir_fd)


class Redirect(NamedTuple):
    """The path names a directory without its trailing slash, and the directory has an index."""


REDIRECT: Final = Redirect()


def open_beneath(
    root: str, names: list[bytes], index: bytes, symlinks: str, allow_hidden: bool
) -> Opened | Redirect | None:
    """Open ``names`` (from :func:`url_segments`) under the folder ``root`` (an absolute path).

    Returns the open regular file, :data:`REDIRECT`, or None for "not found" (a missing name, one
    that is not a regular file, a directory without an index, a link the setting refuses).
    OS errors other than "not there / not allowed" (e.g. too many open files) propagate.
    """
    try:
        root_fd = os.open(root, _O_DIR_WALK)
    except OSError as exc:
        if exc.errno in NOT_FOUND_ERRORS:
            return None
        raise
    found: Opened | Redirect | None = None
    try:
        if symlinks == FOLLOW:
            found = _walk(root_fd, names, index, 0)
        else:
            try:
                found = _walk(root_fd, names, index, _O_NOFOLLOW)
            except _SymlinkMet:
                if symlinks == INSIDE:
                    found = _reopen_inside(root, root_fd, names, index, allow_hidden)
    finally:
        # a file directly in the folder keeps the folder's descriptor as its directory
        if not (isinstance(found, Opened) and found.dir_fd == root_fd):
            os.close(root_fd)
    return found


class _SymlinkMet(Exception):
    """The link-free walk met a symbolic link."""


def _walk(
    root_fd: int, names: list[bytes], index: bytes, nofollow: int
) -> Opened | Redirect | None:
    """Open ``names`` one at a time below ``root_fd``.

    ``names == []`` is the directory itself, asked without its slash; a last name ``b""`` asks
    for the index. With ``nofollow`` set, a link raises :class:`_SymlinkMet`. ``root_fd`` stays
    open (it is the caller's); it is the :attr:`Opened.dir_fd` of a file directly below it.
    """
    dir_fd = root_fd
    try:
        for name in names[:-1]:
            next_fd = _open_name(dir_fd, name, _O_DIR_WALK | nofollow)
            _release(dir_fd, root_fd)
            dir_fd = next_fd
        if not names:  # the folder itself, without its slash
            return REDIRECT if index and _has_regular(dir_fd, index, nofollow) else None
        last = names[-1]
        want_index = not last
        if want_index:
            if not index:
                return None  # no directory listing, ever
            last = index
        fd = _open_name(dir_fd, last, _O_FILE | nofollow)
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode):
                opened = Opened(fd, info, dir_fd, last)
                dir_fd = -1  # handed over
                return opened
            redirect = (
                stat.S_ISDIR(info.st_mode)
                and not want_index
                and bool(index)
                and _has_regular(fd, index, nofollow)
            )
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return REDIRECT if redirect else None
    except OSError as exc:
        if exc.errno in NOT_FOUND_ERRORS:
            return None
        raise
    finally:
        if dir_fd >= 0:
            _release(dir_fd, root_fd)


def _release(fd: int, root_fd: int) -> None:
    if fd != root_fd:
        os.close(fd)


def _open_name(dir_fd: int, name: bytes, flags: int) -> int:
    """``openat(dir_fd, name)``; a link under ``O_NOFOLLOW`` raises :class:`_SymlinkMet`."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        # Linux: ELOOP for a final link, ENOTDIR for a link opened with O_DIRECTORY; FreeBSD:
        # EMLINK. A real "not a directory" is told apart by looking at the name itself.
        if flags & _O_NOFOLLOW and exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            try:
                link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            except OSError:
                link = False
            if link:
                raise _SymlinkMet from None
        raise


def _has_regular(dir_fd: int, name: bytes, nofollow: int) -> bool:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=not nofollow)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode)


def _reopen_inside(
    root: str, root_fd: int, names: list[bytes], index: bytes, allow_hidden: bool
) -> Opened | Redirect | None:
    """After a link was met: follow it only if the real path stays inside the folder."""
    root_real = os.path.realpath(os.fsencode(root))
    base = root_real.rstrip(b"/") + b"/"
    target = os.path.realpath(os.path.join(root_real, *[name for name in names if name]))
    if target == root_real:
        parts: list[bytes] = []
    elif target.startswith(base):
        parts = target[len(base) :].split(b"/")
    else:
        return None  # the link leads out of the folder
    if not allow_hidden and any(part.startswith(b".") for part in parts):
        return None  # nor to a hidden name the URL could not have named itself
    if names and not names[-1]:
        parts.append(b"")  # still the directory's index that was asked for
    try:
        return _walk(root_fd, parts, index, _O_NOFOLLOW)
    except _SymlinkMet:
        return None  # a link changed since realpath looked: refuse rather than chase it
