"""Origin resolution, applied: what trusted proxies say about a request, written onto its stream.

The one step DESIGN.md puts between the protocols and the gateways: the client, scheme, host,
port and prefix are set on the :class:`Stream` once, before any gateway builds a scope or an
environ from it, so ASGI, WSGI, WebSockets, static files and the access log all see the same
origin, over every protocol. Which peers are believed and how the headers are read is
``protocols.forwarded``'s; this module only applies its answer.
"""

from __future__ import annotations

from typing import Final

from portico.gateways.stream import Stream
from portico.logs import error_log as log
from portico.protocols.events import Headers
from portico.protocols.forwarded import Origin, OriginResolver

__all__ = ["apply_origin"]


_HOST: Final = b"host"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def apply_origin(stream: Stream, resolver: OriginResolver) -> None:
    """Set what the request's trusted proxy headers say on ``stream`` (nothing when silent)."""
    request = stream.request
    origin = resolver.resolve(request.headers)
    if origin is None:
        return
    if origin.malformed:
        peer = f"{stream.client[0]}:{stream.client[1]}" if stream.client else "-"
        log.debug("%s: proxy headers ignored: %s", peer, "; ".join(origin.malformed))
    stream.client = origin.client(stream.client)
    scheme = origin.scheme
    if scheme is not None:
        stream.scheme = scheme
    if origin.host is not None or origin.port is not None:
        _set_host(stream, origin)
    if origin.prefix is not None:
        stream.prefix = origin.prefix


def _set_host(stream: Stream, origin: Origin) -> None:
    """The Host the client asked for, with the port it connected to: the request's ``Host``
    field (ASGI ``headers``, WSGI ``HTTP_HOST`` and ``SERVER_NAME``/``SERVER_PORT``) and the
    scope's ``server``, as Werkzeug's ProxyFix does with ``X-Forwarded-Host`` and ``-Port``."""
    request = stream.request
    headers = request.headers
    host = origin.host
    if host is None:
        host = next((value.decode("latin-1") for name, value in headers if name == _HOST), "")
    port = origin.port
    if port is not None:
        name = host.rpartition(":")[0] if host.rfind(":") > host.rfind("]") else host
        default = _DEFAULT_PORTS.get(stream.scheme)
        host = name if port == default else f"{name}:{port}"
        server = stream.server
        stream.server = (server[0] if server is not None else name, port)
    value = host.encode("latin-1")
    replaced: Headers = [(name, value if name == _HOST else v) for name, v in headers]
    if not any(name == _HOST for name, _ in headers):
        replaced.insert(0, (_HOST, value))
    stream.request = request._replace(headers=replaced)
