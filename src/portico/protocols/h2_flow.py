"""What an HTTP/2 connection keeps apart from parsing: streams, windows, settings and output.

Split from ``http2`` (the frame handlers and the public send calls), which subclasses it; both are
compiled together.

Flow control (RFC 9113 §5.2, §6.9), as this module keeps it:

* receiving: ``recv_window`` (per stream, and ``_conn_recv_window``) is what the client may still
  send. Bytes handed to the app are *pending* until the driver says they were consumed
  (:meth:`acknowledge_received_data`); consumed bytes are *unacked* until enough gather (half a
  window) to be worth a WINDOW_UPDATE. Padding is consumed on arrival. A stream that closes gives
  its pending bytes back to the connection window, so a reset never shrinks it for good.
* sending: ``send_window`` (per stream, and ``_conn_send_window``) is what the client allows;
  :meth:`queue_data` frames up to the smaller of the two in frames of the peer's
  SETTINGS_MAX_FRAME_SIZE. A stream that could not send everything is *blocked*; when a
  WINDOW_UPDATE or a SETTINGS change gives it room again, a ``WindowOpen`` event says so.
"""

from __future__ import annotations

import struct
from typing import Final

from portico.protocols.h2_errors import (
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    PROTOCOL_ERROR,
    H2ConnectionError,
    H2StreamError,
)
from portico.protocols.h2_events import H2Event, WindowOpen
from portico.protocols.h2_frames import (
    DATA,
    END_STREAM,
    SETTINGS_ACK_FRAME,
    frame_header,
    settings_frame,
    window_update_frame,
)
from portico.protocols.h2_settings import (
    DEFAULT_WINDOW,
    ENABLE_CONNECT_PROTOCOL,
    ENABLE_PUSH,
    HEADER_TABLE_SIZE,
    INITIAL_WINDOW_SIZE,
    MAX_FRAME_SIZE,
    MAX_WINDOW,
    MIN_FRAME_SIZE,
    H2Limits,
)
from portico.protocols.h2_stream import CLOSED, HALF_CLOSED_REMOTE, IDLE, H2Stream

__all__ = ["H2FlowControl"]

_setting: Final = struct.Struct(">HL").unpack_from
_MAX_FRAME_SIZE_LIMIT: Final = (1 << 24) - 1


class H2FlowControl:
    """Streams, windows, settings, budgets and the output queue of one connection."""

    def __init__(self, limits: H2Limits) -> None:
        self._limits = limits
        #: frames and pieces of bodies (memoryviews of the app's bytes: framing copies nothing)
        self._out: list[bytes | memoryview] = []
        self._control_bytes = 0
        self._max_control_bytes = limits.max_queued_control_bytes
        self._events: list[H2Event] = []
        self._streams: dict[int, H2Stream] = {}
        self._active = 0
        #: recently closed streams and how they closed (insertion order: oldest first)
        self._closed: dict[int, int] = {}
        self._closed_limit = limits.closed_streams_remembered
        #: the highest stream id the client opened (§5.1.1)
        self._last_stream_id = 0
        self._blocked: set[int] = set()
        # receiving
        self._recv_initial_window = DEFAULT_WINDOW  # ours applies once the client acks it
        self._conn_recv_window = limits.connection_window_size
        self._conn_recv_unacked = 0
        self._conn_threshold = limits.connection_window_size // 2
        self._stream_threshold = max(1, limits.initial_window_size // 2)
        # sending
        self._conn_send_window = DEFAULT_WINDOW
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = MIN_FRAME_SIZE
        self._peer_table_size = 4096
        #: our SETTINGS are out and not yet acknowledged; the driver times this (§6.5.3)
        self.settings_ack_pending = True
        # budgets (see H2Limits)
        self._reset_budget = limits.reset_budget
        self._reset_tokens = limits.reset_budget
        self._overhead = 0
        self._overhead_limit = limits.control_frame_budget
        self._small_window_update = limits.small_window_update

    def queue_preface(self) -> None:
        """§3.4: our SETTINGS first, then the connection window opened to its configured size."""
        self._out.append(settings_frame(self._limits.settings()))
        extra = self._limits.connection_window_size - DEFAULT_WINDOW
        if extra > 0:
            self._out.append(window_update_frame(0, extra))

    # ------------------------------------------------------------------ output

    def data_to_send(self) -> bytes:
        """Everything queued so far, as one ``bytes`` (see :meth:`take_output` for the parts)."""
        out = self.take_output()
        if not out:
            return b""
        return bytes(out[0]) if len(out) == 1 else b"".join(out)

    def take_output(self) -> list[bytes | memoryview]:
        """Everything queued so far, as the frames and body pieces it is made of, for a
        ``writelines`` (vectored write) of large bodies without joining them into one copy."""
        out = self._out
        if out:
            self._out = []
            self._control_bytes = 0
        return out

    def queue_control(self, frame: bytes) -> None:
        """A reply the client's frames asked for (ACKs, RST_STREAM): bounded while not taken."""
        self._out.append(frame)
        self._control_bytes += len(frame)
        if self._control_bytes > self._max_control_bytes:
            raise H2ConnectionError(ENHANCE_YOUR_CALM, "client does not read our replies")

    def queue_data(self, stream: H2Stream, data: bytes, end_stream: bool) -> int:
        size = len(data)
        window = min(stream.send_window, self._conn_send_window)
        max_frame = self._peer_max_frame
        out = self._out
        stream_id = stream.stream_id
        # the common case: one frame. An empty one (END_STREAM alone) is not flow-controlled
        # (§6.9), so it goes even when a SETTINGS change left the window at or below zero.
        if (size <= window or not size) and size <= max_frame:
            out.append(frame_header(size, DATA, END_STREAM if end_stream else 0, stream_id))
            if size:
                out.append(data)
                if self._overhead > 0:
                    self._overhead -= 1  # a DATA frame sent: the client's WINDOW_UPDATEs are due
            stream.send_window -= size
            self._conn_send_window -= size
            return size
        taken = min(size, max(window, 0))
        pos = 0
        view = memoryview(data)  # slices of a view share the app's buffer: no copy per frame
        while pos < taken:
            piece = view[pos : pos + max_frame] if taken - pos > max_frame else view[pos:taken]
            pos += len(piece)
            last = end_stream and pos == size
            out.append(frame_header(len(piece), DATA, END_STREAM if last else 0, stream_id))
            out.append(piece)
            if self._overhead > 0:
                self._overhead -= 1
        stream.send_window -= taken
        self._conn_send_window -= taken
        if taken < size:
            stream.blocked = True
            self._blocked.add(stream_id)
        return taken

    # ------------------------------------------------------------------ receive windows

    def acknowledge_received_data(self, stream_id: int, size: int) -> None:
        """The app consumed ``size`` bytes of a request body: the client may send that much more."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # a closed stream gave its pending bytes back when it closed
        size = min(size, stream.recv_pending)
        stream.recv_pending -= size
        self.consumed(stream, size)

    def consumed(self, stream: H2Stream, size: int) -> None:
        stream.recv_unacked += size
        if stream.recv_unacked >= self._stream_threshold and stream.state != HALF_CLOSED_REMOTE:
            self._out.append(window_update_frame(stream.stream_id, stream.recv_unacked))
            stream.recv_window += stream.recv_unacked
            stream.recv_unacked = 0
        self.credit_connection(size)

    def credit_connection(self, size: int) -> None:
        self._conn_recv_unacked += size
        if self._conn_recv_unacked >= self._conn_threshold:
            self._out.append(window_update_frame(0, self._conn_recv_unacked))
            self._conn_recv_window += self._conn_recv_unacked
            self._conn_recv_unacked = 0

    # ------------------------------------------------------------------ send windows

    def open_connection_window(self, increment: int) -> None:
        self._conn_send_window += increment
        if self._conn_send_window > MAX_WINDOW:
            raise H2ConnectionError(FLOW_CONTROL_ERROR, "connection window above 2^31-1")
        if self._blocked:
            for stream_id in list(self._blocked):
                stream = self._streams.get(stream_id)
                if stream is not None and stream.send_window > 0:
                    self._unblock(stream)

    def open_stream_window(self, stream: H2Stream, increment: int) -> None:
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            raise H2StreamError(stream.stream_id, FLOW_CONTROL_ERROR, "stream window above 2^31-1")
        if stream.blocked and stream.send_window > 0 and self._conn_send_window > 0:
            self._unblock(stream)

    def _unblock(self, stream: H2Stream) -> None:
        stream.blocked = False
        self._blocked.discard(stream.stream_id)
        self._events.append(WindowOpen(stream.stream_id))

    def send_window(self, stream_id: int) -> int:
        """How many bytes :meth:`queue_data` would take on this stream now."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        return max(0, min(stream.send_window, self._conn_send_window))

    @property
    def stalled_streams(self) -> list[int]:
        """Streams waiting for the peer to open a window. A driver that times out a response
        write (CVE-2019-9511/-9517, zero-window dribble) resets those that wait too long."""
        return sorted(self._blocked)

    @property
    def active_streams(self) -> int:
        """Open and half-closed streams (§5.1.2)."""
        return self._active

    # ------------------------------------------------------------------ settings

    def apply_peer_settings(self, buf: bytes, start: int, stop: int) -> bool:
        """Apply a SETTINGS payload, queue its ACK; True if HEADER_TABLE_SIZE changed."""
        table_changed = False
        for pos in range(start, stop, 6):
            ident, value = _setting(buf, pos)
            if ident == INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise H2ConnectionError(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE above 2^31-1")
                self._peer_window_changed(value - self._peer_initial_window)
                self._peer_initial_window = value
            elif ident == MAX_FRAME_SIZE:
                if not MIN_FRAME_SIZE <= value <= _MAX_FRAME_SIZE_LIMIT:
                    raise H2ConnectionError(PROTOCOL_ERROR, "invalid MAX_FRAME_SIZE")
                self._peer_max_frame = value
            elif ident == HEADER_TABLE_SIZE:
                if value != self._peer_table_size:
                    table_changed = value < self._peer_table_size or table_changed
                    self._peer_table_size = value
            elif ident in (ENABLE_PUSH, ENABLE_CONNECT_PROTOCOL) and value > 1:
                raise H2ConnectionError(PROTOCOL_ERROR, "invalid boolean setting")
            # others (MAX_CONCURRENT_STREAMS limits pushes, which we never make; unknown ids)
            # are ignored, as §6.5.2 requires for unknown ones
        self.queue_control(SETTINGS_ACK_FRAME)
        return table_changed

    def _peer_window_changed(self, delta: int) -> None:
        """§6.9.2: a new SETTINGS_INITIAL_WINDOW_SIZE moves every stream's window by the change."""
        if not delta:
            return
        for stream in self._streams.values():
            stream.send_window += delta
            if stream.send_window > MAX_WINDOW:
                raise H2ConnectionError(FLOW_CONTROL_ERROR, "stream window above 2^31-1")
            ready = stream.blocked and stream.send_window > 0 and self._conn_send_window > 0
            if delta > 0 and ready:
                self._unblock(stream)

    def settings_acknowledged(self) -> None:
        """Our SETTINGS apply from now on (§6.5.3): the new initial window for open streams."""
        self.settings_ack_pending = False
        delta = self._limits.initial_window_size - self._recv_initial_window
        self._recv_initial_window = self._limits.initial_window_size
        for stream in self._streams.values():
            stream.recv_window += delta

    # ------------------------------------------------------------------ stream records

    def forget_stream(self, stream: H2Stream, state: int) -> None:
        """Drop a stream that closed: its pending bytes return to the connection window."""
        stream_id = stream.stream_id
        stream.state = state
        del self._streams[stream_id]
        self._active -= 1
        if stream.recv_pending:
            self.credit_connection(stream.recv_pending)
            stream.recv_pending = 0
        if stream.blocked:
            self._blocked.discard(stream_id)
        self.remember_closed(stream_id, state)

    def closed_state(self, stream_id: int) -> int:
        """The state of a stream not in ``_streams``: remembered, idle, or long closed."""
        state = self._closed.get(stream_id, -1)
        if state >= 0:
            return state
        # even ids are ours to open, and we never do (no push): they stay idle
        return IDLE if stream_id > self._last_stream_id or not stream_id & 1 else CLOSED

    def remember_closed(self, stream_id: int, state: int) -> None:
        closed = self._closed
        closed[stream_id] = state
        if len(closed) > self._closed_limit:
            del closed[next(iter(closed))]
