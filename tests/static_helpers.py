"""A Stream in memory for the static file gateway, and a folder tree to serve."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Coroutine, Generator, Iterable
from pathlib import Path
from typing import Any

from portico.config import Config
from portico.errors import ClientDisconnected
from portico.gateways.static import StaticFiles, StaticOptions
from portico.protocols.events import Headers, Request
from portico.runtime.limits import build_limits

SECRET = b"TOP SECRET, outside the folder\n"
HELLO = b"hello world\n"


class Ready:
    """An awaitable that is already done (like the runtime's, when it must not wait long)."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


class FakeStream:
    """Records what the gateway sends; ``send_file`` reads the bytes as the runtime would."""

    def __init__(
        self,
        path: bytes,
        method: str = "GET",
        headers: Iterable[tuple[bytes, bytes]] = (),
        query: bytes = b"",
        *,
        awaitable: bool = False,
        disconnect_in: str = "",
    ) -> None:
        self.request = Request(1, method, path, query, "1.1", list(headers), False, False)
        self.status: int | None = None
        self.headers: Headers = []
        self.body = b""
        self.ended = False
        self.finished = False
        self.aborted = False
        self.sent_from: str | None = None
        self.file_calls = 0
        self._awaitable = awaitable
        self._disconnect_in = disconnect_in

    def start(
        self, status: int, headers: Headers, body: bytes, end: bool
    ) -> Awaitable[None] | None:
        assert self.status is None, "start called twice"
        if self._disconnect_in == "start":
            raise ClientDisconnected("gone")
        self.status, self.headers, self.body, self.ended = status, headers, body, end
        return Ready() if self._awaitable else None

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        assert self.status is not None and not self.ended, "send_file without start(end=False)"
        assert count > 0
        self.file_calls += 1
        self.sent_from = os.readlink(f"/proc/self/fd/{fd}")
        if self._disconnect_in == "send_file":
            raise ClientDisconnected("gone")
        data = os.pread(fd, count, offset)
        assert len(data) == count, "asked for more bytes than the file has"
        self.body += data
        self.ended = True

    def response_started(self) -> bool:
        return self.status is not None

    def abort(self) -> None:
        self.aborted = True

    def app_finished(self) -> None:
        self.finished = True

    def header(self, name: bytes) -> bytes | None:
        values = [v for n, v in self.headers if n == name]
        assert len(values) <= 1, f"{name!r} sent twice"
        return values[0] if values else None

    @property
    def names(self) -> set[bytes]:
        return {name for name, _ in self.headers}


def drive(coro: Coroutine[Any, Any, int]) -> int:
    """Run a coroutine that never really waits (the fake stream never suspends)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return int(done.value)
    coro.close()
    raise AssertionError("the coroutine suspended")


def serve(static: StaticFiles, stream: FakeStream) -> FakeStream:
    mount = static.match(stream.request.raw_path)
    assert mount is not None, "not under a static prefix"
    status = drive(static.serve(stream, mount))
    assert stream.finished, "app_finished was not called"
    if status:
        assert status == stream.status
        assert stream.ended
    return stream


def get(static: StaticFiles, path: bytes, *headers: tuple[bytes, bytes], **kw: Any) -> FakeStream:
    return serve(static, FakeStream(path, headers=headers, **kw))


def make_tree(tmp: Path) -> Path:
    """``tmp/public`` (the served folder) and, next to it, things that must never be served."""
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (tmp / "secret.txt").write_bytes(SECRET)
    public = tmp / "public"
    public.mkdir()
    files = {
        "hello.txt": HELLO,
        "index.html": b"<h1>home</h1>\n",
        "app.js": b"console.log('identity');\n" * 10,
        "app.3f2a9c81.js": b"console.log('fingerprinted');\n",
        "data.json": b'{"a": 1}\n',
        "img.png": b"\x89PNG\r\n\x1a\n" + bytes(100),
        "img.png.gz": b"not used",
        "blob.unknownext": b"\x00\x01",
        "empty.txt": b"",
        "a b.txt": b"spaced\n",
        "caf\u00e9.txt": b"accent\n",
        "style.css": b"body{}\n",
        ".env": SECRET,
        "docs/index.html": b"<h1>docs</h1>\n",
        "docs/page.html": b"<p>page</p>\n",
        "noindex/a.txt": b"a\n",
        "sub/deep/file.txt": b"deep\n",
        ".git/config": SECRET,
        ".well-known/security.txt": b"Contact: x\n",
        "dotdir.x/inner.txt": b"inner\n",
    }
    for name, data in files.items():
        path = public / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    # precompressed siblings (their bytes are markers, not real compression)
    (public / "app.js.br").write_bytes(b"BR" * 20)
    (public / "app.js.gz").write_bytes(b"GZ" * 30)
    (public / "app.js.zst").write_bytes(b"ZS" * 25)
    (public / "style.css.gz").write_bytes(b"OLD")
    stale = (public / "style.css").stat().st_mtime_ns - 10**9
    os.utime(public / "style.css.gz", ns=(stale, stale))  # older than its file: stale
    (public / "hello.txt.br").mkdir()  # a "sibling" that is a directory
    # links
    os.symlink("hello.txt", public / "link_in")
    os.symlink("docs", public / "link_dir_in")
    os.symlink("../outside/secret.txt", public / "link_out")
    os.symlink(str(outside / "secret.txt"), public / "link_out_abs")
    os.symlink("../outside", public / "link_dir_out")
    os.symlink(".env", public / "link_hidden")
    os.symlink("sub/../hello.txt", public / "link_dotdot_in")
    os.symlink("sub/../../secret.txt", public / "link_dotdot_out")
    os.symlink("loop", public / "loop")
    os.symlink("missing", public / "dangling")
    os.symlink(".", public / "link_self")
    os.mkfifo(public / "fifo")
    return public


def static_options(**options: Any) -> StaticOptions:
    """The static options the server builds from its settings, with ``options`` (named as
    :class:`StaticOptions` names them) changed."""
    return dataclasses.replace(build_limits(Config()).static, **options)


def static_for(public: Path, **options: Any) -> StaticFiles:
    return StaticFiles(static_options(mounts=(("/static", str(public)),), **options))


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))
