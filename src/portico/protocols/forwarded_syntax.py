"""The syntax of proxy header values, for :mod:`portico.protocols.forwarded`.

Split from it so that module keeps the trust rule and this one the grammar: X-Forwarded-* values,
RFC 7239 nodes, and a reader of ``Forwarded`` elements that goes from the right. Every check
returns ``None`` (and adds a note in our words) rather than raising: a malformed proxy header is
ignored, never an error response. Compiled with ``forwarded``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import unquote

__all__ = [
    "BadElement",
    "IPAddress",
    "ReversedElements",
    "Unknown",
    "check_host",
    "check_port",
    "check_prefix",
    "check_scheme",
    "forwarded_node",
    "ip_address",
    "last_element",
    "xff_node",
]

_CACHE_LIMIT: Final = 4096
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_address(text: str) -> IPAddress | None:
    """The address ``text`` spells, or None. A zone (``fe80::1%eth0``) is not an address here."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


_SCHEMES: Final[dict[bytes, str]] = {
    b"http": "http",
    b"https": "https",
    b"ws": "http",
    b"wss": "https",
}
# RFC 9110 §7.2 Host = uri-host [ ":" port ]; uri-host an IP-literal or a reg-name (RFC 3986
# §3.2.2) without percent-encoding (no proxy sends one, and it would need decoding rules)
_host_text = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9\-._~!$&'()*+;=]{1,255})(?::(0|[1-9][0-9]{0,4}))?"
).fullmatch
_port_text = re.compile(rb"[1-9][0-9]{0,4}").fullmatch
# RFC 3986 §3.3 path segments (pchar), percent-encoding checked by decoding
_prefix_text = re.compile(rb"(?:/[A-Za-z0-9\-._~!$&'()*+;=:@%]+)*/?").fullmatch
_control = re.compile(r"[\x00-\x1f\x7f\\]").search
_bad_percent = re.compile(rb"%(?![0-9A-Fa-f]{2})").search


def last_element(value: bytes) -> bytes:
    """The rightmost non-empty element of a comma-separated value (the nearest proxy's)."""
    if value.find(b",") < 0:  # the usual case: one value
        return value.strip(b" \t")
    for part in reversed(value.split(b",")):
        element = part.strip(b" \t")
        if element:
            return element
    return b""


def check_scheme(value: bytes, notes: list[str], field: str) -> str | None:
    scheme = _SCHEMES.get(value)
    if scheme is None:
        scheme = _SCHEMES.get(value.lower())
    if scheme is None:
        notes.append(f"{field}: not http, https, ws or wss")
    return scheme


def check_host(value: bytes, notes: list[str], field: str) -> str | None:
    match = _host_text(value)
    if match is None or (match.group(1) is not None and int(match.group(1)) > 65535):
        notes.append(f"{field}: not a host[:port]")
        return None
    if value.startswith(b"[") and ip_address(value[1 : value.index(b"]")].decode("ascii")) is None:
        notes.append(f"{field}: not a host[:port]")
        return None
    return value.decode("ascii")


def check_port(value: bytes, notes: list[str]) -> int | None:
    if _port_text(value) is None or int(value) > 65535:
        notes.append("X-Forwarded-Port: not a port from 1 to 65535")
        return None
    return int(value)


def check_prefix(value: bytes, notes: list[str]) -> str | None:
    """A clean path prefix: ``/a/b`` (decoded), ``""`` for ``/``; else None with a note."""
    if not value.startswith(b"/") or _prefix_text(value) is None or _bad_percent(value):
        notes.append("X-Forwarded-Prefix: not an absolute path")
        return None
    try:
        decoded = unquote(value.decode("ascii"), errors="strict")
    except UnicodeDecodeError:
        notes.append("X-Forwarded-Prefix: percent-encoding that is not UTF-8")
        return None
    decoded = decoded.removesuffix("/")
    segments = decoded.split("/")[1:]
    if (
        _control(decoded)
        or decoded.count("/") != value.rstrip(b"/").count(b"/")  # an encoded slash
        or any(segment in ("", ".", "..") for segment in segments)
    ):
        notes.append("X-Forwarded-Prefix: dot segments, empty segments or control characters")
        return None
    return decoded


# ------------------------------------------------------------------------------------- nodes

_v4_port = re.compile(r"([0-9.]{7,15}):(0|[1-9][0-9]{0,4})").fullmatch
_v6_port = re.compile(r"\[([0-9A-Fa-f:.]{2,45})\](?::(0|[1-9][0-9]{0,4}))?").fullmatch
#: X-Forwarded-For hops already parsed (clients repeat themselves; bounded, cleared when full)
_xff_nodes: Final[dict[bytes, tuple[str, int] | None]] = {}


def _address_port(text: str, bare_v6: bool) -> tuple[str, int] | None:
    """``v4``, ``v4:port``, ``[v6]``, ``[v6]:port`` (and a bare ``v6`` if allowed), normalised."""
    port = 0
    if text.startswith("["):
        match = _v6_port(text)
        if match is None:
            return None
        address = ip_address(match.group(1))
        if not isinstance(address, ipaddress.IPv6Address):
            return None
        if match.group(2) is not None:
            port = int(match.group(2))
    else:
        match = _v4_port(text)
        if match is not None:
            text = match.group(1)
            port = int(match.group(2))
        address = ip_address(text)
        if address is None or (address.version == 6 and (match is not None or not bare_v6)):
            return None
    if port > 65535:
        return None
    return (str(address), port)


def xff_node(raw: bytes) -> tuple[str, int] | None:
    """An X-Forwarded-For hop: an IP address, optionally ``v4:port`` or ``[v6]:port`` (as some
    proxies, e.g. Azure Application Gateway, write it); normalised, or None."""
    node = _xff_nodes.get(raw)
    if node is None and raw not in _xff_nodes:
        node = _address_port(raw.decode("latin-1"), True)
        if len(_xff_nodes) >= _CACHE_LIMIT:
            _xff_nodes.clear()
        _xff_nodes[raw] = node
    return node


class Unknown:
    """RFC 7239 §6.2/6.3: ``for=unknown`` or an obfuscated identifier: not an address."""

    __slots__ = ()


_UNKNOWN: Final = Unknown()
# RFC 7239 §6.3: obfnode / obfport = "_" 1*( ALPHA / DIGIT / "." / "_" / "-" )
_obfuscated = re.compile(r"_[A-Za-z0-9._-]+").fullmatch
_node_port = re.compile(r"0|[1-9][0-9]{0,4}").fullmatch


def forwarded_node(text: str) -> tuple[str, int] | Unknown | None:
    """An RFC 7239 §6 node: ``nodename [ ":" node-port ]``, nodename an IPv4 address, a bracketed
    IPv6 address, ``unknown`` or an obfuscated identifier; an obfuscated port counts as 0."""
    if text.startswith("["):
        name, bracket, rest = text.partition("]")
        if not bracket:
            return None
        name += bracket
    else:
        name, colon, rest = text.partition(":")
        rest = colon + rest
    port_text = rest[1:] if rest.startswith(":") else None
    if rest and (port_text is None or not _port_ok(port_text)):
        return None
    if name.lower() == "unknown" or _obfuscated(name):
        return _UNKNOWN
    node = _address_port(name, False)
    if node is None:
        return None
    if port_text is None or port_text.startswith("_"):
        return node
    return (node[0], int(port_text))


def _port_ok(text: str) -> bool:
    if _obfuscated(text):
        return True
    return _node_port(text) is not None and int(text) <= 65535


# ------------------------------------------------------------ Forwarded, from the right

# RFC 9110 §5.6.2 tchar
_TCHAR: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
# RFC 9110 §5.6.4 quoted-string content: qdtext and quoted-pair
_quoted_content = re.compile(r"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*")
_unescape = re.compile(r"\\(.)", re.DOTALL)


class BadElement(Exception):
    """A ``Forwarded`` element that does not parse."""


class ReversedElements:
    """The elements of one ``Forwarded`` field value, read from the last one backwards.

    RFC 7239 §4: ``Forwarded = 1#forwarded-element``, ``forwarded-element = [ forwarded-pair ]
    *( ";" [ forwarded-pair ] )``, ``forwarded-pair = token "=" value``, value a token or a
    quoted-string. Reading from the right means that whatever a client wrote ahead of its proxy's
    element (an unbalanced quote, garbage) is never read unless the walk gets that far: a forward
    parser would let a client's unterminated quote swallow the proxy's own element.
    OWS is accepted around ``;`` as well as around ``,`` (senders do write ``for=a; proto=b``).
    """

    __slots__ = ("_pos", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = len(text)

    def next(self) -> dict[str, str] | None:
        """The next non-empty element leftwards, or None at the start of the value.

        Raises :class:`BadElement` for one that does not parse (and then stops).
        """
        text = self._text
        pos = self._pos
        element: dict[str, str] = {}
        while pos > 0:
            pos = _skip_ows_left(text, pos)
            if pos == 0:
                break
            char = text[pos - 1]
            if char == ",":
                pos -= 1
                if element:
                    break
                continue  # an empty list element (RFC 9110 §5.6.1)
            if char == ";":
                pos -= 1
                continue  # between pairs, or an empty pair
            pair = _pair_left(text, pos)
            # RFC 7239 §4: each parameter MUST NOT occur more than once per element
            if pair is None or pair[0] in element:
                self._pos = 0
                raise BadElement
            name, value, pos = pair
            element[name] = value
            before = _skip_ows_left(text, pos)
            if before and text[before - 1] not in ",;":
                self._pos = 0
                raise BadElement
        self._pos = pos
        return element or None


def _skip_ows_left(text: str, pos: int) -> int:
    while pos and text[pos - 1] in " \t":
        pos -= 1
    return pos


def _pair_left(text: str, end: int) -> tuple[str, str, int] | None:
    """The ``token=value`` that ends at ``end``: (lower-cased name, value, its start)."""
    if text[end - 1] == '"':
        # the opening quote is the nearest '"' to the left preceded by an even number of
        # backslashes (an odd number escapes it); the closing one must not be escaped either
        if _escaped(text, end - 1):
            return None
        start = end - 2
        while True:
            start = text.rfind('"', 0, start + 1)
            if start < 0:
                return None
            if not _escaped(text, start):
                break
            start -= 1
        content = text[start + 1 : end - 1]
        if _quoted_content.fullmatch(content) is None:
            return None
        value = _unescape.sub(r"\1", content)
    else:
        start = end
        while start and text[start - 1] in _TCHAR:
            start -= 1
        if start == end:
            return None
        value = text[start:end]
    if start == 0 or text[start - 1] != "=":
        return None
    name_end = start - 1
    name_start = name_end
    while name_start and text[name_start - 1] in _TCHAR:
        name_start -= 1
    if name_start == name_end:
        return None
    return text[name_start:name_end].lower(), value, name_start


def _escaped(text: str, index: int) -> bool:
    count = 0
    while index - count > 0 and text[index - count - 1] == "\\":
        count += 1
    return count % 2 == 1
