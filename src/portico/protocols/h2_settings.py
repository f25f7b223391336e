"""HTTP/2 settings (RFC 9113 §6.5) and the bounds a connection enforces (:class:`H2Limits`).

Every bound is a constructor parameter, with the precedent that motivates it. The defaults live in
the settings table only (``portico.config.settings_http2``); ``runtime.limits`` builds this from the
settings, as it does ``H1Limits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_WINDOW",
    "ENABLE_CONNECT_PROTOCOL",
    "ENABLE_PUSH",
    "HEADER_TABLE_SIZE",
    "INITIAL_WINDOW_SIZE",
    "MAX_CONCURRENT_STREAMS",
    "MAX_FRAME_SIZE",
    "MAX_HEADER_LIST_SIZE",
    "MAX_WINDOW",
    "MIN_FRAME_SIZE",
    "H2Limits",
]

# §6.5.2 identifiers (and RFC 8441 §3 for ENABLE_CONNECT_PROTOCOL)
HEADER_TABLE_SIZE: Final = 0x1
ENABLE_PUSH: Final = 0x2
MAX_CONCURRENT_STREAMS: Final = 0x3
INITIAL_WINDOW_SIZE: Final = 0x4
MAX_FRAME_SIZE: Final = 0x5
MAX_HEADER_LIST_SIZE: Final = 0x6
ENABLE_CONNECT_PROTOCOL: Final = 0x8

#: §6.9.2: every window starts at 65,535 until SETTINGS say otherwise (the connection's always)
DEFAULT_WINDOW: Final = 65535
#: §6.9.1: a window may never exceed 2^31-1
MAX_WINDOW: Final = (1 << 31) - 1
MIN_FRAME_SIZE: Final = 16384
_MAX_FRAME_SIZE_LIMIT: Final = (1 << 24) - 1


@dataclass(frozen=True, slots=True)
class H2Limits:
    """What one HTTP/2 connection advertises and tolerates (each field is a setting)."""

    #: SETTINGS_MAX_CONCURRENT_STREAMS. RFC 9113 §6.5.2 advises at least 100 (nginx 128, Apache
    #: 100); more streams than this are refused with REFUSED_STREAM, which a client may retry.
    max_concurrent_streams: int
    #: SETTINGS_INITIAL_WINDOW_SIZE: how much of one request body the client may send before the
    #: app reads it. This, and ``connection_window_size`` for all streams together, is the most an
    #: upload can make the server buffer for a slow app (RFC 9113 §5.2.2).
    initial_window_size: int
    #: the connection's receive window, opened with a WINDOW_UPDATE right after our SETTINGS
    connection_window_size: int
    #: SETTINGS_MAX_FRAME_SIZE: the largest frame we accept. 16 KiB is the protocol default and
    #: what most servers keep; one frame is buffered whole before it is parsed.
    max_frame_size: int
    #: SETTINGS_MAX_HEADER_LIST_SIZE, in RFC 9113 §6.5.2 units (name + value + 32 per field).
    #: Built from the HTTP/1.1 header limits (``max_header_bytes`` + 32 x ``max_header_count``). A
    #: larger list is refused with 431 after the block is decoded (the HPACK-bomb bound,
    #: CVE-2016-6581: counted as it grows, including entries repeated from the dynamic table).
    max_header_list_size: int
    #: SETTINGS_HEADER_TABLE_SIZE: our HPACK decoder's dynamic table (RFC 7541 §4.2)
    header_table_size: int
    #: RFC 8441: advertise extended CONNECT, which carries WebSocket over HTTP/2
    enable_connect_protocol: bool
    #: CVE-2024-27316 (CONTINUATION flood): the header block of one HEADERS and its CONTINUATION
    #: frames is bounded in bytes by ``max_header_list_size`` plus this margin (HPACK output is
    #: never much smaller than the §6.5.2 size, which adds 32 per field) and in frame count below.
    header_block_margin: int
    max_continuation_frames: int
    #: CVE-2023-44487 (Rapid Reset) and CVE-2025-8671 (MadeYouReset): streams that end in a
    #: reset before their response was complete, whether the client reset them or made us reset
    #: them by breaking the protocol, and streams refused past the concurrency limit, spend one
    #: token each; every response completed in full earns one back. An empty bucket ends the
    #: connection with ENHANCE_YOUR_CALM. So a client can make the server start at most this many
    #: more requests than it lets finish: a browser cancelling a page of images stays far below.
    reset_budget: int
    #: CVE-2019-9512 (PING flood), -9515 (SETTINGS flood), -9518 (empty frames), -9513/-9516
    #: (PRIORITY, empty HEADERS): frames that make the server work without moving a request
    #: forward (PING, SETTINGS, PRIORITY, tiny WINDOW_UPDATEs, empty DATA or header-block frames,
    #: unknown frames) add one to a score; every request started, non-empty DATA frame received and
    #: DATA frame sent takes one off (down to 0). Past this score: ENHANCE_YOUR_CALM.
    control_frame_budget: int
    #: a WINDOW_UPDATE below this many bytes counts as overhead (zero-window dribble, CVE-2019-9517)
    small_window_update: int
    #: CVE-2019-9512/-9515 again, for memory: replies we owe the client (PING and SETTINGS ACKs,
    #: RST_STREAMs) that the driver has not yet taken with ``data_to_send``; past this many bytes
    #: the connection ends. (The driver also stops reading while its transport cannot write.)
    max_queued_control_bytes: int
    #: recently closed streams remembered for §5.1's closed-state rules (frames that cross a
    #: RST_STREAM are ignored, not punished); older ids are treated as long closed
    closed_streams_remembered: int

    def __post_init__(self) -> None:
        if not MIN_FRAME_SIZE <= self.max_frame_size <= _MAX_FRAME_SIZE_LIMIT:
            raise ValueError("max_frame_size must be between 16384 and 16777215 (RFC 9113 §6.5.2)")
        for name in ("initial_window_size", "connection_window_size"):
            if not 0 <= getattr(self, name) <= MAX_WINDOW:
                raise ValueError(f"{name} must be between 0 and 2^31-1 (RFC 9113 §6.9.1)")
        if self.connection_window_size < DEFAULT_WINDOW:
            raise ValueError("connection_window_size cannot be below 65535 (RFC 9113 §6.9.2)")
        for name in (
            "max_concurrent_streams",
            "max_header_list_size",
            "max_continuation_frames",
            "reset_budget",
            "control_frame_budget",
            "max_queued_control_bytes",
            "closed_streams_remembered",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.header_table_size < 0 or self.header_block_margin < 0:
            raise ValueError("header_table_size and header_block_margin cannot be negative")

    def settings(self) -> list[tuple[int, int]]:
        """The SETTINGS we send: each value that differs from the protocol default."""
        pairs = [
            (MAX_CONCURRENT_STREAMS, self.max_concurrent_streams),
            (MAX_HEADER_LIST_SIZE, self.max_header_list_size),
        ]
        if self.initial_window_size != DEFAULT_WINDOW:
            pairs.append((INITIAL_WINDOW_SIZE, self.initial_window_size))
        if self.max_frame_size != MIN_FRAME_SIZE:
            pairs.append((MAX_FRAME_SIZE, self.max_frame_size))
        if self.header_table_size != 4096:
            pairs.append((HEADER_TABLE_SIZE, self.header_table_size))
        if self.enable_connect_protocol:
            pairs.append((ENABLE_CONNECT_PROTOCOL, 1))
        return pairs
