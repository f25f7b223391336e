"""The sending half of an HTTP/2 server connection: response heads, data, trailers, resets, GOAWAY.

Split from ``http2`` (which adds the frame handlers on top); compiled with it. Every call checks
the stream against the state table first: a send on a stream that is already reset is dropped
quietly (the driver may hear of the reset after the app wrote), a send that breaks the order of a
response is :class:`AppError`, raised before anything is queued.
"""

from __future__ import annotations

from typing import Final

from portico.errors import AppError
from portico.protocols.h2_errors import CANCEL, NO_ERROR
from portico.protocols.h2_events import CloseConnection
from portico.protocols.h2_flow import H2FlowControl
from portico.protocols.h2_frames import goaway_frame, header_frames, ping_frame, rst_stream_frame
from portico.protocols.h2_response import encode_response_head, encode_trailers
from portico.protocols.h2_settings import H2Limits
from portico.protocols.h2_stream import (
    CLOSED,
    CLOSED_RESET_SENT,
    DROP,
    IGNORE,
    SEND_DATA,
    SEND_END_STREAM,
    SEND_HEADERS,
    H2Stream,
    transition,
)
from portico.protocols.hpack import Encoder

__all__ = ["DRAIN_PING", "LAST_STREAM_ID", "H2Sending"]

LAST_STREAM_ID: Final = (1 << 31) - 1
DRAIN_PING: Final = b"portico\x00"


class H2Sending(H2FlowControl):
    """The calls a driver makes to answer requests, and the end of the connection."""

    def __init__(self, limits: H2Limits) -> None:
        super().__init__(limits)
        self._encoder = Encoder()
        # GOAWAY: streams above _goaway_last are ignored once the final GOAWAY is out (§6.8)
        self._draining = False
        self._drain_waits = False
        self._drain_acked = False
        self._goaway_sent = False
        self._goaway_last = LAST_STREAM_ID
        self._peer_goaway = False
        self._receiving = False
        #: the connection is over: write data_to_send(), then close (also after a graceful end)
        self.finished = False

    def _send_state(self, stream_id: int, event: int) -> H2Stream | None:
        """The stream for a send, or None when the send is to be dropped (a reset stream)."""
        stream = self._streams.get(stream_id)
        state = self.closed_state(stream_id) if stream is None else stream.state
        outcome = transition(state, event)
        if outcome == DROP or self.finished:
            return None
        if outcome >= IGNORE or stream is None:
            raise AppError(f"cannot send on stream {stream_id} in its state")
        return stream

    def send_headers(  # noqa: PLR0917 -- the driver's call, once per response
        self,
        stream_id: int,
        status: int,
        headers: list[tuple[bytes, bytes]],
        end_stream: bool = False,
        date: bytes = b"",
        server: bytes = b"",
        whole_body: int = -1,
    ) -> None:
        """Queue the response head; the app's own date/server fields replace these defaults.

        ``whole_body``: the size of the entire body when the caller has it all already (it
        follows with one ``send_data``), so that a content-length it contradicts is refused
        here, before anything is queued, rather than after the head is out.
        """
        stream = self._send_state(stream_id, SEND_HEADERS)
        if stream is None:
            return
        if stream.head_sent:
            raise AppError("the response head was already sent")
        block, length = encode_response_head(status, headers, date, server)
        no_content = stream.head_request or status in {204, 304}
        if not no_content:
            if end_stream and length > 0:
                raise AppError("response ended before its content-length")
            if 0 <= whole_body != length >= 0:
                raise AppError("response body length differs from its content-length")
            stream.send_remaining = length
        stream.no_content = no_content
        stream.head_sent = True
        self._out.extend(
            header_frames(
                stream_id, self._encoder.take_prefix() + block, end_stream, self._peer_max_frame
            )
        )
        if end_stream:
            self._end_local(stream)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> int:
        """Queue response bytes; return how many the windows took (the rest waits for WindowOpen).

        ``end_stream`` takes effect only when every byte was taken. HEAD, 204 and 304 responses
        carry no content, so their data is dropped (and reported as taken).
        """
        stream = self._send_state(stream_id, SEND_END_STREAM if end_stream else SEND_DATA)
        if stream is None:
            return len(data)
        if not stream.head_sent:
            raise AppError("response data before the response head")
        if stream.no_content:
            if end_stream:
                self.queue_data(stream, b"", True)
                self._end_local(stream)
            return len(data)
        size = len(data)
        remaining = stream.send_remaining
        if remaining >= 0:
            if size > remaining:
                raise AppError("response body longer than its content-length")
            if end_stream and size < remaining:
                raise AppError("response ended before its content-length")
        taken = self.queue_data(stream, data, end_stream)
        if remaining >= 0:
            stream.send_remaining = remaining - taken
        if end_stream and taken == size:
            self._end_local(stream)
        return taken

    def send_trailers(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        """End the response with a trailer section (HEADERS with END_STREAM, §8.1)."""
        stream = self._send_state(stream_id, SEND_END_STREAM)
        if stream is None:
            return
        if not stream.head_sent or stream.send_remaining > 0:
            raise AppError("trailers before the head or before the content-length was sent")
        block = encode_trailers(headers)
        self._out.extend(header_frames(stream_id, block, True, self._peer_max_frame))
        self._end_local(stream)

    def open_tunnel(self, stream_id: int) -> None:
        """Make an accepted extended CONNECT (RFC 8441) a two-way byte stream: our END_STREAM
        then half-closes it (the client's bytes still come, up to its own END_STREAM), instead
        of resetting the rest of the request as an ordinary response's end does."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.tunnel = True

    def _end_local(self, stream: H2Stream) -> None:
        stream.state = transition(stream.state, SEND_END_STREAM)
        if stream.state == CLOSED:
            self._close_stream(stream, CLOSED, True)
        elif stream.tunnel:
            pass  # half-closed (local): the client ends its side when it is done
        else:
            # §8.1: the response is complete while the request is not; ask the client to stop
            # sending with RST_STREAM NO_ERROR instead of holding the stream (and its window).
            # What it sent meanwhile is then ignored, as after any reset of ours.
            self._out.append(rst_stream_frame(stream.stream_id, NO_ERROR))
            self._close_stream(stream, CLOSED_RESET_SENT, True)

    def reset_stream(self, stream_id: int, error_code: int = CANCEL) -> None:
        """The driver's abort of one exchange: RST_STREAM now; later sends on it are dropped."""
        stream = self._streams.get(stream_id)
        if stream is None or self.finished:
            return
        self._out.append(rst_stream_frame(stream_id, error_code))
        self._close_stream(stream, CLOSED_RESET_SENT)

    def close(self, error_code: int = NO_ERROR, detail: str = "") -> None:
        """End the connection now: GOAWAY with the last stream processed; then close."""
        if self.finished:
            return
        self._out.append(goaway_frame(self._last_stream_id, error_code, detail.encode()))
        self.finished = True

    def start_graceful_close(self, wait_for_driver: bool = False) -> None:
        """Drain (§6.8): GOAWAY 2^31-1 and a PING; when its ACK comes back (one round trip, so
        every request the client sent before seeing the GOAWAY has arrived), the final GOAWAY
        names the last stream we accept. :attr:`finished` turns true once no stream is left.

        ``wait_for_driver``: the ACK alone does not send the final GOAWAY; the driver calls
        :meth:`final_goaway` once a grace of its own is over as well. A client may write the
        PING's ACK ahead of requests it had already queued (nghttp2 sends control frames
        first), so the round trip alone would refuse those."""
        if self._draining or self.finished:
            return
        self._draining = True
        self._drain_waits = wait_for_driver
        self._out.append(goaway_frame(LAST_STREAM_ID, NO_ERROR))
        self._out.append(ping_frame(DRAIN_PING, False))

    @property
    def drain_acknowledged(self) -> bool:
        """The client answered the drain's PING: what it sent before the GOAWAY is here."""
        return self._drain_acked

    def final_goaway(self) -> None:
        """End a drain begun with ``wait_for_driver``: the final GOAWAY, with the last stream."""
        if self._draining and not self.finished:
            self._final_goaway()

    def drain_ping_acknowledged(self) -> None:
        self._drain_acked = True
        if not self._drain_waits:
            self._final_goaway()

    def _final_goaway(self) -> None:
        self._draining = False
        self._goaway_sent = True
        self._goaway_last = self._last_stream_id
        self._out.append(goaway_frame(self._last_stream_id, NO_ERROR))
        self._check_finished()

    def _close_stream(self, stream: H2Stream, state: int, completed: bool = False) -> None:
        self.forget_stream(stream, state)
        if completed and self._reset_tokens < self._reset_budget:
            self._reset_tokens += 1  # a response completed: the budget refills
        self._check_finished()

    def _check_finished(self) -> None:
        if not self._streams and (self._goaway_sent or self._peer_goaway) and not self.finished:
            self.finished = True
            if self._receiving:  # from the send side, the driver reads ``finished`` instead
                self._events.append(CloseConnection(NO_ERROR, "connection drained"))
