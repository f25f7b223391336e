"""No way out of the folder: known traversal payloads, generated paths, and descriptor counts.

Every ``os.open`` the gateway makes is recorded (through ``/proc/self/fd``, i.e. what the kernel
really opened, after every link), and must lie inside the served folder and outside its hidden
names; what is sent must come from inside too. The process's descriptors are counted around
each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portico.gateways.static import StaticFiles
from portico.gateways.static_fs import url_segments
from tests.static_helpers import (
    SECRET,
    FakeStream,
    drive,
    make_tree,
    open_fds,
    static_for,
    static_options,
)


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("static"))


@contextlib.contextmanager
def recording_opens() -> Iterator[list[str]]:
    opened: list[str] = []
    real_open = os.open

    def recorder(path: object, flags: int, *args: object, **kw: object) -> int:
        fd = real_open(path, flags, *args, **kw)  # type: ignore[arg-type]
        opened.append(os.readlink(f"/proc/self/fd/{fd}"))
        return fd

    with mock.patch.object(os, "open", recorder):
        yield opened


def check_request(static: StaticFiles, public: Path, path: bytes, method: str = "GET") -> int:
    """Serve ``path``; assert nothing outside the folder (or hidden, unless allowed) was opened
    or sent."""
    root = os.path.realpath(public)
    stream = FakeStream(path, method)
    mount = static.match(path)
    assert mount is not None
    before = open_fds()
    with recording_opens() as opened:
        status = drive(static.serve(stream, mount))
    assert open_fds() == before, "a descriptor was left open"
    assert stream.finished
    for name in opened:
        assert name == root or name.startswith(root + "/"), f"{path!r} opened {name}"
        relative = name[len(root) + 1 :]
        assert static.options.hidden or not any(
            part.startswith(".") for part in relative.split("/") if part
        ), f"{path!r} opened the hidden {name}"
    if stream.sent_from is not None:
        assert stream.sent_from.startswith(root + "/")
    if not static.options.hidden:
        assert SECRET not in stream.body
    return status


# ---------------------------------------------------------------------- known payloads

TRAVERSALS = [
    # dot-dot, plain and encoded in every way
    b"../secret.txt",
    b"../outside/secret.txt",
    b"..%2fsecret.txt",
    b"..%2Fsecret.txt",
    b"%2e%2e/secret.txt",
    b"%2E%2E/secret.txt",
    b"%2e%2e%2fsecret.txt",
    b".%2e/secret.txt",
    b"%2e./secret.txt",
    b"docs/../../secret.txt",
    b"docs/%2e%2e/%2e%2e/secret.txt",
    b"sub/deep/../../../secret.txt",
    b"hello.txt/..",
    b"..",
    b".",
    b"%2e",
    b"%2e%2e",
    b"./hello.txt",
    b"....//secret.txt",
    b".../secret.txt",
    b"..;/secret.txt",  # Tomcat-style path parameter
    b"%20../secret.txt",
    b"..%20/secret.txt",
    b"..%09/secret.txt",
    # backslashes
    b"..\\secret.txt",
    b"..%5csecret.txt",
    b"..%5Csecret.txt",
    b"%5c..%5csecret.txt",
    b"docs\\..\\..\\secret.txt",
    # double encoding
    b"%252e%252e/secret.txt",
    b"%252e%252e%252fsecret.txt",
    b"..%252fsecret.txt",
    b"%25%32%65%25%32%65/secret.txt",
    # overlong and other non-UTF-8 forms of '.', '/' and '\'
    b"%c0%ae%c0%ae/secret.txt",
    b"%c0%ae%c0%ae%c0%afsecret.txt",
    b"..%c0%afsecret.txt",
    b"..%c1%9csecret.txt",
    b"%e0%80%ae%e0%80%ae/secret.txt",
    b"%f0%80%80%ae%f0%80%80%ae/secret.txt",
    b"%c0%2e%c0%2e/secret.txt",
    b"%ed%a0%80",  # a UTF-16 surrogate
    b"%ff%fe",
    # IIS %u escapes, fullwidth and lookalike dots (names, not dots)
    b"%u002e%u002e/secret.txt",
    b"%ef%bc%8e%ef%bc%8e/secret.txt",
    b"%e2%80%a4%e2%80%a4/secret.txt",
    b"..%e2%81%84secret.txt",
    # NUL
    b"%00../secret.txt",
    b"..%00/secret.txt",
    b"hello.txt%00.png",
    b"hello.txt%00",
    b"hello.txt\x00",
    # absolute paths and empty segments
    b"/etc/passwd",
    b"/../secret.txt",
    b"%2fetc%2fpasswd",
    b"%2Fetc/passwd",
    b"docs//page.html",
    b"file:///etc/passwd",
    # Windows drive letters and UNC
    b"C:\\Windows\\win.ini",
    b"C:/Windows/win.ini",
    b"C:%5cWindows%5cwin.ini",
    b"\\\\server\\share",
    b"%5c%5cserver%5cshare",
    # links that leave the folder, or lead to hidden names
    b"link_out",
    b"link_out_abs",
    b"link_dir_out/secret.txt",
    b"link_dir_out/",
    b"link_dotdot_out",
    b"link_hidden",
    # hidden names, plain and encoded
    b".env",
    b".git/config",
    b".git/",
    b".%65nv",
    b"%2eenv",
    b"docs/.%2e/secret.txt",
    # malformed escapes
    b"%",
    b"%2",
    b"%zz",
    b"hello%",
    # raw bytes a client must percent-encode
    b"caf\xc3\xa9.txt",
    b"hello.txt ",
    b"hello.txt\r\n",
]


HIDDEN_ONLY = {b".env", b".git/config", b".%65nv", b"link_hidden"}  # %2e stays refused


@pytest.mark.parametrize("payload", TRAVERSALS, ids=repr)
@pytest.mark.parametrize("symlinks", ["inside", "deny"])
def test_traversal_payloads_are_404(public: Path, payload: bytes, symlinks: str) -> None:
    static = static_for(public, symlinks=symlinks)
    assert check_request(static, public, b"/static/" + payload) == 404


@pytest.mark.parametrize("payload", TRAVERSALS, ids=repr)
def test_traversal_payloads_with_hidden_names_allowed(public: Path, payload: bytes) -> None:
    # allowing ".env" must not allow ".." or "." (the hidden check is not what stops them)
    static = static_for(public, hidden=True)
    status = check_request(static, public, b"/static/" + payload)
    assert status == (200 if payload in HIDDEN_ONLY else 404)


@pytest.mark.parametrize("payload", TRAVERSALS, ids=repr)
def test_traversal_payloads_at_a_root_mount(public: Path, payload: bytes) -> None:
    static = StaticFiles(static_options(mounts=(("/", str(public)),)))
    assert check_request(static, public, b"/" + payload) == 404


def test_the_corpus_is_not_refused_for_nothing(public: Path) -> None:
    # the harness must be able to see a success: plain names under the folder are served
    static = static_for(public)
    for path in [
        b"/static/hello.txt",
        b"/static/docs/",
        b"/static/link_in",
        b"/static/caf%C3%A9.txt",
    ]:
        assert check_request(static, public, path) == 200


def test_url_segments_accepts_plain_names_only() -> None:
    assert url_segments(b"/a/b.txt", False) == [b"a", b"b.txt"]
    assert url_segments(b"/a/", False) == [b"a", b""]
    assert url_segments(b"/", False) == [b""]
    assert url_segments(b"", False) == []
    assert url_segments(b"/%41%42", False) == [b"AB"]
    assert url_segments(b"/caf%C3%A9", False) == ["caf\u00e9".encode()]
    assert url_segments(b"/.well-known/x", True) == [b".well-known", b"x"]
    assert url_segments(b"/a%25b", False) is None
    assert url_segments(b"a", False) is None
    assert url_segments(b"/" + b"a/" * 64 + b"b", False) is None
    assert url_segments(b"/" + b"a" * 256, False) is None
    assert url_segments(b"/" + b"a" * 255, False) == [b"a" * 255]


# ------------------------------------------------------------------- generated paths

NASTY = [
    "..",
    ".",
    "",
    "%2e",
    "%2E%2e",
    "%2f",
    "%5c",
    "\\",
    "%00",
    "%25",
    "%252e",
    "%c0%ae",
    "%c0%af",
    "%e0%80%ae",
    "secret.txt",
    "outside",
    "link_out",
    "link_dir_out",
    "link_dotdot_out",
    "link_hidden",
    "link_in",
    "link_dir_in",
    "link_self",
    "hello.txt",
    "docs",
    "sub",
    "deep",
    ".env",
    ".git",
    "config",
    "C:",
    "~",
    "%",
    "fifo",
    "loop",
    "index.html",
]


def _encode(text: str, data: st.DataObject) -> bytes:
    """``text`` as URL bytes, each character either raw or percent-encoded (once or twice)."""
    out = bytearray()
    for char in text:
        raw = char.encode("utf-8")
        how = data.draw(st.sampled_from(["raw", "raw", "raw", "once", "twice"]))
        if how == "raw":
            out += raw
        elif how == "once":
            out += b"".join(b"%%%02X" % b for b in raw)
        else:
            out += b"".join(b"%%25%02X" % b for b in raw)
    return bytes(out)


segment = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=8),
    st.text(alphabet="./\\%2eEfFcC05", max_size=8),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(segment, min_size=1, max_size=6),
    st.data(),
    st.sampled_from(["inside", "deny"]),
    st.booleans(),
)
def test_generated_paths_never_leave_the_folder(
    public: Path, segments: list[str], data: st.DataObject, symlinks: str, hidden: bool
) -> None:
    path = b"/static/" + b"/".join(_encode(s, data) for s in segments)
    method = data.draw(st.sampled_from(["GET", "GET", "HEAD"]))
    static = static_for(public, symlinks=symlinks, hidden=hidden)
    status = check_request(static, public, path, method)
    assert status in (200, 301, 404)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=60))
def test_arbitrary_bytes_never_leave_the_folder(public: Path, raw: bytes) -> None:
    status = check_request(static_for(public), public, b"/static/" + raw)
    assert status in (200, 301, 404)


# -------------------------------------------------------------------------- descriptors


def test_no_descriptor_is_left_open_on_any_path(public: Path) -> None:
    static = static_for(public)
    requests: list[FakeStream] = []
    for _ in range(50):
        requests += [
            FakeStream(b"/static/hello.txt"),
            FakeStream(b"/static/app.js", headers=[(b"accept-encoding", b"br")]),
            FakeStream(b"/static/app.js", headers=[(b"range", b"bytes=0-3")]),
            FakeStream(b"/static/hello.txt", headers=[(b"range", b"bytes=99-")]),
            FakeStream(b"/static/hello.txt", headers=[(b"if-none-match", b"*")]),
            FakeStream(b"/static/hello.txt", headers=[(b"if-match", b'"x"')]),
            FakeStream(b"/static/hello.txt", "HEAD"),
            FakeStream(b"/static/hello.txt", "POST"),
            FakeStream(b"/static/docs"),
            FakeStream(b"/static/docs/"),
            FakeStream(b"/static/link_in"),
            FakeStream(b"/static/link_out"),
            FakeStream(b"/static/missing/deeper"),
            FakeStream(b"/static/fifo"),
            FakeStream(b"/static/../secret.txt"),
            FakeStream(b"/static/hello.txt", disconnect_in="send_file"),
            FakeStream(
                b"/static/app.js",
                headers=[(b"accept-encoding", b"gzip")],
                disconnect_in="send_file",
            ),
            FakeStream(b"/static/hello.txt", disconnect_in="start"),
            FakeStream(b"/static/missing", disconnect_in="start"),
        ]
    before = open_fds()
    for stream in requests:
        mount = static.match(stream.request.raw_path)
        assert mount is not None
        drive(static.serve(stream, mount))
        assert stream.finished
    assert open_fds() == before


def test_descriptors_are_closed_when_the_task_is_cancelled(public: Path) -> None:
    """A client that goes away mid-send cancels the serving task: the file is closed too."""
    static = static_for(public)

    class Hanging(FakeStream):
        reached: asyncio.Event

        async def send_file(self, fd: int, offset: int, count: int) -> None:
            self.reached.set()
            await asyncio.Event().wait()  # a slow client: never done

    async def main() -> None:
        stream = Hanging(b"/static/hello.txt")
        stream.reached = asyncio.Event()
        mount = static.match(stream.request.raw_path)
        assert mount is not None
        task = asyncio.ensure_future(static.serve(stream, mount))
        await stream.reached.wait()
        assert len(open_fds()) > len(before)  # the file is open while it is being sent
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stream.finished

    before = open_fds()
    asyncio.run(main())
    assert open_fds() == before
