"""Static files served by the worker itself (``--static PREFIX=DIR``), without calling the app.

The runtime's dispatcher asks :meth:`StaticFiles.match` for each request's ``raw_path``; on a hit
it awaits :meth:`StaticFiles.serve`, which answers through the stream seam and returns the status.
A request under a static prefix never reaches the app, also when the file is missing (404).

What a response is made of, and the rules behind it:

* **Mapping** (:mod:`portico.gateways.static_fs`): a path either names files plainly or is refused
  with 404; nothing leaves the folder (dot segments, encoded dots and slashes, backslashes, NUL,
  double encoding, links out of the folder, hidden names). What is denied is a 404 like what is
  missing, so a client cannot tell them apart. No directory listing; a directory gives its
  ``index`` file, and a directory asked without its slash is redirected (301) to the slash form
  with a relative ``Location`` (``./name/``), which stays right behind a proxy that strips a
  prefix, and whose ``./`` keeps a name with a colon from reading as a URI scheme (RFC 3986 §4.2).
* **Methods**: GET and HEAD (the same head, no body, RFC 9110 §9.3.2); others 405 with ``Allow``
  (§15.5.6), whether the file exists or not.
* **Validators**: a strong ``ETag`` from the file's inode, size and modification time in
  nanoseconds, and ``Last-Modified``. Strong because any write changes the size or the mtime, and
  a deploy that replaces a file by renaming a new one over it changes the inode even when the tool
  kept the old mtime (``rsync -t``, ``cp -p`` of an equal-sized file): what the tag names is one
  sequence of bytes, which ``If-Range`` and ``If-Match`` need (§8.8.3, §13.1.5). The price: two
  machines serving the same files give different tags (a cache then revalidates with 200, never
  with a wrong 304). A precompressed sibling has its own tag (its own file, and the coding in the
  tag) so a cache never mixes encodings.
* **Conditional requests** in the order of RFC 9110 §13.2.2 (:mod:`portico.protocols.conditional`):
  412 for a failed ``If-Match``/``If-Unmodified-Since``, 304 for a matching ``If-None-Match`` or a
  not-modified ``If-Modified-Since``; a 304 keeps ``ETag``, ``Cache-Control`` and ``Vary``
  (§15.4.5).
* **Ranges** (:mod:`portico.protocols.ranges`): one range → 206 with ``Content-Range``; overlapping
  ones are merged; disjoint ones → the whole file with 200 (no multipart); nothing satisfiable →
  416 with ``Content-Range: bytes */LENGTH``. ``If-Range`` decides first. GET only (§14.2).
* **Precompressed siblings**: for ``app.js``, ``app.js.br``, ``.zst`` and ``.gz`` (as configured)
  chosen by ``Accept-Encoding`` (:mod:`portico.protocols.codings`), with ``Content-Encoding``, and
  ``Vary: Accept-Encoding`` on every response for a file that has a sibling, the identity one
  included, so that caches keep the variants apart. A sibling older than the file is stale (the
  build forgot it) and is not used. Only for types worth compressing (not images, audio, video).
* **Types** from the standard library's own table (``mimetypes.MimeTypes()``, never the system's
  ``mime.types`` files, so every machine answers the same) plus a few modern web types; text types
  get ``; charset=utf-8``.
* **Caching**: ``Cache-Control`` from a setting, and a second one for fingerprinted names
  (``app.3f2a9c81.js``), which never change and can be cached for a year as ``immutable``.
* **Memory and descriptors**: a file is never read here; the runtime's ``send_file`` sends it from
  the descriptor, paced by the client. Every descriptor is closed on every path, errors and client
  disconnects included (the tests count the process's descriptors).

Opening files costs a few ``openat``/``fstat`` calls on the event loop, which is what the local
file systems static files live on answer from their caches in microseconds; ``send_file`` moves
the bytes off the loop.
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat
import time
from collections.abc import Awaitable, Callable
from typing import Final, NamedTuple, Protocol
from urllib.parse import unquote_to_bytes

from portico.errors import ClientDisconnected
from portico.gateways.static_fs import (
    FOLLOW,
    NOT_FOUND_ERRORS,
    Opened,
    Redirect,
    open_beneath,
    url_segments,
)
from portico.gateways.static_options import (
    CODING_SUFFIXES,
    StaticOptions,
    parse_mount,
)
from portico.logs import error_log as log
from portico.protocols.codings import choose_coding
from portico.protocols.conditional import (
    evaluate_preconditions,
    format_http_date,
    if_range_allows,
)
from portico.protocols.events import Headers, Request
from portico.protocols.ranges import UNSATISFIABLE, content_range, select_range

__all__ = [
    "StaticFiles",
    "StaticMount",
    "StaticOptions",
    "StaticStream",
    "parse_mount",
]


class StaticStream(Protocol):
    """What serving a file needs of the runtime's stream (a subset of ``gateways.stream.Stream``,
    with the ``send_file(fd, offset, count)`` the runtime is getting)."""

    request: Request

    def start(
        self, status: int, headers: Headers, body: bytes, end: bool
    ) -> Awaitable[None] | None: ...

    def send_file(self, fd: int, offset: int, count: int) -> Awaitable[None]:
        """After ``start(..., end=False)``: send ``count`` bytes of ``fd`` from ``offset`` and end
        the response; the caller keeps and closes ``fd``."""
        ...

    def response_started(self) -> bool: ...

    def abort(self) -> None: ...

    def app_finished(self) -> None: ...


class StaticMount(NamedTuple):
    """One ``PREFIX=DIR``: the prefix as the raw path spells it, and the folder's absolute path."""

    prefix: bytes
    root: str


_TEXT_BODIES: Final = {
    404: b"Not Found\n",
    405: b"Method Not Allowed\n",
    412: b"Precondition Failed\n",
    416: b"Range Not Satisfiable\n",
    500: b"Internal Server Error\n",
}
_ALLOW: Final = (b"allow", b"GET, HEAD")
_ACCEPT_RANGES: Final = (b"accept-ranges", b"bytes")
_VARY: Final = (b"vary", b"accept-encoding")
_PLAIN: Final = b"text/plain; charset=utf-8"
# request fields read, by index into the values list
_WANTED: Final = {
    b"if-match": 0,
    b"if-unmodified-since": 1,
    b"if-none-match": 2,
    b"if-modified-since": 3,
    b"if-range": 4,
    b"range": 5,
    b"accept-encoding": 6,
}
_CACHE_LIMIT: Final = 4096
#: seconds a file's list of precompressed siblings is trusted before it is looked at again
_SIBLING_RECHECK: Final = 1.0
_O_SIBLING: Final = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)

# Types the standard library's table lacks or names the old way (RFC 9239: text/javascript).
_EXTRA_TYPES: Final = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".map": "application/json",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".md": "text/markdown",
    ".gz": "application/gzip",
    ".zst": "application/zstd",
    ".br": "application/octet-stream",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
}
# already compressed: no sibling is looked for
_COMPRESSED_PREFIXES: Final = ("image/", "audio/", "video/", "font/woff")
_COMPRESSIBLE_IMAGES: Final = frozenset({"image/svg+xml", "image/vnd.microsoft.icon", "image/bmp"})
_COMPRESSED_TYPES: Final = frozenset(
    {"application/gzip", "application/zip", "application/zstd", "application/x-7z-compressed"}
)


class _Representation(NamedTuple):
    """The file chosen for a response (identity or a sibling) and what depends on it."""

    fd: int
    size: int
    etag: bytes
    last_modified: int
    last_modified_text: bytes
    coding: str | None


class StaticFiles:
    """The static mounts of one server: built once per worker from :class:`StaticOptions`."""

    __slots__ = (
        "_cache_control",
        "_clock",
        "_content_types",
        "_fingerprint",
        "_immutable",
        "_index",
        "_mimetypes",
        "_sibling_cache",
        "_validators",
        "mounts",
        "options",
    )

    def __init__(self, options: StaticOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self._clock = clock
        # longest prefix first, so "/static/img" wins over "/static"
        self.mounts = tuple(
            sorted(
                (
                    StaticMount(
                        b"" if prefix == "/" else prefix.encode("ascii"),
                        os.path.abspath(directory),
                    )
                    for prefix, directory in options.mounts
                ),
                key=lambda mount: -len(mount.prefix),
            )
        )
        self._index = options.index.encode("utf-8")
        self._fingerprint = re.compile(options.fingerprint).search if options.fingerprint else None
        self._cache_control = options.cache_control.encode("latin-1")
        self._immutable = options.immutable_cache_control.encode("latin-1")
        # the standard library's built-in table only: an instance never reads mime.types
        self._mimetypes = mimetypes.MimeTypes()
        self._content_types: dict[str, tuple[bytes, bool]] = {}
        self._validators: dict[tuple[int, int, int, int, str], tuple[bytes, int, bytes]] = {}
        self._sibling_cache: dict[tuple[int, int, int, int], tuple[float, tuple[str, ...]]] = {}

    def check(self) -> None:
        """At worker start: raise ``ValueError`` unless every folder exists and is a directory."""
        for mount in self.mounts:
            if not os.path.isdir(mount.root):
                shown = mount.prefix.decode() or "/"
                raise ValueError(f"static folder {mount.root!r} of {shown!r} is not a directory")

    def match(self, raw_path: bytes) -> StaticMount | None:
        """The mount a request path falls under, or None (the app serves it).

        A path whose *decoded* form falls under a mount (``/st%61tic/x``) is the mount's too, as
        the app's router would see it there: it gets a 404 from :meth:`serve`, never the app.
        """
        mount = _match(self.mounts, raw_path)
        if mount is None and raw_path.find(b"%") >= 0:
            mount = _match(self.mounts, unquote_to_bytes(raw_path))
        return mount

    async def serve(self, stream: StaticStream, mount: StaticMount) -> int:
        """Answer the stream's request from ``mount``; returns the status sent (0 if none was,
        because the client left). Ends the exchange like an app's callable: ``app_finished``."""
        try:
            return await self._serve(stream, mount)
        except ClientDisconnected:
            return 0
        except Exception:
            log.exception("Error serving a static file")
            if stream.response_started():
                stream.abort()
                return 0
            await _send_text(stream, 500, [])
            return 500
        finally:
            stream.app_finished()

    # ------------------------------------------------------------------------------ internals

    async def _serve(self, stream: StaticStream, mount: StaticMount) -> int:
        request = stream.request
        method = request.method
        if method not in ("GET", "HEAD"):
            await _send_text(stream, 405, [_ALLOW])
            return 405
        options = self.options
        raw_path = request.raw_path
        prefix = mount.prefix
        names = (
            url_segments(raw_path[len(prefix) :], options.hidden)
            if raw_path.startswith(prefix)
            else None  # the prefix itself was percent-encoded
        )
        if names is None:
            await _send_text(stream, 404, [])
            return 404
        found = open_beneath(mount.root, names, self._index, options.symlinks, options.hidden)
        if found is None:
            await _send_text(stream, 404, [])
            return 404
        if isinstance(found, Redirect):
            await _send_redirect(stream, raw_path, request.query_string)
            return 301
        try:
            return await self._serve_file(stream, found, method == "HEAD")
        finally:
            found.close()

    async def _serve_file(self, stream: StaticStream, found: Opened, head: bool) -> int:
        fields: list[bytes | None] = [None] * 7
        for field, value in stream.request.headers:
            index = _WANTED.get(field)
            if index is not None:
                previous = fields[index]
                fields[index] = value if previous is None else previous + b", " + value
        name = found.name.decode("utf-8")
        content_type, compressible = self._content_type(name)
        available: tuple[str, ...] = ()
        if compressible and self.options.precompressed:
            available = self._siblings(found)
        sibling_fd = -1
        try:
            chosen = self._identity(found)
            coding = choose_coding(fields[6], available) if available else None
            if coding is not None:
                sibling = self._open_sibling(found, coding)
                if sibling is not None:
                    sibling_fd = sibling.fd
                    chosen = sibling
            return await self._respond(
                stream, chosen, fields, content_type, name, bool(available), head
            )
        finally:
            if sibling_fd >= 0:
                os.close(sibling_fd)

    async def _respond(  # noqa: PLR0917 -- private; one call
        self,
        stream: StaticStream,
        chosen: _Representation,
        fields: list[bytes | None],
        content_type: bytes,
        name: str,
        vary: bool,
        head: bool,
    ) -> int:
        etag = chosen.etag
        cache_control = (
            self._immutable
            if self._fingerprint is not None and self._fingerprint(name)
            else self._cache_control
        )
        common: Headers = [(b"etag", etag)]
        if cache_control:
            common.append((b"cache-control", cache_control))
        if vary:
            common.append(_VARY)
        status = evaluate_preconditions(
            fields[0], fields[1], fields[2], fields[3], etag, chosen.last_modified
        )
        if status == 304:
            await _finish(stream.start(304, common, b"", True))
            return 304
        if status == 412:
            await _send_text(stream, 412, common)
            return 412
        size = chosen.size
        offset, count, status = 0, size, 200
        headers: Headers = [(b"content-type", content_type)]
        range_field = fields[5]
        if range_field is not None and not head:
            if_range = fields[4]
            if if_range is None or if_range_allows(
                if_range, etag, chosen.last_modified, time.time()
            ):
                selected = select_range(range_field, size)
                if selected is UNSATISFIABLE:
                    common.append((b"content-range", b"bytes */%d" % size))
                    common.append(_ACCEPT_RANGES)
                    await _send_text(stream, 416, common)
                    return 416
                if selected is not None:
                    offset, count, status = selected.start, selected.end - selected.start, 206
                    headers.append((b"content-range", content_range(selected, size)))
        headers.append((b"content-length", b"%d" % count))
        headers.append((b"last-modified", chosen.last_modified_text))
        headers.append(_ACCEPT_RANGES)
        if chosen.coding is not None:
            headers.append((b"content-encoding", chosen.coding.encode("ascii")))
        headers += common
        if head or count == 0:
            await _finish(stream.start(status, headers, b"", True))
            return status
        await _finish(stream.start(status, headers, b"", False))
        await stream.send_file(chosen.fd, offset, count)
        return status

    def _content_type(self, name: str) -> tuple[bytes, bool]:
        """``Content-Type`` of a file name, and whether a precompressed sibling is worth a look."""
        extension = os.path.splitext(name)[1].lower()
        known = self._content_types.get(extension)
        if known is None:
            types = self._mimetypes.types_map
            kind = (
                _EXTRA_TYPES.get(extension)
                or types[True].get(extension)
                or types[False].get(extension)
                or "application/octet-stream"
            )
            compressible = kind in _COMPRESSIBLE_IMAGES or not (
                kind.startswith(_COMPRESSED_PREFIXES) or kind in _COMPRESSED_TYPES
            )
            value = kind + "; charset=utf-8" if kind.startswith("text/") else kind
            known = (value.encode("ascii"), compressible)
            if len(self._content_types) >= _CACHE_LIMIT:
                self._content_types.clear()
            self._content_types[extension] = known
        return known

    def _siblings(self, found: Opened) -> tuple[str, ...]:
        """The configured codings that have a regular, fresh sibling file next to ``found``.

        Remembered per file (its device, inode, size and mtime) for a second: most files have no
        sibling, and looking costs a ``stat`` per coding on every request. A sibling added next
        to an unchanged file is seen within that second; one removed is found missing when it
        is opened, and the identity is sent.
        """
        info = found.stat
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        now = self._clock()
        known = self._sibling_cache.get(key)
        if known is not None and now - known[0] < _SIBLING_RECHECK:
            return known[1]
        available = self._look_for_siblings(found)
        if len(self._sibling_cache) >= _CACHE_LIMIT:
            self._sibling_cache.clear()
        self._sibling_cache[key] = (now, available)
        return available

    def _look_for_siblings(self, found: Opened) -> tuple[str, ...]:
        follow = self.options.symlinks == FOLLOW
        mtime = found.stat.st_mtime_ns
        available = []
        for coding in self.options.precompressed:
            try:
                info = os.stat(
                    found.name + CODING_SUFFIXES[coding],
                    dir_fd=found.dir_fd,
                    follow_symlinks=follow,
                )
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_mtime_ns >= mtime:
                available.append(coding)
        return tuple(available)

    def _open_sibling(self, found: Opened, coding: str) -> _Representation | None:
        flags = _O_SIBLING if self.options.symlinks == FOLLOW else _O_SIBLING | _O_NOFOLLOW
        try:
            fd = os.open(found.name + CODING_SUFFIXES[coding], flags, dir_fd=found.dir_fd)
        except OSError as exc:
            if exc.errno in NOT_FOUND_ERRORS:
                return None  # gone since it was looked at: send the identity
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                return None
            return self._representation(fd, info, coding)
        except BaseException:
            os.close(fd)
            raise

    def _identity(self, found: Opened) -> _Representation:
        return self._representation(found.fd, found.stat, None)

    def _representation(self, fd: int, info: os.stat_result, coding: str | None) -> _Representation:
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, coding or "")
        known = self._validators.get(key)
        if known is None:
            known = _validators(info, coding)
            if known[1] < int(info.st_mtime):
                # a file from the future: its Last-Modified was clamped to now (§8.8.2.1) and
                # changes with the clock, so it is not remembered
                return _Representation(fd, info.st_size, known[0], known[1], known[2], coding)
            if len(self._validators) >= _CACHE_LIMIT:
                self._validators.clear()
            self._validators[key] = known
        return _Representation(fd, info.st_size, known[0], known[1], known[2], coding)


def _match(mounts: tuple[StaticMount, ...], path: bytes) -> StaticMount | None:
    for mount in mounts:
        prefix = mount.prefix
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == 0x2F):
            return mount
    return None


def _validators(info: os.stat_result, coding: str | None) -> tuple[bytes, int, bytes]:
    """Strong ETag, Last-Modified in whole seconds, and its text."""
    suffix = b"-" + coding.encode("ascii") if coding else b""
    etag = b'"%x-%x-%x%s"' % (info.st_mtime_ns, info.st_size, info.st_ino, suffix)
    # §8.8.2.1: never a Last-Modified later than the response's Date
    last_modified = min(int(info.st_mtime), int(time.time()))
    return etag, last_modified, format_http_date(last_modified)


async def _finish(waiter: Awaitable[None] | None) -> None:
    if waiter is not None:
        await waiter


async def _send_text(stream: StaticStream, status: int, headers: Headers) -> None:
    body = _TEXT_BODIES[status]
    out: Headers = [(b"content-type", _PLAIN), (b"content-length", b"%d" % len(body))]
    out += headers
    if stream.request.method == "HEAD":
        await _finish(stream.start(status, out, b"", True))
    else:
        await _finish(stream.start(status, out, body, True))


async def _send_redirect(stream: StaticStream, raw_path: bytes, query: bytes) -> None:
    # relative: "./" + the last segment + "/" (RFC 3986 §4.2: "./" keeps "a:b" from being a scheme)
    location = b"./" + raw_path.rsplit(b"/", 1)[-1] + b"/"
    if query:
        location += b"?" + query
    headers: Headers = [(b"location", location), (b"content-length", b"0")]
    await _finish(stream.start(301, headers, b"", True))
