"""The static file gateway (portico.gateways.static) against a Stream in memory."""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from pathlib import Path

import pytest

from portico.config import Config
from portico.gateways.static import (
    StaticFiles,
    StaticMount,
    parse_mount,
)
from portico.protocols.conditional import format_http_date
from tests.static_helpers import (
    HELLO,
    SECRET,
    FakeStream,
    drive,
    get,
    make_tree,
    serve,
    static_for,
    static_options,
)


@pytest.fixture
def public(tmp_path: Path) -> Path:
    return make_tree(tmp_path)


@pytest.fixture
def static(public: Path) -> StaticFiles:
    return static_for(public)


# ------------------------------------------------------------------------------ basics


def test_get_a_file(static: StaticFiles, public: Path) -> None:
    stream = get(static, b"/static/hello.txt")
    assert stream.status == 200
    assert stream.body == HELLO
    assert stream.file_calls == 1  # sent from the descriptor, never read here
    assert stream.header(b"content-type") == b"text/plain; charset=utf-8"
    assert stream.header(b"content-length") == b"%d" % len(HELLO)
    assert stream.header(b"accept-ranges") == b"bytes"
    assert stream.header(b"cache-control") == b"no-cache"
    info = (public / "hello.txt").stat()
    assert stream.header(b"last-modified") == format_http_date(info.st_mtime)
    etag = stream.header(b"etag")
    assert etag is not None and etag.startswith(b'"') and etag.endswith(b'"')
    assert b"%x" % info.st_ino in etag  # a strong tag from inode, size and mtime
    assert stream.header(b"vary") is None  # no sibling for this file
    assert stream.header(b"content-encoding") is None


def test_head_has_the_same_head_and_no_body(static: StaticFiles) -> None:
    got = get(static, b"/static/hello.txt")
    head = serve(static, FakeStream(b"/static/hello.txt", "HEAD"))
    assert head.status == 200
    assert head.headers == got.headers
    assert head.body == b"" and head.file_calls == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"])
@pytest.mark.parametrize("path", [b"/static/hello.txt", b"/static/missing", b"/static/.env"])
def test_other_methods_are_405_with_allow(static: StaticFiles, method: str, path: bytes) -> None:
    stream = serve(static, FakeStream(path, method))
    assert stream.status == 405
    assert stream.header(b"allow") == b"GET, HEAD"


def test_missing_is_404(static: StaticFiles) -> None:
    for path in [b"/static/nope", b"/static/sub/nope.txt", b"/static/hello.txt/x"]:
        stream = get(static, path)
        assert stream.status == 404, path
        assert stream.body == b"Not Found\n"
        assert stream.header(b"content-type") == b"text/plain; charset=utf-8"


def test_head_of_a_missing_file_has_no_body(static: StaticFiles) -> None:
    stream = serve(static, FakeStream(b"/static/nope", "HEAD"))
    assert stream.status == 404 and stream.body == b""
    assert stream.header(b"content-length") == b"10"


def test_awaitable_start_is_awaited(static: StaticFiles) -> None:
    stream = get(static, b"/static/hello.txt", awaitable=True)
    assert stream.status == 200 and stream.body == HELLO
    assert get(static, b"/static/nope", awaitable=True).status == 404


def test_empty_file(static: StaticFiles) -> None:
    stream = get(static, b"/static/empty.txt")
    assert stream.status == 200 and stream.body == b"" and stream.file_calls == 0
    assert stream.header(b"content-length") == b"0"


def test_percent_encoded_names(static: StaticFiles) -> None:
    assert get(static, b"/static/a%20b.txt").body == b"spaced\n"
    assert get(static, b"/static/caf%C3%A9.txt").body == b"accent\n"
    assert get(static, b"/static/caf%c3%a9.txt").body == b"accent\n"
    assert get(static, b"/static/%68ello.txt").body == HELLO  # an encoded letter is a letter


def test_fifo_and_other_non_regular_files_are_404_without_blocking(static: StaticFiles) -> None:
    assert get(static, b"/static/fifo").status == 404  # O_NONBLOCK: no writer needed


# ------------------------------------------------------------------------- directories


def test_index_for_directories(static: StaticFiles) -> None:
    assert get(static, b"/static/").body == b"<h1>home</h1>\n"
    root = get(static, b"/static/")
    assert root.header(b"content-type") == b"text/html; charset=utf-8"
    assert get(static, b"/static/docs/").body == b"<h1>docs</h1>\n"


def test_directory_without_slash_redirects_relatively(static: StaticFiles) -> None:
    stream = get(static, b"/static/docs")
    assert stream.status == 301
    assert stream.header(b"location") == b"./docs/"
    stream = get(static, b"/static")
    assert (stream.status, stream.header(b"location")) == (301, b"./static/")
    stream = serve(static, FakeStream(b"/static/docs", query=b"a=1&b"))
    assert stream.header(b"location") == b"./docs/?a=1&b"


def test_no_listing_and_no_redirect_without_an_index(static: StaticFiles, public: Path) -> None:
    assert get(static, b"/static/noindex/").status == 404
    assert get(static, b"/static/noindex").status == 404
    no_index = static_for(public, index="")
    assert get(no_index, b"/static/").status == 404
    assert get(no_index, b"/static/docs").status == 404
    assert get(no_index, b"/static/docs/page.html").status == 200


def test_a_file_with_a_trailing_slash_is_404(static: StaticFiles) -> None:
    assert get(static, b"/static/hello.txt/").status == 404


# ------------------------------------------------------------------------------- hidden


@pytest.mark.parametrize(
    "path",
    [
        b"/static/.env",
        b"/static/.git/config",
        b"/static/.git/",
        b"/static/.well-known/security.txt",
    ],
)
def test_hidden_names_are_404(static: StaticFiles, path: bytes) -> None:
    assert get(static, path).status == 404


def test_hidden_names_when_allowed(public: Path) -> None:
    static = static_for(public, hidden=True)
    assert get(static, b"/static/.well-known/security.txt").body == b"Contact: x\n"
    assert get(static, b"/static/.env").body == SECRET  # the setting means it
    assert get(static, b"/static/..").status == 404  # but dot segments never are names


def test_a_dot_inside_a_name_is_not_hidden(static: StaticFiles) -> None:
    assert get(static, b"/static/dotdir.x/inner.txt").status == 200


# ----------------------------------------------------------------------------- symlinks


@pytest.mark.parametrize(
    ("path", "inside", "deny", "follow"),
    [
        (b"/static/link_in", HELLO, None, HELLO),
        (b"/static/link_dir_in/page.html", b"<p>page</p>\n", None, b"<p>page</p>\n"),
        (b"/static/link_dir_in/", b"<h1>docs</h1>\n", None, b"<h1>docs</h1>\n"),
        (b"/static/link_dotdot_in", HELLO, None, HELLO),
        (b"/static/link_out", None, None, SECRET),
        (b"/static/link_out_abs", None, None, SECRET),
        (b"/static/link_dir_out/secret.txt", None, None, SECRET),
        (b"/static/link_dotdot_out", None, None, SECRET),
        (b"/static/link_hidden", None, None, SECRET),
        (b"/static/link_self/hello.txt", HELLO, None, HELLO),
        (b"/static/loop", None, None, None),
        (b"/static/dangling", None, None, None),
    ],
)
def test_symlinks(
    public: Path,
    path: bytes,
    inside: bytes | None,
    deny: bytes | None,
    follow: bytes | None,
) -> None:
    for mode, expected in [("inside", inside), ("deny", deny), ("follow", follow)]:
        stream = get(static_for(public, symlinks=mode), path)
        if expected is None:
            assert stream.status == 404, (mode, path)
        else:
            assert (stream.status, stream.body) == (200, expected), (mode, path)


def test_a_link_to_a_directory_without_slash_redirects(public: Path) -> None:
    assert get(static_for(public), b"/static/link_dir_in").status == 301
    assert get(static_for(public, symlinks="deny"), b"/static/link_dir_in").status == 404


def test_the_folder_itself_may_be_a_link(public: Path, tmp_path: Path) -> None:
    # a deploy's "current -> release" link: the operator's, followed, and re-read per request
    os.symlink(public, tmp_path / "current")
    static = StaticFiles(static_options(mounts=(("/static", str(tmp_path / "current")),)))
    assert get(static, b"/static/hello.txt").body == HELLO
    assert get(static, b"/static/link_in").body == HELLO  # inside is judged by the real path
    assert get(static, b"/static/link_out").status == 404
    release2 = tmp_path / "release2"
    release2.mkdir()
    (release2 / "hello.txt").write_bytes(b"new release\n")
    os.unlink(tmp_path / "current")
    os.symlink(release2, tmp_path / "current")
    assert get(static, b"/static/hello.txt").body == b"new release\n"


def test_a_missing_folder_is_404_and_check_says_so(tmp_path: Path) -> None:
    static = StaticFiles(static_options(mounts=(("/static", str(tmp_path / "nope")),)))
    assert get(static, b"/static/x").status == 404
    with pytest.raises(ValueError, match="not a directory"):
        static.check()
    static_for(tmp_path).check()


# -------------------------------------------------------------------------- conditional


def etag_of(static: StaticFiles, path: bytes = b"/static/hello.txt") -> bytes:
    etag = get(static, path).header(b"etag")
    assert etag is not None
    return etag


def test_if_none_match_gives_304_with_the_right_headers(static: StaticFiles) -> None:
    etag = etag_of(static)
    for value in [etag, b"W/" + etag, b'"x", ' + etag, b"*"]:
        stream = get(static, b"/static/hello.txt", (b"if-none-match", value))
        assert stream.status == 304, value
        assert stream.body == b"" and stream.file_calls == 0
        assert stream.header(b"etag") == etag
        assert stream.header(b"cache-control") == b"no-cache"
        assert b"content-length" not in stream.names
        assert b"content-type" not in stream.names
    assert get(static, b"/static/hello.txt", (b"if-none-match", b'"other"')).status == 200


def test_if_none_match_on_head(static: StaticFiles) -> None:
    stream = serve(
        static, FakeStream(b"/static/hello.txt", "HEAD", [(b"if-none-match", etag_of(static))])
    )
    assert stream.status == 304


def test_if_modified_since(static: StaticFiles, public: Path) -> None:
    mtime = int((public / "hello.txt").stat().st_mtime)
    at, before = format_http_date(mtime), format_http_date(mtime - 10)
    assert get(static, b"/static/hello.txt", (b"if-modified-since", at)).status == 304
    assert get(static, b"/static/hello.txt", (b"if-modified-since", before)).status == 200
    assert get(static, b"/static/hello.txt", (b"if-modified-since", b"garbage")).status == 200
    # If-None-Match, when present, decides instead (§13.1.3)
    both = [(b"if-modified-since", at), (b"if-none-match", b'"other"')]
    assert get(static, b"/static/hello.txt", *both).status == 200


def test_if_match_and_if_unmodified_since(static: StaticFiles, public: Path) -> None:
    etag = etag_of(static)
    assert get(static, b"/static/hello.txt", (b"if-match", etag)).status == 200
    assert get(static, b"/static/hello.txt", (b"if-match", b"*")).status == 200
    stream = get(static, b"/static/hello.txt", (b"if-match", b'"other"'))
    assert stream.status == 412 and stream.body == b"Precondition Failed\n"
    assert get(static, b"/static/hello.txt", (b"if-match", b"W/" + etag)).status == 412
    mtime = int((public / "hello.txt").stat().st_mtime)
    before = format_http_date(mtime - 10)
    assert get(static, b"/static/hello.txt", (b"if-unmodified-since", before)).status == 412
    after = format_http_date(mtime + 10)
    assert get(static, b"/static/hello.txt", (b"if-unmodified-since", after)).status == 200
    # step 1 before step 3: a failed If-Match is 412 even when If-None-Match would be 304
    both = [(b"if-match", b'"other"'), (b"if-none-match", etag)]
    assert get(static, b"/static/hello.txt", *both).status == 412


def test_repeated_condition_fields_are_one_list(static: StaticFiles) -> None:
    etag = etag_of(static)
    stream = get(static, b"/static/hello.txt", (b"if-none-match", b'"a"'), (b"if-none-match", etag))
    assert stream.status == 304


def test_conditions_on_missing_files_are_404(static: StaticFiles) -> None:
    assert get(static, b"/static/nope", (b"if-match", b"*")).status == 404


def test_etag_changes_when_the_file_does(static: StaticFiles, public: Path) -> None:
    before = etag_of(static)
    path = public / "hello.txt"
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1))  # one nanosecond later
    assert etag_of(static) != before
    replacement = public / "hello.new"
    replacement.write_bytes(HELLO)
    os.utime(replacement, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    os.replace(replacement, path)  # same size and mtime, another file: another tag
    assert etag_of(static) != before


def test_last_modified_is_never_in_the_future(static: StaticFiles, public: Path) -> None:
    future = time.time() + 86400
    os.utime(public / "hello.txt", (future, future))
    stream = get(static, b"/static/hello.txt")
    last_modified = stream.header(b"last-modified")
    assert last_modified is not None
    assert last_modified != format_http_date(future)
    assert get(static, b"/static/hello.txt").status == 200


# ------------------------------------------------------------------------------- ranges


def test_single_range(static: StaticFiles) -> None:
    stream = get(static, b"/static/hello.txt", (b"range", b"bytes=0-4"))
    assert stream.status == 206
    assert stream.body == b"hello"
    assert stream.header(b"content-range") == b"bytes 0-4/12"
    assert stream.header(b"content-length") == b"5"
    assert get(static, b"/static/hello.txt", (b"range", b"bytes=6-")).body == b"world\n"
    assert get(static, b"/static/hello.txt", (b"range", b"bytes=-3")).body == b"ld\n"


def test_unsatisfiable_range_is_416(static: StaticFiles) -> None:
    stream = get(static, b"/static/hello.txt", (b"range", b"bytes=100-"))
    assert stream.status == 416
    assert stream.header(b"content-range") == b"bytes */12"
    assert stream.header(b"content-type") == b"text/plain; charset=utf-8"
    assert get(static, b"/static/empty.txt", (b"range", b"bytes=0-")).status == 416


@pytest.mark.parametrize(
    "value", [b"bytes=0-1,4-5", b"bytes=5-1", b"items=0-1", b"bytes=x", b"bytes=0-1" + b",0-1" * 99]
)
def test_ranges_we_ignore_get_the_whole_file(static: StaticFiles, value: bytes) -> None:
    stream = get(static, b"/static/hello.txt", (b"range", value))
    assert (stream.status, stream.body) == (200, HELLO)
    assert b"content-range" not in stream.names


def test_overlapping_ranges_are_merged(static: StaticFiles) -> None:
    stream = get(static, b"/static/hello.txt", (b"range", b"bytes=0-4,2-7"))
    assert (stream.status, stream.body) == (206, b"hello wo")


def test_range_is_for_get_only(static: StaticFiles) -> None:
    stream = serve(static, FakeStream(b"/static/hello.txt", "HEAD", [(b"range", b"bytes=0-4")]))
    assert stream.status == 200 and stream.header(b"content-length") == b"12"


def test_if_range(static: StaticFiles, public: Path) -> None:
    etag = etag_of(static)
    ranged = [(b"range", b"bytes=0-4")]
    assert get(static, b"/static/hello.txt", *ranged, (b"if-range", etag)).status == 206
    assert get(static, b"/static/hello.txt", *ranged, (b"if-range", b'"old"')).status == 200
    assert get(static, b"/static/hello.txt", *ranged, (b"if-range", b"W/" + etag)).status == 200
    old = time.time() - 3600
    os.utime(public / "hello.txt", (old, old))
    date = format_http_date(old)
    assert get(static, b"/static/hello.txt", *ranged, (b"if-range", date)).status == 206
    other = format_http_date(old - 5)
    assert get(static, b"/static/hello.txt", *ranged, (b"if-range", other)).status == 200


def test_preconditions_come_before_the_range(static: StaticFiles) -> None:
    etag = etag_of(static)
    headers = [(b"range", b"bytes=100-"), (b"if-none-match", etag)]
    assert get(static, b"/static/hello.txt", *headers).status == 304


# ----------------------------------------------------------------------- precompressed


def test_precompressed_siblings_by_accept_encoding(static: StaticFiles, public: Path) -> None:
    identity = get(static, b"/static/app.js")
    assert identity.body == (public / "app.js").read_bytes()
    assert identity.header(b"vary") == b"accept-encoding"  # also on the identity response
    assert identity.header(b"content-encoding") is None
    cases = [
        (b"br, gzip", b"br", "app.js.br"),
        (b"gzip", b"gzip", "app.js.gz"),
        (b"zstd, gzip;q=0.5", b"zstd", "app.js.zst"),
        (b"gzip;q=0.5, br;q=0.2", b"gzip", "app.js.gz"),
        (b"*", b"br", "app.js.br"),
    ]
    etags = {identity.header(b"etag")}
    for accept, coding, file in cases:
        stream = get(static, b"/static/app.js", (b"accept-encoding", accept))
        assert stream.status == 200
        assert stream.header(b"content-encoding") == coding, accept
        assert stream.body == (public / file).read_bytes()
        assert stream.header(b"content-length") == b"%d" % len(stream.body)
        assert stream.header(b"content-type") == b"text/javascript; charset=utf-8"
        assert stream.header(b"vary") == b"accept-encoding"
        etag = stream.header(b"etag")
        assert etag is not None and etag.endswith(b"-" + coding + b'"')
        etags.add(etag)
    assert len(etags) == 4  # one tag per representation
    for accept in [b"identity", b"br;q=0, gzip;q=0, zstd;q=0", b"compress", b""]:
        stream = get(static, b"/static/app.js", (b"accept-encoding", accept))
        assert stream.header(b"content-encoding") is None, accept
        assert stream.body == identity.body


def test_precompressed_conditional_and_range(static: StaticFiles, public: Path) -> None:
    br = get(static, b"/static/app.js", (b"accept-encoding", b"br"))
    br_etag = br.header(b"etag")
    assert br_etag is not None
    accept = (b"accept-encoding", b"br")
    stream = get(static, b"/static/app.js", accept, (b"if-none-match", br_etag))
    assert stream.status == 304 and stream.header(b"vary") == b"accept-encoding"
    # the identity's client revalidating the br tag: not the same representation
    assert get(static, b"/static/app.js", (b"if-none-match", br_etag)).status == 200
    stream = get(static, b"/static/app.js", accept, (b"range", b"bytes=0-3"))
    assert (stream.status, stream.body) == (206, b"BRBR")
    assert stream.header(b"content-range") == b"bytes 0-3/40"


def test_stale_and_non_regular_siblings_are_not_used(static: StaticFiles) -> None:
    stream = get(static, b"/static/style.css", (b"accept-encoding", b"gzip"))
    assert stream.header(b"content-encoding") is None
    assert stream.body == b"body{}\n"
    assert stream.header(b"vary") is None
    stream = get(static, b"/static/hello.txt", (b"accept-encoding", b"br"))
    assert stream.header(b"content-encoding") is None and stream.header(b"vary") is None


def test_no_siblings_for_compressed_types_or_when_disabled(
    static: StaticFiles, public: Path
) -> None:
    stream = get(static, b"/static/img.png", (b"accept-encoding", b"gzip"))
    assert stream.header(b"content-encoding") is None and stream.header(b"vary") is None
    off = static_for(public, precompressed=())
    stream = get(off, b"/static/app.js", (b"accept-encoding", b"br"))
    assert stream.header(b"content-encoding") is None and stream.header(b"vary") is None
    only_gzip = static_for(public, precompressed=("gzip",))
    stream = get(only_gzip, b"/static/app.js", (b"accept-encoding", b"br, gzip"))
    assert stream.header(b"content-encoding") == b"gzip"


def test_a_sibling_that_is_a_link_follows_the_setting(static: StaticFiles, public: Path) -> None:
    (public / "app.js.br").unlink()
    os.symlink("../outside/secret.txt", public / "app.js.br")
    stream = get(static, b"/static/app.js", (b"accept-encoding", b"br"))
    assert stream.header(b"content-encoding") is None
    assert SECRET not in stream.body


def test_siblings_are_looked_for_again_after_a_second(public: Path) -> None:
    now = [100.0]
    static = StaticFiles(static_options(mounts=(("/static", str(public)),)), clock=lambda: now[0])
    accept = (b"accept-encoding", b"br")
    assert get(static, b"/static/data.json", accept).header(b"vary") is None
    (public / "data.json.br").write_bytes(b"BROTLI")
    now[0] += 0.5
    assert get(static, b"/static/data.json", accept).header(b"content-encoding") is None
    now[0] += 0.6
    stream = get(static, b"/static/data.json", accept)
    assert stream.header(b"content-encoding") == b"br" and stream.body == b"BROTLI"
    (public / "data.json.br").unlink()  # gone while remembered: the identity, at once
    stream = get(static, b"/static/data.json", accept)
    assert stream.header(b"content-encoding") is None and stream.body == b'{"a": 1}\n'


def test_a_sibling_that_vanishes_falls_back_to_the_identity(
    static: StaticFiles, public: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def open_but_not_br(path: object, flags: int, *args: object, **kw: object) -> int:
        if isinstance(path, bytes) and path.endswith(b".br"):
            raise FileNotFoundError(errno.ENOENT, "gone")
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", open_but_not_br)
    stream = get(static, b"/static/app.js", (b"accept-encoding", b"br"))
    assert stream.status == 200 and stream.header(b"content-encoding") is None
    assert stream.header(b"vary") == b"accept-encoding"


# ------------------------------------------------------------------ types and caching


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        (b"/static/hello.txt", b"text/plain; charset=utf-8"),
        (b"/static/index.html", b"text/html; charset=utf-8"),
        (b"/static/style.css", b"text/css; charset=utf-8"),
        (b"/static/app.js", b"text/javascript; charset=utf-8"),
        (b"/static/data.json", b"application/json"),
        (b"/static/img.png", b"image/png"),
        (b"/static/blob.unknownext", b"application/octet-stream"),
    ],
)
def test_content_types(static: StaticFiles, path: bytes, content_type: bytes) -> None:
    assert get(static, path).header(b"content-type") == content_type


def test_fingerprinted_names_are_immutable(static: StaticFiles, public: Path) -> None:
    stream = get(static, b"/static/app.3f2a9c81.js")
    assert stream.header(b"cache-control") == b"public, max-age=31536000, immutable"
    assert get(static, b"/static/app.js").header(b"cache-control") == b"no-cache"
    custom = static_for(public, cache_control="public, max-age=60", fingerprint="")
    assert get(custom, b"/static/app.3f2a9c81.js").header(b"cache-control") == (
        b"public, max-age=60"
    )
    none = static_for(public, cache_control="")
    assert get(none, b"/static/hello.txt").header(b"cache-control") is None


@pytest.mark.parametrize(
    ("name", "fingerprinted"),
    [
        ("app.3f2a9c81.js", True),
        ("main-0a1b2c3d4e5f.css", True),
        ("logo.0123456789abcdef0123.svg", True),
        ("app.js", False),
        ("jquery.min.js", False),
        ("my.deadbeefcafe.js", False),  # no digit among the hex: words, not a hash
        ("app.3F2A9C81.js", False),
        ("app.3f2a9c.js", True),
        ("app.3f2a9.js", False),  # too short to be a content hash
        ("photo.20240115.jpg", False),  # a date: digits only
        ("v.123456.js", False),
        ("3f2a9c81.js", False),  # no separator before it
        ("app.3f2a9c81.min.js", False),  # the hash must come right before the extension
    ],
)
def test_default_fingerprint_pattern(name: str, fingerprinted: bool) -> None:
    assert bool(re.search(Config().static_fingerprint, name)) is fingerprinted


# ------------------------------------------------------------------------- errors, fds


def test_client_disconnect_in_send_file(static: StaticFiles) -> None:
    stream = FakeStream(b"/static/hello.txt", disconnect_in="send_file")
    mount = static.match(stream.request.raw_path)
    assert mount is not None
    assert drive(static.serve(stream, mount)) == 0
    assert stream.finished and not stream.aborted


def test_unexpected_os_error_is_500_and_logged(
    static: StaticFiles, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_open = os.open

    def too_many(path: object, flags: int, *args: object, **kw: object) -> int:
        if path == b"hello.txt":
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", too_many)
    with caplog.at_level(logging.ERROR, "portico.error"):
        stream = get(static, b"/static/hello.txt")
    assert stream.status == 500
    assert "Error serving a static file" in caplog.text


def test_error_after_the_response_started_aborts(
    static: StaticFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = FakeStream(b"/static/hello.txt")

    async def broken(fd: int, offset: int, count: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(stream, "send_file", broken)
    mount = static.match(stream.request.raw_path)
    assert mount is not None
    assert drive(static.serve(stream, mount)) == 0
    assert stream.aborted and stream.finished


# ------------------------------------------------------------------ mounts and options


def test_match(tmp_path: Path) -> None:
    static = StaticFiles(
        static_options(mounts=(("/static", str(tmp_path)), ("/static/img", str(tmp_path / "i"))))
    )
    assert static.match(b"/static/a.css") == StaticMount(b"/static", str(tmp_path))
    assert static.match(b"/static") == StaticMount(b"/static", str(tmp_path))
    assert static.match(b"/static/img/a.png") == StaticMount(b"/static/img", str(tmp_path / "i"))
    assert static.match(b"/staticfoo") is None
    # the app would route a percent-encoded prefix here: it is the mount's (and a 404)
    assert static.match(b"/st%61tic/hello.txt") == StaticMount(b"/static", str(tmp_path))
    assert static.match(b"/static%2fhello.txt") == StaticMount(b"/static", str(tmp_path))
    assert static.match(b"/st%61ticfoo") is None
    assert static.match(b"/stat") is None
    assert static.match(b"/") is None
    everything = StaticFiles(static_options(mounts=(("/", str(tmp_path)),)))
    assert everything.match(b"/") == StaticMount(b"", str(tmp_path))
    assert everything.match(b"/any/thing") is not None


def test_an_encoded_prefix_is_404_not_the_app(static: StaticFiles) -> None:
    assert get(static, b"/st%61tic/hello.txt").status == 404
    assert get(static, b"/static%2Fhello.txt").status == 404


def test_a_mount_at_the_root(public: Path) -> None:
    static = StaticFiles(static_options(mounts=(("/", str(public)),)))
    assert get(static, b"/hello.txt").body == HELLO
    assert get(static, b"/").body == b"<h1>home</h1>\n"
    assert get(static, b"/docs").header(b"location") == b"./docs/"


def test_relative_folders_are_made_absolute(public: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(public.parent)
    static = StaticFiles(static_options(mounts=(("/s", "public"),)))
    monkeypatch.chdir("/")
    assert get(static, b"/s/hello.txt").body == HELLO


def test_parse_mount() -> None:
    assert parse_mount("/static=./public") == ("/static", "./public")
    assert parse_mount("/static/=/srv/a=b") == ("/static", "/srv/a=b")
    assert parse_mount("/=site") == ("/", "site")
    for bad in ["/static", "/static=", "=dir"]:
        with pytest.raises(ValueError, match=r"PREFIX=DIR|prefix"):
            static_options(mounts=(parse_mount(bad),))


@pytest.mark.parametrize(
    "options",
    [
        {"mounts": (("static", "d"),)},
        {"mounts": (("/static/", "d"),)},
        {"mounts": (("/st atic", "d"),)},
        {"mounts": (("/a/../b", "d"),)},
        {"mounts": (("/a%2e", "d"),)},
        {"mounts": (("/s", ""),)},
        {"mounts": (("/s", "a"), ("/s", "b"))},
        {"index": "../index.html"},
        {"index": ".index"},
        {"symlinks": "sometimes"},
        {"precompressed": ("deflate",)},
        {"cache_control": "no-cache\r\nSet-Cookie: x"},
        {"immutable_cache_control": "max-age=1\x00"},
        {"cache_control": "max-age=\u00e9"},
        {"fingerprint": "("},
    ],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        static_options(**options)
