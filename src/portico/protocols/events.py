"""The version-neutral vocabulary between the protocol layer and the gateways.

Every HTTP version (1.1 now, 2 later) turns bytes into these events, and every gateway (ASGI, WSGI)
consumes them, so the app bridges are written once. The idea is hypercorn's ``protocol/events.py``:
a request is ``Request``, then zero or more ``Body``, then ``EndOfBody``; a ``StreamError`` ends a
stream early because the client broke the protocol.

The events are ``NamedTuple``s rather than frozen dataclasses on purpose: they are created for every
request on the hot path, and a tuple is immutable and built by one C call, where a frozen dataclass
pays an ``object.__setattr__`` per field.
"""

from __future__ import annotations

from typing import NamedTuple

Headers = list[tuple[bytes, bytes]]


class Request(NamedTuple):
    """A request head. ``headers`` names are lower-cased, in the order received, values stripped."""

    stream_id: int
    method: str
    #: the path part of the request-target, exactly as sent (percent-encoding kept)
    raw_path: bytes
    #: everything after the first ``?``, exactly as sent (without the ``?``)
    query_string: bytes
    http_version: str
    headers: Headers
    #: ``False`` when the request has no body (no Content-Length > 0, not chunked)
    has_body: bool
    #: the client sent ``Expect: 100-continue`` and waits for ``100 Continue`` before the body
    expect_continue: bool
    #: the value of the ``Upgrade`` header when the client asked to switch protocols, else ``None``
    upgrade: bytes | None = None
    #: the scheme given by an absolute-form request-target (RFC 9112 §3.2.2), else ``None``
    scheme: str | None = None
    #: whether the head has proxy fields (``X-Forwarded-*``, ``Forwarded``): ``False`` lets the
    #: runtime skip origin resolution; ``None`` (a protocol that does not tell) means look
    proxy_fields: bool | None = None


class Body(NamedTuple):
    """A piece of a request body, in order."""

    stream_id: int
    data: bytes


class EndOfBody(NamedTuple):
    """The request body is complete. ``trailers`` holds the fields of a chunked trailer section."""

    stream_id: int
    trailers: Headers


class StreamError(NamedTuple):
    """The client broke the protocol; the server answers ``status`` and closes the connection.

    ``detail`` is Portico's own words, never the client's bytes, so it is safe for logs and bodies.
    """

    stream_id: int
    status: int
    detail: str


Event = Request | Body | EndOfBody | StreamError
