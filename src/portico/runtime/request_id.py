"""``X-Request-ID`` (``--request-id``): one id per request, in the app's request, the response
and the access log.

The worker context gives every admitted request its id (:meth:`RequestIds.assign`), whatever the
protocol, before a gateway builds the scope or environ; each protocol's driver adds it to the
response head it builds (``WorkerContext.response_fields``, with ``--header``'s fields), so no
gateway, no error page and no static file needs to know. A valid id that arrives (from a proxy
or a client) is kept, so one id follows a request through every hop; an invalid one (too long,
or with characters a log or a header would have to escape) is replaced. New ids are a random
per-worker prefix and a counter: unique without a system call per request.
"""

from __future__ import annotations

import os
import re
from typing import Final

from portico.gateways.stream import Stream

__all__ = ["HEADER", "RequestIds"]

HEADER: Final = b"x-request-id"
# 1 to 200 characters (Heroku's router allows 20 to 200 of a similar set)
_VALID: Final = re.compile(rb"[A-Za-z0-9._:+/=@-]{1,200}")


class RequestIds:
    """Assigns the requests of one worker their ids."""

    def __init__(self) -> None:
        # 64 random bits per worker: ids from different workers and restarts do not collide
        self._prefix = os.urandom(8).hex()
        self._next = 0

    def new(self) -> bytes:
        self._next += 1
        return f"{self._prefix}{self._next:016x}".encode("ascii")

    def assign(self, stream: Stream) -> None:
        """Set ``stream.request_id``; the request's headers then carry it too (the app's view)."""
        headers = stream.request.headers
        for index in range(len(headers)):
            name, value = headers[index]
            if name == HEADER:
                if _VALID.fullmatch(value) is None:
                    value = self.new()
                    headers[index] = (HEADER, value)
                stream.request_id = value
                return
        value = self.new()
        headers.append((HEADER, value))
        stream.request_id = value
