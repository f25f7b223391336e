"""The HTTP/2 stream state machine (RFC 9113 §5.1) as one table, and the per-stream record.

The rules, as the table encodes them (a server never pushes, so the reserved states never occur;
PRIORITY frames are allowed in every state and change nothing, so they have no column):

* ``idle``: only HEADERS opens a stream; DATA, RST_STREAM or WINDOW_UPDATE there is a connection
  error PROTOCOL_ERROR (§5.1).
* ``open`` / ``half-closed (local)``: the client may send; END_STREAM closes its side.
* ``half-closed (remote)``: the client has finished; more DATA or HEADERS is a stream error
  STREAM_CLOSED; WINDOW_UPDATE and RST_STREAM are fine.
* ``closed`` splits in three, because §5.1 treats them apart: after END_STREAM both ways, DATA
  or HEADERS is a connection error STREAM_CLOSED, while WINDOW_UPDATE and RST_STREAM are tolerated
  (they may cross our final frame); after *we* sent RST_STREAM every frame is ignored (the client
  could not know yet); after the *client* sent RST_STREAM any frame but PRIORITY is a stream error
  STREAM_CLOSED, except RST_STREAM itself (never answer RST_STREAM with RST_STREAM, §5.4.2).

Our own sends follow the same table: sending on a stream the client reset (or that we reset) is
dropped quietly, since the driver may learn of the reset only after the app wrote; sending after
our own END_STREAM is the app's mistake (:data:`MISUSE`).

A cell holds the next state, or :data:`IGNORE`, :data:`DROP`, :data:`MISUSE`, or an error kind ORed
with its error code (:data:`STREAM_ERROR` / :data:`CONNECTION_ERROR`). A cell left out is a
connection error PROTOCOL_ERROR: nothing is allowed by omission.
"""

from __future__ import annotations

from typing import Final

from portico.protocols.h2_errors import PROTOCOL_ERROR, STREAM_CLOSED

__all__ = [
    "CLOSED",
    "CLOSED_RESET_RECEIVED",
    "CLOSED_RESET_SENT",
    "CONNECTION_ERROR",
    "DROP",
    "HALF_CLOSED_LOCAL",
    "HALF_CLOSED_REMOTE",
    "IDLE",
    "IGNORE",
    "MISUSE",
    "OPEN",
    "RECV_DATA",
    "RECV_END_STREAM",
    "RECV_HEADERS",
    "RECV_RST",
    "RECV_WINDOW_UPDATE",
    "SEND_DATA",
    "SEND_END_STREAM",
    "SEND_HEADERS",
    "SEND_RST",
    "STATE_NAMES",
    "STREAM_ERROR",
    "TRANSITIONS",
    "H2Stream",
    "transition",
]

# states
IDLE: Final = 0
OPEN: Final = 1
HALF_CLOSED_REMOTE: Final = 2
HALF_CLOSED_LOCAL: Final = 3
CLOSED: Final = 4
CLOSED_RESET_SENT: Final = 5
CLOSED_RESET_RECEIVED: Final = 6
STATE_NAMES: Final = (
    "idle",
    "open",
    "half-closed (remote)",
    "half-closed (local)",
    "closed",
    "closed (reset sent)",
    "closed (reset received)",
)
_STATES: Final = len(STATE_NAMES)

# inputs: what the client sent, or what we send
RECV_HEADERS: Final = 0
RECV_DATA: Final = 1
RECV_END_STREAM: Final = 2  # applied after the HEADERS or DATA frame that carried the flag
RECV_RST: Final = 3
RECV_WINDOW_UPDATE: Final = 4
SEND_HEADERS: Final = 5
SEND_DATA: Final = 6
SEND_END_STREAM: Final = 7
SEND_RST: Final = 8
_INPUTS: Final = 9

# outcomes other than a next state
IGNORE: Final = 16  # a received frame is discarded (its DATA still counts for flow control)
DROP: Final = 17  # our send is discarded: the stream is already reset
MISUSE: Final = 18  # our send breaks the state machine: the caller's bug (AppError)
STREAM_ERROR: Final = 0x100  # | error code: RST_STREAM this stream
CONNECTION_ERROR: Final = 0x200  # | error code: GOAWAY

_S_CLOSED: Final = STREAM_ERROR | STREAM_CLOSED
_C_CLOSED: Final = CONNECTION_ERROR | STREAM_CLOSED

_RULES: Final[dict[tuple[int, int], int]] = {
    (IDLE, RECV_HEADERS): OPEN,
    (IDLE, SEND_RST): CLOSED_RESET_SENT,  # refusing a stream as it opens (REFUSED_STREAM)
    (OPEN, RECV_HEADERS): OPEN,  # trailers; §8.1 requires END_STREAM with them
    (OPEN, RECV_DATA): OPEN,
    (OPEN, RECV_END_STREAM): HALF_CLOSED_REMOTE,
    (OPEN, RECV_RST): CLOSED_RESET_RECEIVED,
    (OPEN, RECV_WINDOW_UPDATE): OPEN,
    (OPEN, SEND_HEADERS): OPEN,
    (OPEN, SEND_DATA): OPEN,
    (OPEN, SEND_END_STREAM): HALF_CLOSED_LOCAL,
    (OPEN, SEND_RST): CLOSED_RESET_SENT,
    (HALF_CLOSED_REMOTE, RECV_HEADERS): _S_CLOSED,
    (HALF_CLOSED_REMOTE, RECV_DATA): _S_CLOSED,
    (HALF_CLOSED_REMOTE, RECV_END_STREAM): _S_CLOSED,
    (HALF_CLOSED_REMOTE, RECV_RST): CLOSED_RESET_RECEIVED,
    (HALF_CLOSED_REMOTE, RECV_WINDOW_UPDATE): HALF_CLOSED_REMOTE,
    (HALF_CLOSED_REMOTE, SEND_HEADERS): HALF_CLOSED_REMOTE,
    (HALF_CLOSED_REMOTE, SEND_DATA): HALF_CLOSED_REMOTE,
    (HALF_CLOSED_REMOTE, SEND_END_STREAM): CLOSED,
    (HALF_CLOSED_REMOTE, SEND_RST): CLOSED_RESET_SENT,
    (HALF_CLOSED_LOCAL, RECV_HEADERS): HALF_CLOSED_LOCAL,
    (HALF_CLOSED_LOCAL, RECV_DATA): HALF_CLOSED_LOCAL,
    (HALF_CLOSED_LOCAL, RECV_END_STREAM): CLOSED,
    (HALF_CLOSED_LOCAL, RECV_RST): CLOSED_RESET_RECEIVED,
    (HALF_CLOSED_LOCAL, RECV_WINDOW_UPDATE): HALF_CLOSED_LOCAL,
    (HALF_CLOSED_LOCAL, SEND_HEADERS): MISUSE,
    (HALF_CLOSED_LOCAL, SEND_DATA): MISUSE,
    (HALF_CLOSED_LOCAL, SEND_END_STREAM): MISUSE,
    (HALF_CLOSED_LOCAL, SEND_RST): CLOSED_RESET_SENT,
    (CLOSED, RECV_HEADERS): _C_CLOSED,
    (CLOSED, RECV_DATA): _C_CLOSED,
    (CLOSED, RECV_END_STREAM): _C_CLOSED,
    (CLOSED, RECV_RST): IGNORE,
    (CLOSED, RECV_WINDOW_UPDATE): IGNORE,
    (CLOSED, SEND_HEADERS): MISUSE,
    (CLOSED, SEND_DATA): MISUSE,
    (CLOSED, SEND_END_STREAM): MISUSE,
    (CLOSED, SEND_RST): DROP,
    (CLOSED_RESET_SENT, RECV_HEADERS): IGNORE,
    (CLOSED_RESET_SENT, RECV_DATA): IGNORE,
    (CLOSED_RESET_SENT, RECV_END_STREAM): IGNORE,
    (CLOSED_RESET_SENT, RECV_RST): IGNORE,
    (CLOSED_RESET_SENT, RECV_WINDOW_UPDATE): IGNORE,
    (CLOSED_RESET_SENT, SEND_HEADERS): DROP,
    (CLOSED_RESET_SENT, SEND_DATA): DROP,
    (CLOSED_RESET_SENT, SEND_END_STREAM): DROP,
    (CLOSED_RESET_SENT, SEND_RST): DROP,
    (CLOSED_RESET_RECEIVED, RECV_HEADERS): _S_CLOSED,
    (CLOSED_RESET_RECEIVED, RECV_DATA): _S_CLOSED,
    (CLOSED_RESET_RECEIVED, RECV_END_STREAM): _S_CLOSED,
    (CLOSED_RESET_RECEIVED, RECV_RST): IGNORE,
    (CLOSED_RESET_RECEIVED, RECV_WINDOW_UPDATE): _S_CLOSED,
    (CLOSED_RESET_RECEIVED, SEND_HEADERS): DROP,
    (CLOSED_RESET_RECEIVED, SEND_DATA): DROP,
    (CLOSED_RESET_RECEIVED, SEND_END_STREAM): DROP,
    (CLOSED_RESET_RECEIVED, SEND_RST): DROP,
}

#: the table, flattened for a look-up by ``state * 9 + input``
TRANSITIONS: Final[list[int]] = [
    _RULES.get((state, event), CONNECTION_ERROR | PROTOCOL_ERROR)
    for state in range(_STATES)
    for event in range(_INPUTS)
]


def transition(state: int, event: int) -> int:
    return TRANSITIONS[state * _INPUTS + event]


class H2Stream:
    """What the connection knows of one stream. Defaults live on the class (set only what differs).

    Flow control, seen from us: ``recv_window`` is what the client may still send before we open
    the window again; ``recv_unacked`` counts bytes the app consumed that we have not yet credited
    back with WINDOW_UPDATE; ``send_window`` is what the client lets us send.
    """

    state: int = IDLE
    recv_window: int = 0
    recv_unacked: int = 0
    #: bytes handed to the app (Body events) that the driver has not yet acknowledged
    recv_pending: int = 0
    send_window: int = 0
    #: the request's content-length, or -1 (§8.1.1)
    expected_length: int = -1
    received_length: int = 0
    #: the app saw a Request for this stream (so it must hear of a reset)
    delivered: bool = False
    head_sent: bool = False
    #: the response carries no content (HEAD, 204, 304): DATA is dropped (RFC 9110 §6.4.1)
    no_content: bool = False
    head_request: bool = False
    #: bytes the response still owes for its content-length, or -1 when it declared none
    send_remaining: int = -1
    #: a send came back short: tell the driver when the window opens
    blocked: bool = False
    #: an extended CONNECT tunnel (RFC 8441): each side ends it with END_STREAM on its own
    tunnel: bool = False

    def __init__(self, stream_id: int, recv_window: int, send_window: int) -> None:
        self.stream_id = stream_id
        self.recv_window = recv_window
        self.send_window = send_window
