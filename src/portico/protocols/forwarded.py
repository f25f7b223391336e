"""Origin resolution: the client, scheme, host and prefix that trusted proxies vouch for.

Behind nginx, HAProxy or a cloud load balancer the socket's peer is the proxy; the proxy tells who
its client was in request headers. Anyone can write those headers, so they are believed only as far
as a chain of trusted proxies vouches for them. One rule decides it (the rule of MDN's
``X-Forwarded-For`` security notes and of Werkzeug's ``ProxyFix``):

    Nothing is applied unless the peer itself is trusted. The list of hops is walked **from the
    right**: each entry was written by the proxy to its right, so an entry is believed as long as
    everything to its right is a trusted proxy. The first entry that is not a trusted proxy is the
    client. Entries further left were written by the client and are never looked at. If every hop
    is trusted, the leftmost is the client.

Which headers (the choice is a setting, ``source``; the two families are never mixed):

* ``x-forwarded`` (default): ``X-Forwarded-For`` (the walk; several fields are one list in order,
  RFC 9110 §5.3), and ``X-Forwarded-Proto``, ``-Host``, ``-Port``, ``-Prefix``, of which the
  rightmost value counts (the one the nearest, trusted, proxy wrote; a value the client sent
  ahead of it is to its left). Nearly every proxy sets these; gunicorn, uvicorn and Werkzeug
  read them.
* ``forwarded``: RFC 7239 ``Forwarded``. The walk runs over its elements; ``proto`` and ``host`` are
  taken from the element that names the client (RFC 7239 §5.3-5.4: each element describes the
  request as the proxy that wrote it received it); ``by`` is ignored.

Why never both, and why ``x-forwarded`` by default: a proxy vouches only for the header it writes.
nginx, Caddy, AWS ALB and most others write ``X-Forwarded-*`` and pass a client's ``Forwarded``
through untouched, so preferring ``Forwarded`` when present lets any client choose its address and
host behind them (Rack preferred it by default and deployments had to pin it back; see rack/rack
#1423 and #1834). The reverse holds for a proxy that writes only ``Forwarded``. What the others
do: gunicorn, uvicorn and Werkzeug's ``ProxyFix`` read only ``X-Forwarded-*``; Django reads only
the ``X-Forwarded-*`` fields its settings name, one opt-in each; nginx's ``real_ip`` module reads
the one field ``real_ip_header`` names; hypercorn makes the operator pick a ``mode``. The safe
rule is theirs: the operator names the one family the proxy maintains, the other is ignored, and
the default is the family every common proxy writes.

What a hop that is not an address means (RFC 7239 ``for=unknown``, an obfuscated ``for=_hidden``,
``X-Forwarded-For: unknown`` as Squid writes, or a malformed entry): the trusted proxy that wrote it
does not know or will not tell who its client was. The walk stops there and the client becomes
*unknown*: :attr:`Origin.client_host` is ``""`` (the ASGI ``client`` becomes ``None`` and
``REMOTE_ADDR`` empty, as for a Unix socket peer). It never falls back to the proxy's own address:
an app that allows its proxies' network (e.g. 10.0.0.0/8) must not let an unknown client in. An
element without ``for=`` ends the walk the same way, except that the peer's own element without
``for=`` means the peer does not forward addresses at all, and the client stays the peer.

Malformed values are ignored, never an error response: the field is skipped and a short note in
our words is added to :attr:`Origin.malformed` for the caller to log at debug level.
"""

from __future__ import annotations

import ipaddress
from typing import Final, NamedTuple

from portico.protocols.events import Headers
from portico.protocols.forwarded_syntax import (
    BadElement,
    IPAddress,
    ReversedElements,
    Unknown,
    check_host,
    check_port,
    check_prefix,
    check_scheme,
    forwarded_node,
    ip_address,
    last_element,
    xff_node,
)

__all__ = [
    "FORWARDED",
    "X_FORWARDED",
    "Origin",
    "OriginResolver",
    "TrustedProxies",
]

X_FORWARDED: Final = "x-forwarded"
FORWARDED: Final = "forwarded"

_CACHE_LIMIT: Final = 4096
_new_tuple: Final = tuple.__new__


class TrustedProxies:
    """The peers whose proxy headers are believed: ``--forwarded-allow-ips``.

    ``spec`` is gunicorn's and uvicorn's syntax: comma-separated IPv4/IPv6 addresses and networks
    (``10.0.0.0/8``, ``fd00::/8``), or ``*`` for every peer. Peers on a Unix socket (``host`` is
    ``None``) are trusted unless ``trust_unix`` is false: only local processes that may open the
    socket file reach them, normally the proxy. An IPv4-mapped IPv6 peer (``::ffff:127.0.0.1``, as
    a dual-stack socket reports IPv4 clients) is matched as the IPv4 address it is.

    Raises ``ValueError`` naming the entry that is neither an address nor a network.
    """

    __slots__ = ("_addresses", "_cache", "_everyone", "_networks", "_trust_unix", "spec")

    def __init__(self, spec: str, *, trust_unix: bool = True) -> None:
        self.spec = spec
        self._trust_unix = trust_unix
        self._everyone = False
        self._addresses: set[IPAddress] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._cache: dict[str, bool] = {}
        for raw in spec.split(","):
            entry = raw.strip()
            if not entry:
                continue
            if entry == "*":
                self._everyone = True
            elif "/" in entry:
                try:
                    self._networks.append(ipaddress.ip_network(entry))
                except ValueError:
                    raise ValueError(
                        f"{entry!r} is not a network (address/prefix, host bits zero)"
                    ) from None
            else:
                address = ip_address(entry)
                if address is None:
                    raise ValueError(f"{entry!r} is not an IP address or network")
                self._addresses.add(address)

    def __repr__(self) -> str:
        return f"TrustedProxies({self.spec!r}, trust_unix={self._trust_unix})"

    def trusts(self, host: str | None) -> bool:
        """Whether a peer at ``host`` (``None``: a Unix socket) is a trusted proxy.

        Call it once per connection for the socket's peer; answers are remembered per address.
        """
        if host is None:
            return self._trust_unix
        if self._everyone:
            return True
        known = self._cache.get(host)
        if known is None:
            address = ip_address(host)
            known = address is not None and self._contains(address)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[host] = known
        return known

    def _contains(self, address: IPAddress) -> bool:
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if mapped is not None and self._contains(mapped):
            return True
        if address in self._addresses:
            return True
        return any(address in network for network in self._networks)


class Origin(NamedTuple):
    """What trusted proxies said about one request; ``None`` everywhere means "unchanged".

    Apply it once, to the ASGI scope and to the WSGI environ alike (see :meth:`client`). A
    ``NamedTuple`` like the protocol events, for the same reason: one is made per proxied request
    and a tuple is built by one C call, where a frozen dataclass pays a ``__setattr__`` per field
    (measured: 2 µs of the 5 µs a proxied request spent here).
    """

    #: the client's address; ``""`` when the proxies do not know or will not tell (see the module
    #: docstring), ``None`` to keep the peer's
    client_host: str | None = None
    #: the client's port when a proxy said it, else 0 (``X-Forwarded-For`` carries no port)
    client_port: int = 0
    #: ``"http"`` or ``"https"`` (``ws``/``wss`` are folded in: a WebSocket scope uses ws/wss)
    scheme: str | None = None
    #: the Host the client asked for, as a Host field value (``name`` or ``name:port``)
    host: str | None = None
    #: the port the client connected to (``X-Forwarded-Port``)
    port: int | None = None
    #: the path prefix the proxy removed (ASGI ``root_path``, WSGI ``SCRIPT_NAME``): decoded,
    #: starts with ``/``, no trailing ``/``; ``""`` when the proxy says there is none
    prefix: str | None = None
    #: notes, in our words, on values that were ignored as malformed (for a debug log)
    malformed: tuple[str, ...] = ()

    def client(self, peer: tuple[str, int] | None) -> tuple[str, int] | None:
        """The ASGI ``client`` (``REMOTE_ADDR``, ``REMOTE_PORT``) given the socket's ``peer``."""
        host = self.client_host
        if host is None:
            return peer
        if not host:
            return None
        return (host, self.client_port)


class OriginResolver:
    """Trusted proxies and the header family they write; one per server.

    Per connection: ``trusted = resolver.trusts(peer_host)``. Per request, only when trusted:
    ``origin = resolver.resolve(request.headers)``; ``None`` means there is nothing to apply (none
    of the headers is present: the fast path costs one pass over the header names).
    """

    __slots__ = ("_forwarded", "source", "trusted")

    def __init__(self, trusted: TrustedProxies, source: str = X_FORWARDED) -> None:
        if source not in (X_FORWARDED, FORWARDED):
            raise ValueError(f"proxy header source must be {X_FORWARDED!r} or {FORWARDED!r}")
        self.trusted = trusted
        self.source = source
        self._forwarded = source == FORWARDED

    def trusts(self, host: str | None) -> bool:
        """Whether the peer at ``host`` may set the origin (call once per connection)."""
        return self.trusted.trusts(host)

    def resolve(self, headers: Headers) -> Origin | None:
        """The origin the headers of a request from a trusted peer give, or ``None``."""
        if self._forwarded:
            return self._resolve_forwarded(headers)
        return self._resolve_x_forwarded(headers)

    # ------------------------------------------------------------------ X-Forwarded-*

    def _resolve_x_forwarded(self, headers: Headers) -> Origin | None:
        chain: list[bytes] | None = None
        proto = host = port = prefix = None
        for name, value in headers:
            if name not in _X_NAMES:
                continue
            if name == _XFF:
                if chain is None:
                    chain = [value]
                else:
                    chain.append(value)
            elif name == _XFP:
                proto = value
            elif name == _XFH:
                host = value
            elif name == _XFPORT:
                port = value
            else:
                prefix = value
        if chain is None and proto is None and host is None and port is None and prefix is None:
            return None
        notes: list[str] = []
        client_host: str | None = None
        client_port = 0
        if chain is not None:
            client_host, client_port = self._walk_x_forwarded_for(chain, notes)
        scheme = (
            check_scheme(last_element(proto), notes, "X-Forwarded-Proto")
            if proto is not None
            else None
        )
        host_text = (
            check_host(last_element(host), notes, "X-Forwarded-Host") if host is not None else None
        )
        port_number = check_port(last_element(port), notes) if port is not None else None
        prefix_text = check_prefix(last_element(prefix), notes) if prefix is not None else None
        return _origin(client_host, client_port, scheme, host_text, port_number, prefix_text, notes)

    def _walk_x_forwarded_for(self, chain: list[bytes], notes: list[str]) -> tuple[str | None, int]:
        trusts = self.trusted.trusts
        leftmost: tuple[str, int] | None = None
        for value in reversed(chain):
            for raw in reversed(value.split(b",")):
                text = raw.strip(b" \t")
                if not text:
                    continue  # RFC 9110 §5.6.1: empty list elements are ignored
                node = xff_node(text)
                if node is None:
                    if text.lower() != b"unknown":
                        notes.append("X-Forwarded-For: a hop that is not an IP address")
                    return "", 0
                if not trusts(node[0]):
                    return node
                leftmost = node
        if leftmost is None:
            return None, 0  # the fields were empty: nothing said
        return leftmost

    # ---------------------------------------------------------------------- Forwarded

    def _resolve_forwarded(self, headers: Headers) -> Origin | None:
        fields: list[bytes] | None = None
        for name, value in headers:
            if name == _FORWARDED:
                if fields is None:
                    fields = [value]
                else:
                    fields.append(value)
        if fields is None:
            return None
        notes: list[str] = []
        trusts = self.trusted.trusts
        chosen: dict[str, str] | None = None  # the element the walk stopped at
        client_host: str | None = None
        client_port = 0
        rightmost = True
        found = False
        for value in reversed(fields):  # the last field line holds the nearest proxy's element
            elements = ReversedElements(value.decode("latin-1"))
            while not found:
                try:
                    element = elements.next()
                except BadElement:
                    notes.append("Forwarded: an element that does not parse")
                    return Origin("", 0, malformed=tuple(notes))
                if element is None:
                    break  # this field line is done; go on with the one before it
                chosen = element
                node_text = element.get("for")
                if node_text is None:
                    # the peer does not forward addresses at all (keep it as the client), or a
                    # trusted proxy further out did not say who its client was (unknown)
                    client_host, client_port, found = (None if rightmost else ""), 0, True
                else:
                    node = forwarded_node(node_text)
                    if node is None:
                        notes.append("Forwarded: a for= value that is not a node")
                        client_host, client_port, found = "", 0, True
                    elif isinstance(node, Unknown):
                        client_host, client_port, found = "", 0, True
                    else:
                        client_host, client_port = node
                        found = not trusts(client_host)
                rightmost = False
            if found:
                break
        if chosen is None:
            return None  # only empty elements
        proto = chosen.get("proto")
        host = chosen.get("host")
        scheme = check_scheme(proto.encode("latin-1"), notes, "Forwarded proto") if proto else None
        host_text = check_host(host.encode("latin-1"), notes, "Forwarded host") if host else None
        return _origin(client_host, client_port, scheme, host_text, None, None, notes)


def _origin(  # noqa: PLR0917 -- private, the fields of Origin in order
    client_host: str | None,
    client_port: int,
    scheme: str | None,
    host: str | None,
    port: int | None,
    prefix: str | None,
    notes: list[str],
) -> Origin | None:
    if (
        client_host is None
        and scheme is None
        and host is None
        and port is None
        and prefix is None
        and not notes
    ):
        return None  # the headers were there but said nothing
    return _new_tuple(Origin, (client_host, client_port, scheme, host, port, prefix, tuple(notes)))


# ------------------------------------------------------------------------------ field names

_XFF: Final = b"x-forwarded-for"
_XFP: Final = b"x-forwarded-proto"
_XFH: Final = b"x-forwarded-host"
_XFPORT: Final = b"x-forwarded-port"
_XFPREFIX: Final = b"x-forwarded-prefix"
_X_NAMES: Final = frozenset({_XFF, _XFP, _XFH, _XFPORT, _XFPREFIX})
_FORWARDED: Final = b"forwarded"
