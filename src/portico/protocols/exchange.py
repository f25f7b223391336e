"""The state of one request/response pair on an HTTP/1.1 connection (compiled with ``http11``)."""

from __future__ import annotations

__all__ = ["Exchange"]


class Exchange:
    """The state of one request/response pair, oldest first in ``H1Connection._exchanges``.

    Defaults live on the class so that creating one (once per request) sets only what differs.
    """

    continue_sent = False
    body_complete = True
    response_started = False
    response_done = False
    chunked = False
    close_delimited = False
    suppress_body = False
    #: bytes still owed by a response that declared Content-Length (None when it did not)
    remaining: int | None = None

    def __init__(
        self, stream_id: int, version: str, head: bool, keep_alive: bool, expect: bool
    ) -> None:
        self.stream_id = stream_id
        self.version = version
        self.head = head
        self.keep_alive = keep_alive
        self.expect_continue = expect
