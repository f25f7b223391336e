"""The asyncio driver of one uwsgi connection (nginx's ``uwsgi_pass``): socket ↔
:class:`UwsgiConnection` ↔ gateway.

One request per connection: the packet's vars become the ``Origin`` and the ``Request``, its body
is streamed to the app, the response goes back as an HTTP/1.1 head and the body, and the
connection closes after it (nginx reads a body without ``Content-Length`` to the close). The rest
(admission, flow control, timeouts, errors, the drain) is ``runtime.cgi_driver``'s.
"""

from __future__ import annotations

from typing import Any

from portico.protocols.uwsgi import UwsgiConnection
from portico.runtime.cgi_driver import CGIDriver
from portico.runtime.context import WorkerContext

__all__ = ["UwsgiDriver"]


class UwsgiDriver(CGIDriver):
    """asyncio protocol for one uwsgi connection."""

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.proto = UwsgiConnection(ctx.limits.uwsgi)

    def other_event(self, event: Any) -> None:  # pragma: no cover - the core has no others
        raise TypeError(f"unexpected uwsgi event {event!r}")

    def next_request(self) -> None:
        self._close()  # the protocol carries one request per connection
