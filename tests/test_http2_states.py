"""The stream state table (RFC 9113 §5.1), and random conversations with a well-behaved client."""

from __future__ import annotations

import h2.events
from hypothesis import given, settings
from hypothesis import strategies as st

from portico.protocols import http2
from portico.protocols.events import Body, EndOfBody, Request
from portico.protocols.h2_errors import PROTOCOL_ERROR, STREAM_CLOSED
from portico.protocols.h2_events import StreamReset, WindowOpen
from portico.protocols.h2_stream import (
    CLOSED,
    CLOSED_RESET_RECEIVED,
    CLOSED_RESET_SENT,
    CONNECTION_ERROR,
    DROP,
    HALF_CLOSED_LOCAL,
    HALF_CLOSED_REMOTE,
    IDLE,
    IGNORE,
    MISUSE,
    OPEN,
    RECV_DATA,
    RECV_HEADERS,
    RECV_RST,
    RECV_WINDOW_UPDATE,
    SEND_DATA,
    SEND_RST,
    STATE_NAMES,
    STREAM_ERROR,
    TRANSITIONS,
    transition,
)
from tests.h2util import Pair, request_headers

_CLOSED_STATES = (CLOSED, CLOSED_RESET_SENT, CLOSED_RESET_RECEIVED)


def test_public_api() -> None:
    assert http2.__all__ == ["H2Connection", "H2Limits"]


def test_every_cell_is_a_state_or_a_known_outcome() -> None:
    assert len(TRANSITIONS) == len(STATE_NAMES) * 9
    for cell in TRANSITIONS:
        assert (
            0 <= cell < len(STATE_NAMES)
            or cell in (IGNORE, DROP, MISUSE)
            or cell & (STREAM_ERROR | CONNECTION_ERROR)
        )


def test_closed_states_never_reopen() -> None:
    for state in _CLOSED_STATES:
        for event in range(9):
            assert transition(state, event) not in (OPEN, HALF_CLOSED_LOCAL, HALF_CLOSED_REMOTE)


def test_section_5_1_rules() -> None:
    assert transition(IDLE, RECV_HEADERS) == OPEN
    for event in (RECV_DATA, RECV_RST, RECV_WINDOW_UPDATE):
        assert transition(IDLE, event) == CONNECTION_ERROR | PROTOCOL_ERROR
    assert transition(HALF_CLOSED_REMOTE, RECV_DATA) == STREAM_ERROR | STREAM_CLOSED
    assert transition(HALF_CLOSED_REMOTE, RECV_WINDOW_UPDATE) == HALF_CLOSED_REMOTE
    assert transition(CLOSED, RECV_DATA) == CONNECTION_ERROR | STREAM_CLOSED
    assert transition(CLOSED, RECV_WINDOW_UPDATE) == IGNORE
    assert transition(CLOSED_RESET_SENT, RECV_DATA) == IGNORE
    assert transition(CLOSED_RESET_RECEIVED, RECV_DATA) == STREAM_ERROR | STREAM_CLOSED
    assert transition(CLOSED_RESET_RECEIVED, RECV_RST) == IGNORE  # never RST for RST (§5.4.2)
    assert transition(CLOSED_RESET_RECEIVED, SEND_DATA) == DROP
    assert transition(HALF_CLOSED_LOCAL, SEND_DATA) == MISUSE
    assert transition(OPEN, SEND_RST) == CLOSED_RESET_SENT


def _client_open(pair: Pair, stream_id: int) -> bool:
    stream = pair.client.streams.get(stream_id)
    return stream is not None and not stream.closed


_ops = st.lists(
    st.tuples(
        st.sampled_from(["get", "post", "data", "end", "reset", "respond", "ack", "window"]),
        st.integers(0, 7),
        st.integers(1, 5000),
    ),
    max_size=40,
)


@given(ops=_ops)
@settings(max_examples=80, deadline=None)
def test_random_conversations_never_break_the_connection(ops: list[tuple[str, int, int]]) -> None:
    pair = Pair(initial_window_size=3000)
    open_requests: list[int] = []  # client side still sending
    known: dict[int, bytes] = {}  # the server's view: requests it may answer
    pending: dict[int, bytes] = {}  # response bytes the windows did not take yet
    received: dict[int, int] = {}
    for op, pick, size in ops:
        client = pair.client
        if op in ("get", "post"):
            if len(open_requests) + len(known) < 50:
                stream_id = pair.request(request_headers(op.upper().encode()), op == "get")
                if op == "post":
                    open_requests.append(stream_id)
        elif open_requests and op in ("data", "end", "reset"):
            stream_id = open_requests[pick % len(open_requests)]
            window = min(client.local_flow_control_window(stream_id), size)
            if op == "data" and window:
                client.send_data(stream_id, b"d" * window)
            elif op == "end":
                client.end_stream(stream_id)
                open_requests.remove(stream_id)
            elif op == "reset":
                client.reset_stream(stream_id)
                open_requests.remove(stream_id)
        elif known and op == "respond":
            stream_id = sorted(known)[pick % len(known)]
            if stream_id not in pending:
                pair.server.send_headers(stream_id, 200, [])
                body = b"r" * size
                taken = pair.server.send_data(stream_id, body, end_stream=True)
                pending[stream_id] = body[taken:]
                known.pop(stream_id)
        elif op == "ack" and received:
            stream_id = sorted(received)[pick % len(received)]
            pair.server.acknowledge_received_data(stream_id, received.pop(stream_id))
        elif op == "window":
            client.increment_flow_control_window(size)
        for event in pair.to_server():
            if isinstance(event, Request):
                known[event.stream_id] = b""
            elif isinstance(event, Body):
                received[event.stream_id] = received.get(event.stream_id, 0) + len(event.data)
            elif isinstance(event, StreamReset):
                known.pop(event.stream_id, None)
                pending.pop(event.stream_id, None)
            elif isinstance(event, WindowOpen):
                rest = pending[event.stream_id]
                taken = pair.server.send_data(event.stream_id, rest, end_stream=True)
                pending[event.stream_id] = rest[taken:]
            else:
                assert isinstance(event, EndOfBody), event
        for stream_id in [s for s, rest in pending.items() if not rest]:
            del pending[stream_id]
        pair.to_client()
        # a response that completes first ends the request too (RST_STREAM NO_ERROR, §8.1)
        open_requests = [s for s in open_requests if _client_open(pair, s)]
        assert not pair.server.finished
        assert not pair.of_type(h2.events.ConnectionTerminated)
        assert pair.server.active_streams <= 50
        assert sorted(pair.server.stalled_streams) == sorted(pending)
