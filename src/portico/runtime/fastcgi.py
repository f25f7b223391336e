"""The asyncio driver of one FastCGI connection (nginx's ``fastcgi_pass``): socket ↔
:class:`FastCGIConnection` ↔ gateway.

Requests come one after another on a connection nginx keeps (``fastcgi_keep_conn on`` with an
``upstream`` ``keepalive``): after each response the core says whether the connection may carry
another (``keep_alive``); the next request is a new stream, and an idle connection is closed
after ``keepalive_timeout``, longer than nginx's own 60 s, so that nginx closes first. What the
core answers by itself (``FCGI_GET_VALUES``, a refused role or an abort before the request began)
comes as ``Reply`` and is written at once; ``FCGI_ABORT_REQUEST`` (``Aborted``) ends the app's
request as a client disconnect does and ends the request for nginx. The rest (admission, flow
control, timeouts, errors, the drain) is ``runtime.cgi_driver``'s.
"""

from __future__ import annotations

from typing import Any

from portico.protocols.fastcgi import Aborted, FastCGIConnection, Reply
from portico.runtime.cgi_driver import CGIDriver
from portico.runtime.context import WorkerContext

__all__ = ["FastCGIDriver"]


class FastCGIDriver(CGIDriver):
    """asyncio protocol for one FastCGI connection."""

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.proto = self.fcgi = FastCGIConnection(ctx.limits.fastcgi)

    def other_event(self, event: Any) -> None:
        if type(event) is Reply:
            self.write([event.data])
            if event.close:
                self._close()
        elif type(event) is Aborted:
            stream = self.stream
            if stream is not None:
                self.stream = None
                stream.lost()  # the app sees a client disconnect
            self.send(self.fcgi.abort_response())
            if self.fcgi.keep_alive and not self.ctx.closing:
                self.next_request()
            else:
                self._close()
        else:  # pragma: no cover - the core has no others
            raise TypeError(f"unexpected FastCGI event {event!r}")

    def next_request(self) -> None:
        if not self.fcgi.keep_alive:
            self._close()
            return
        # nginx keeps the connection for its next request; idle, it closes it after its
        # keepalive_timeout (60 s), before ours
        self.deadline = self.ctx.now + self.keepalive_timeout
        self._resume()
