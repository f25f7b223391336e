"""Request-line and field checks for HTTP/1.1: the method name, the request-target form, the Host
value, what to do with a field name, Transfer-Encoding.

Split from ``http11`` so that module stays about the connection's state machine; compiled with it.
"""

from __future__ import annotations

import re
from typing import Final

from portico.errors import BadRequest, NotImplementedByServer

__all__ = [
    "DROP",
    "PROXY_FIELD",
    "WATCH",
    "check_transfer_encoding",
    "field_kind",
    "method_cache",
    "method_name",
    "name_kinds",
    "origin_form",
    "other_target_form",
    "parser_detail",
    "valid_host",
]

# RFC 9112 §3.2 / RFC 3986 §3.2.2: uri-host [ ":" port ] — an IP literal or a reg-name.
valid_host = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?"
).fullmatch
_absolute_form = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)", re.DOTALL).fullmatch

method_cache: Final[dict[bytes, str]] = {}


def method_name(raw: bytes) -> str:
    method = raw.decode("ascii")
    if len(method_cache) < 64:  # llhttp only accepts its known methods, but stay bounded anyway
        method_cache[raw] = method
    return method


# origin-form targets seen lately -> (path, query): clients ask for the same few over and over.
# Bounded, and never long ones (cleared when full).
_targets: Final[dict[bytes, tuple[bytes, bytes]]] = {}
_TARGET_CACHE_LIMIT: Final = 4096
_TARGET_CACHE_LONGEST: Final = 256


def origin_form(url: bytes) -> tuple[bytes, bytes]:
    """The path and the query of an origin-form request-target (RFC 9112 §3.2.1). A fragment
    is never sent on the wire; one a client sends anyway is dropped."""
    split = _targets.get(url)
    if split is not None:
        return split
    # find(), not ``in``: CPython's bytes.__contains__ first tries the operand as an integer
    # and builds (then drops) a TypeError message, about 0.5 us per test
    query_at = url.find(b"?")
    if query_at < 0:
        path, query = url, b""
    else:
        path, query = url[:query_at], url[query_at + 1 :]
    if url.find(b"#") >= 0:
        path, query = _without_fragment(path, query)
    split = (path, query)
    if len(url) <= _TARGET_CACHE_LONGEST:
        if len(_targets) >= _TARGET_CACHE_LIMIT:
            _targets.clear()
        _targets[url] = split
    return split


def _without_fragment(path: bytes, query: bytes) -> tuple[bytes, bytes]:
    """A fragment is never sent on the wire (RFC 9110 §7.1: the target has none); a client
    that sends one anyway gets it dropped, whichever part it starts in."""
    return path.partition(b"#")[0], query.partition(b"#")[0]


def other_target_form(url: bytes, method: str) -> tuple[bytes, bytes, str | None]:
    """Split a request-target that is not origin-form (RFC 9112 §3.2.2-3.2.4); a fragment is
    dropped, as in ``origin_form``."""
    if url == b"*":
        if method != "OPTIONS":
            raise BadRequest("asterisk-form is only allowed with OPTIONS")
        return url, b"", None
    match = _absolute_form(url) if method != "CONNECT" else None
    if match is None:
        if method == "CONNECT":
            raise NotImplementedByServer("CONNECT is not supported")
        raise BadRequest("request-target does not fit the method")
    scheme = match.group(1).decode("ascii").lower()
    if scheme not in ("http", "https"):
        raise BadRequest("unsupported scheme in request-target")
    rest = match.group(3) or b"/"
    if rest[:1] != b"/":
        rest = b"/" + rest
    path, _, query = rest.partition(b"?")
    if url.find(b"#") >= 0:  # find(): see origin_form
        path, query = _without_fragment(path, query)
    return path, query, scheme


def parser_detail(exc: Exception) -> str:
    """llhttp's reason, which is its own constant text (it never quotes the input)."""
    text = str(exc) or "malformed request"
    return "".join(ch for ch in text if " " <= ch <= "~")[:120]


# What to do with a field name: WATCH it on arrival (framing, Host, Expect, Upgrade, singletons),
# DROP it (an underscore), note a PROXY_FIELD (origin resolution has work), or 0: keep it. The
# map goes from a name as the client spelled it to its lower-case form and its kind, and holds the
# spellings seen so far (bounded, and never long ones: a client cannot fill it with junk). So a
# field costs one dict look-up: no lower() call, no new bytes to hash, and every later look-up
# of the shared lower-case name (the environ's keys, the proxy fields) finds its hash cached.
WATCH: Final = 1
DROP: Final = 2
PROXY_FIELD: Final = 3
_PROXY_FIELDS: Final = (
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
)
_NAME_CACHE_LIMIT: Final = 4096
_NAME_CACHE_LONGEST: Final = 64


def name_kinds(watched: tuple[bytes, ...]) -> dict[bytes, tuple[bytes, int]]:
    kinds = {name: (name, PROXY_FIELD) for name in _PROXY_FIELDS}
    kinds.update({name: (name, WATCH) for name in watched})
    return kinds


def field_kind(kinds: dict[bytes, tuple[bytes, int]], raw_name: bytes) -> tuple[bytes, int]:
    """The lower-case form of a field name not in ``kinds`` yet, and what to do with it;
    remembers both (the lower-case spelling too, so that its entry is shared)."""
    name = raw_name.lower()
    entry = kinds.get(name)
    if entry is None:
        entry = (name, DROP if name.find(b"_") >= 0 else 0)
        if len(name) <= _NAME_CACHE_LONGEST and len(kinds) < _NAME_CACHE_LIMIT:
            kinds[name] = entry
    if len(raw_name) <= _NAME_CACHE_LONGEST and len(kinds) < _NAME_CACHE_LIMIT:
        kinds[raw_name] = entry
    return entry


def check_transfer_encoding(value: bytes, chunked_already: bool) -> None:
    """Refuse a request Transfer-Encoding other than one ``chunked``, last (RFC 9112 §6.1)."""
    if value.find(b"\t") >= 0:
        # llhttp refuses a tab in Transfer-Encoding only after the head was reported; refuse it
        # here so no request with unclear framing reaches the app.
        raise BadRequest("malformed Transfer-Encoding")
    codings = [c.strip(b" ").lower() for c in value.split(b",")]
    if chunked_already or b"" in codings or codings.count(b"chunked") > 1:
        raise BadRequest("malformed Transfer-Encoding")
    if codings[-1] != b"chunked":
        if any(c not in (b"gzip", b"deflate", b"compress", b"x-gzip") for c in codings):
            raise NotImplementedByServer("unsupported transfer coding")
        raise BadRequest("request Transfer-Encoding must end with chunked")
    if len(codings) > 1:
        raise NotImplementedByServer("unsupported transfer coding")
