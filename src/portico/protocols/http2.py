"""HTTP/2 server connection (RFC 9113) as bytes in → events out, calls in → bytes out.

A driver uses it like this (one ``H2Connection`` per TCP connection, after ALPN "h2" or the
prior-knowledge preface)::

    conn = H2Connection(limits)
    write(conn.data_to_send())                  # our SETTINGS: the server preface
    for event in conn.receive_data(read()):     # every read
        ...                                     # Request, Body, EndOfBody, StreamError, and the
    write(conn.data_to_send())                  # h2_events ones; then write what they produced

    conn.send_headers(stream_id, 200, headers, date=..., server=...)
    sent = conn.send_data(stream_id, body, end_stream=True)   # may be < len(body): see below
    conn.acknowledge_received_data(stream_id, len(body_piece))  # the app consumed request bytes

Flow control is explicit both ways (§5.2). Request bodies: the client may send what our windows
allow, and they re-open only when the driver reports, with :meth:`acknowledge_received_data`,
that the app consumed the bytes, so a slow app bounds what an upload makes us buffer (the window
sizes of :class:`H2Limits`). Responses: :meth:`send_data` frames what the peer's connection and
stream windows and its SETTINGS_MAX_FRAME_SIZE allow and returns how many bytes it took; the rest
is the driver's to keep, and a :class:`WindowOpen` event says when to offer it again.

Errors never escape :meth:`receive_data`: a stream error resets that stream (the driver hears of it
with :class:`StreamReset` when the app knew the stream), a connection error queues GOAWAY and ends
with :class:`CloseConnection`. App mistakes (bad headers, wrong content-length, sending after the
end) raise :class:`portico.errors.AppError` before anything is queued.
"""

from __future__ import annotations

from typing import Final

from portico.protocols.events import Body, EndOfBody, Request, StreamError
from portico.protocols.h2_errors import (
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    STREAM_CLOSED,
    H2ConnectionError,
    H2StreamError,
    HeaderListTooLarge,
)
from portico.protocols.h2_events import CloseConnection, GoAwayReceived, H2Event, StreamReset
from portico.protocols.h2_frames import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    goaway_frame,
    ping_frame,
    rst_stream_frame,
)
from portico.protocols.h2_request import check_trailers, request_from_headers
from portico.protocols.h2_send import DRAIN_PING, H2Sending
from portico.protocols.h2_settings import H2Limits
from portico.protocols.h2_stream import (
    CLOSED,
    CLOSED_RESET_RECEIVED,
    CLOSED_RESET_SENT,
    CONNECTION_ERROR,
    HALF_CLOSED_REMOTE,
    IGNORE,
    OPEN,
    RECV_DATA,
    RECV_END_STREAM,
    RECV_HEADERS,
    RECV_RST,
    RECV_WINDOW_UPDATE,
    STREAM_ERROR,
    H2Stream,
    transition,
)
from portico.protocols.hpack import Decoder, Encoder

__all__ = ["H2Connection", "H2Limits"]

_unpack_header = FRAME_HEADER.unpack_from
_PREFACE_LENGTH: Final = len(PREFACE)
_NO_TRAILERS: Final[list[tuple[bytes, bytes]]] = []


class H2Connection(H2Sending):
    """One HTTP/2 server connection, without I/O. See the module docstring for the driver's part."""

    def __init__(self, limits: H2Limits) -> None:
        super().__init__(limits)
        # before our SETTINGS are acknowledged the client may assume the protocol's 4096
        self._decoder = Decoder(max(limits.header_table_size, 4096), limits.max_header_list_size)
        self._encoder = Encoder()
        self._max_frame = limits.max_frame_size
        self._max_streams = limits.max_concurrent_streams
        self._extended_connect = limits.enable_connect_protocol
        self._block_limit = limits.max_header_list_size + limits.header_block_margin
        self._max_continuations = limits.max_continuation_frames
        self._buf = b""
        self._preface_done = False
        self._settings_seen = False
        # a header block in progress (HEADERS without END_HEADERS): its stream, else 0
        self._block_stream = 0
        self._block_flags = 0
        self._block_parts: list[bytes] = []
        self._block_size = 0
        self._block_frames = 0
        self._block_self_dependent = False
        self.queue_preface()

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> list[H2Event]:
        """Feed bytes from the client; return the events they complete."""
        events: list[H2Event] = []
        if self.finished:
            return events
        self._events = events
        self._receiving = True
        buf = self._buf + data if self._buf else data
        pos = 0
        end = len(buf)
        try:
            if not self._preface_done:
                if end < _PREFACE_LENGTH:
                    if PREFACE[:end] != buf:
                        raise H2ConnectionError(PROTOCOL_ERROR, "invalid connection preface")
                    self._buf = buf
                    self._receiving = False
                    return events
                if buf[:_PREFACE_LENGTH] != PREFACE:
                    raise H2ConnectionError(PROTOCOL_ERROR, "invalid connection preface")
                self._preface_done = True
                pos = _PREFACE_LENGTH
            max_frame = self._max_frame
            while end - pos >= 9 and not self.finished:
                high, low, frame_type, flags, stream_id = _unpack_header(buf, pos)
                length = (high << 16) | low
                if length > max_frame:  # checked before the payload is buffered
                    raise H2ConnectionError(FRAME_SIZE_ERROR, "frame larger than MAX_FRAME_SIZE")
                start = pos + 9
                stop = start + length
                if stop > end:
                    break
                pos = stop
                stream_id &= 0x7FFFFFFF
                try:
                    self._frame(frame_type, flags, stream_id, buf, start, stop)
                except H2StreamError as error:
                    self._stream_error(error.stream_id, error.error_code)
        except H2ConnectionError as error:
            self._connection_error(error.error_code, error.detail)
            pos = end
        self._buf = buf[pos:] if pos < end else b""
        self._receiving = False
        return events

    def _frame(  # noqa: PLR0917 -- once per frame: positional is the cheapest call
        self, frame_type: int, flags: int, stream_id: int, buf: bytes, start: int, stop: int
    ) -> None:
        if self._block_stream and frame_type != CONTINUATION:
            raise H2ConnectionError(PROTOCOL_ERROR, "header block interrupted (RFC 9113 §6.10)")
        if not self._settings_seen:
            if frame_type != SETTINGS or flags & ACK:  # §3.4: the preface ends with SETTINGS
                raise H2ConnectionError(PROTOCOL_ERROR, "connection preface without SETTINGS")
            self._settings_seen = True
            self._overhead -= 1  # the preface's SETTINGS is not overhead
        if frame_type == DATA:
            self._on_data(flags, stream_id, buf, start, stop)
        elif frame_type == HEADERS:
            self._on_headers(flags, stream_id, buf, start, stop)
        elif frame_type == WINDOW_UPDATE:
            self._on_window_update(stream_id, buf, start, stop)
        elif frame_type == CONTINUATION:
            self._on_continuation(flags, stream_id, buf[start:stop])
        elif frame_type == SETTINGS:
            self._on_settings(flags, stream_id, buf, start, stop)
        elif frame_type == PING:
            self._on_ping(flags, stream_id, buf[start:stop])
        elif frame_type == RST_STREAM:
            self._on_rst_stream(stream_id, buf, start, stop)
        elif frame_type == PRIORITY:
            self._on_priority(stream_id, buf, start, stop)
        elif frame_type == GOAWAY:
            self._on_goaway(stream_id, buf, start, stop)
        elif frame_type == PUSH_PROMISE:
            raise H2ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE from a client (§8.4)")
        else:
            self._nuisance()  # §5.5: unknown types are ignored, but they are still work

    def _outcome(self, stream_id: int, outcome: int) -> None:
        """Act on a table cell that is not a next state: raise its error, or ignore the frame."""
        if outcome & CONNECTION_ERROR:
            raise H2ConnectionError(outcome & 0xFF, "frame not allowed in this stream state")
        if outcome & STREAM_ERROR:
            raise H2StreamError(stream_id, outcome & 0xFF, "frame not allowed in this stream state")
        self._nuisance()  # IGNORE: a frame that did nothing

    # ------------------------------------------------------------------ frames

    def _on_data(self, flags: int, stream_id: int, buf: bytes, start: int, stop: int) -> None:
        if stream_id == 0:
            raise H2ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        length = stop - start  # all of it counts for flow control, padding too (§6.9.1)
        if flags & PADDED:
            if length < 1 or buf[start] >= length:
                raise H2ConnectionError(PROTOCOL_ERROR, "DATA padding longer than the frame")
            stop -= buf[start]
            start += 1
        if length > self._conn_recv_window:
            raise H2ConnectionError(FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        self._conn_recv_window -= length
        stream = self._streams.get(stream_id)
        if stream is None:
            self.credit_connection(length)  # nobody will consume these bytes
            self._outcome(stream_id, transition(self.closed_state(stream_id), RECV_DATA))
            return
        if stream.state == HALF_CLOSED_REMOTE:
            self.credit_connection(length)
            raise H2StreamError(stream_id, STREAM_CLOSED, "DATA after END_STREAM")
        if length > stream.recv_window:
            self.credit_connection(length)
            raise H2StreamError(stream_id, FLOW_CONTROL_ERROR, "DATA beyond the stream window")
        stream.recv_window -= length
        size = stop - start
        if length > size:  # padding and its length byte: consumed on arrival
            self.consumed(stream, length - size)
        if size:
            self._useful()
            stream.received_length += size
            if 0 <= stream.expected_length < stream.received_length:
                raise H2StreamError(stream_id, PROTOCOL_ERROR, "more DATA than content-length")
            if stream.delivered:
                stream.recv_pending += size
                self._events.append(Body(stream_id, buf[start:stop]))
            else:  # a request refused with a status: its body is dropped
                self.consumed(stream, size)
        elif not flags & END_STREAM:
            self._nuisance()  # CVE-2019-9518: empty DATA frames
        if flags & END_STREAM:
            self._end_of_request(stream, _NO_TRAILERS)

    def _end_of_request(self, stream: H2Stream, trailers: list[tuple[bytes, bytes]]) -> None:
        if 0 <= stream.expected_length != stream.received_length:
            raise H2StreamError(
                stream.stream_id, PROTOCOL_ERROR, "DATA shorter than content-length"
            )
        stream.state = transition(stream.state, RECV_END_STREAM)
        if stream.delivered:
            self._events.append(EndOfBody(stream.stream_id, trailers))
        if stream.state == CLOSED:
            self._close_stream(stream, CLOSED)

    def _on_headers(self, flags: int, stream_id: int, buf: bytes, start: int, stop: int) -> None:
        if stream_id == 0:
            raise H2ConnectionError(PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & PADDED:
            if stop - start < 1 or buf[start] >= stop - start:
                raise H2ConnectionError(PROTOCOL_ERROR, "HEADERS padding longer than the frame")
            stop -= buf[start]
            start += 1
        self_dependent = False
        if flags & PRIORITY_FLAG:
            if stop - start < 5:
                raise H2ConnectionError(FRAME_SIZE_ERROR, "HEADERS too short for its priority")
            dependency = int.from_bytes(buf[start : start + 4], "big") & 0x7FFFFFFF
            self_dependent = dependency == stream_id  # §5.3.1: a stream error, once decoded
            start += 5
        fragment = buf[start:stop]
        if flags & END_HEADERS:
            self._header_block(stream_id, flags, fragment, self_dependent)
            return
        if not fragment:
            self._nuisance()
        self._block_stream = stream_id
        self._block_flags = flags
        self._block_parts = [fragment]
        self._block_size = len(fragment)
        self._block_frames = 1
        self._block_self_dependent = self_dependent

    def _on_continuation(self, flags: int, stream_id: int, fragment: bytes) -> None:
        if stream_id != self._block_stream or not stream_id:
            raise H2ConnectionError(PROTOCOL_ERROR, "CONTINUATION without a header block")
        self._block_frames += 1
        self._block_size += len(fragment)
        # CVE-2024-27316: a header block is bounded in bytes and in frames
        if self._block_size > self._block_limit:
            raise H2ConnectionError(ENHANCE_YOUR_CALM, "header block too large")
        if self._block_frames > self._max_continuations:
            raise H2ConnectionError(ENHANCE_YOUR_CALM, "too many CONTINUATION frames")
        self._block_parts.append(fragment)
        if not flags & END_HEADERS:
            if not fragment:
                self._nuisance()
            return
        block = b"".join(self._block_parts)
        self._block_parts = []
        self._block_stream = 0
        self._header_block(stream_id, self._block_flags, block, self._block_self_dependent)

    def _header_block(self, stream_id: int, flags: int, block: bytes, self_dependent: bool) -> None:
        end_stream = bool(flags & END_STREAM)
        too_large = False
        try:  # always decoded, whatever becomes of the stream: HPACK state is shared (§4.3)
            headers = self._decoder.decode(block)
        except HeaderListTooLarge:
            headers = []
            too_large = True
        stream = self._streams.get(stream_id)
        if stream is not None:  # a second header block: trailers (§8.1)
            outcome = transition(stream.state, RECV_HEADERS)
            if outcome >= IGNORE:
                self._outcome(stream_id, outcome)
            if self_dependent or not end_stream or too_large:
                raise H2StreamError(stream_id, PROTOCOL_ERROR, "trailers without END_STREAM")
            self._end_of_request(stream, check_trailers(stream_id, headers))
            return
        if stream_id <= self._last_stream_id or not stream_id & 1:
            state = self._closed.get(stream_id, -1)
            if state < 0 or not stream_id & 1:  # §5.1.1: new ids are odd and increasing
                raise H2ConnectionError(PROTOCOL_ERROR, "invalid stream identifier")
            self._outcome(stream_id, transition(state, RECV_HEADERS))
            return
        self._last_stream_id = stream_id
        if self._goaway_sent and stream_id > self._goaway_last:
            self.remember_closed(stream_id, CLOSED_RESET_SENT)  # §6.8: ignored, never processed
            return
        if self_dependent:
            raise H2StreamError(stream_id, PROTOCOL_ERROR, "stream depends on itself")
        if self._active >= self._max_streams:  # §5.1.2
            self._spend_reset()
            self._stream_error(stream_id, REFUSED_STREAM, spend=False)
            return
        stream = H2Stream(stream_id, self._recv_initial_window, self._peer_initial_window)
        stream.state = OPEN
        self._streams[stream_id] = stream
        self._active += 1
        self._useful()
        if too_large:
            event: H2Event = StreamError(stream_id, 431, "request header list too large")
        else:
            event, stream.expected_length = request_from_headers(
                stream_id, headers, end_stream, self._extended_connect
            )
        if isinstance(event, Request):
            stream.delivered = True
            stream.head_request = event.method == "HEAD"
        self._events.append(event)
        if end_stream:
            stream.state = HALF_CLOSED_REMOTE

    def _on_window_update(self, stream_id: int, buf: bytes, start: int, stop: int) -> None:
        if stop - start != 4:
            raise H2ConnectionError(FRAME_SIZE_ERROR, "WINDOW_UPDATE length is not 4")
        increment = int.from_bytes(buf[start:stop], "big") & 0x7FFFFFFF
        if increment < self._small_window_update:
            self._nuisance()
        if stream_id == 0:
            if increment == 0:
                raise H2ConnectionError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0 on the connection")
            self.open_connection_window(increment)
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            self._outcome(stream_id, transition(self.closed_state(stream_id), RECV_WINDOW_UPDATE))
            return
        if increment == 0:
            raise H2StreamError(stream_id, PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        self.open_stream_window(stream, increment)

    def _on_settings(self, flags: int, stream_id: int, buf: bytes, start: int, stop: int) -> None:
        if stream_id:
            raise H2ConnectionError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if stop != start:
                raise H2ConnectionError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            if self.settings_ack_pending:
                self.settings_acknowledged()
                self._decoder.set_max_allowed_table_size(self._limits.header_table_size)
            else:
                self._nuisance()
            return
        if (stop - start) % 6:
            raise H2ConnectionError(FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6")
        self._nuisance()
        if self.apply_peer_settings(buf, start, stop):
            self._encoder.peer_table_size_changed()

    def _on_ping(self, flags: int, stream_id: int, opaque: bytes) -> None:
        if stream_id:
            raise H2ConnectionError(PROTOCOL_ERROR, "PING on a stream")
        if len(opaque) != 8:
            raise H2ConnectionError(FRAME_SIZE_ERROR, "PING length is not 8")
        self._nuisance()
        if flags & ACK:
            if self._draining and opaque == DRAIN_PING:
                self.drain_ping_acknowledged()
            return
        self.queue_control(ping_frame(opaque, True))

    def _on_rst_stream(self, stream_id: int, buf: bytes, start: int, stop: int) -> None:
        if stream_id == 0:
            raise H2ConnectionError(PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if stop - start != 4:
            raise H2ConnectionError(FRAME_SIZE_ERROR, "RST_STREAM length is not 4")
        stream = self._streams.get(stream_id)
        if stream is None:
            self._outcome(stream_id, transition(self.closed_state(stream_id), RECV_RST))
            return
        code = int.from_bytes(buf[start:stop], "big")
        if stream.delivered:
            self._events.append(StreamReset(stream_id, code, True))
        self._close_stream(stream, CLOSED_RESET_RECEIVED)
        self._spend_reset()  # CVE-2023-44487: a stream cancelled before its response was done

    def _on_priority(self, stream_id: int, buf: bytes, start: int, stop: int) -> None:
        if stream_id == 0:
            raise H2ConnectionError(PROTOCOL_ERROR, "PRIORITY on stream 0")
        self._nuisance()  # RFC 9113 deprecates priority signals: parsed, checked, not used
        if stop - start != 5:
            raise H2StreamError(stream_id, FRAME_SIZE_ERROR, "PRIORITY length is not 5")
        if int.from_bytes(buf[start : start + 4], "big") & 0x7FFFFFFF == stream_id:
            raise H2StreamError(stream_id, PROTOCOL_ERROR, "stream depends on itself")

    def _on_goaway(self, stream_id: int, buf: bytes, start: int, stop: int) -> None:
        if stream_id:
            raise H2ConnectionError(PROTOCOL_ERROR, "GOAWAY on a stream")
        if stop - start < 8:
            raise H2ConnectionError(FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
        last = int.from_bytes(buf[start : start + 4], "big") & 0x7FFFFFFF
        code = int.from_bytes(buf[start + 4 : start + 8], "big")
        self._peer_goaway = True
        self._events.append(GoAwayReceived(last, code))
        self._check_finished()

    # ------------------------------------------------------------------ errors and budgets

    def _stream_error(self, stream_id: int, code: int, spend: bool = True) -> None:
        """Reset a stream the client broke; CVE-2025-8671 (MadeYouReset) counts these."""
        if spend:
            self._spend_reset()
        self.queue_control(rst_stream_frame(stream_id, code))
        stream = self._streams.get(stream_id)
        if stream is None:
            self.remember_closed(stream_id, CLOSED_RESET_SENT)
            return
        if stream.delivered:
            self._events.append(StreamReset(stream_id, code, False))
        self._close_stream(stream, CLOSED_RESET_SENT)

    def _spend_reset(self) -> None:
        self._reset_tokens -= 1
        if self._reset_tokens < 0:
            raise H2ConnectionError(ENHANCE_YOUR_CALM, "too many streams reset or refused")

    def _nuisance(self) -> None:
        self._overhead += 1
        if self._overhead > self._overhead_limit:
            raise H2ConnectionError(ENHANCE_YOUR_CALM, "too many frames that do no work")

    def _useful(self) -> None:
        if self._overhead > 0:
            self._overhead -= 1

    def _connection_error(self, code: int, detail: str) -> None:
        if self.finished:
            return
        self._out.append(goaway_frame(self._last_stream_id, code, detail.encode()))
        self.finished = True
        self._events.append(CloseConnection(code, detail))
