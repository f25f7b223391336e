"""Request-line checks for HTTP/1.1: the method name, the request-target form, the Host value.

Split from ``http11`` so that module stays about the connection's state machine; compiled with it.
"""

from __future__ import annotations

import re
from typing import Final

from portico.errors import BadRequest, NotImplementedByServer

__all__ = ["method_cache", "method_name", "other_target_form", "parser_detail", "valid_host"]

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


def other_target_form(url: bytes, method: str) -> tuple[bytes, bytes, str | None]:
    """Split a request-target that is not origin-form (RFC 9112 §3.2.2-3.2.4)."""
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
    return path, query, scheme


def parser_detail(exc: Exception) -> str:
    """llhttp's reason, which is its own constant text (it never quotes the input)."""
    text = str(exc) or "malformed request"
    return "".join(ch for ch in text if " " <= ch <= "~")[:120]
