"""The events only HTTP/2 has, beside the version-neutral ones of ``events``.

Each is something the driver must act on; see ``http2.H2Connection`` for what to do.
"""

from __future__ import annotations

from typing import NamedTuple

from portico.protocols.events import Event

__all__ = ["CloseConnection", "GoAwayReceived", "H2Event", "StreamReset", "WindowOpen"]


class StreamReset(NamedTuple):
    """A stream the app knows ended early: the client sent RST_STREAM (``by_peer``), or the server
    reset it because the client broke the protocol on it. The app's exchange must be aborted; the
    app's further sends on it are dropped quietly."""

    stream_id: int
    error_code: int
    by_peer: bool


class WindowOpen(NamedTuple):
    """A stream whose last ``send_data`` came back short may send again."""

    stream_id: int


class GoAwayReceived(NamedTuple):
    """The client will open no more streams. Those open still finish; no action is needed beyond
    not expecting new requests (a :class:`CloseConnection` follows once the last one is done)."""

    last_stream_id: int
    error_code: int


class CloseConnection(NamedTuple):
    """Write what ``data_to_send`` holds, then close the transport: the connection is over
    (``error_code`` 0 after a graceful end). Every stream still open must be aborted."""

    error_code: int
    detail: str


H2Event = Event | StreamReset | WindowOpen | GoAwayReceived | CloseConnection
