"""The HTTP/2 rows of the settings table: what a connection advertises and tolerates.

Inherited by ``settings.Config``; each field becomes one field of ``H2Limits`` in
``runtime.limits`` and nowhere else. Every bound names the attack it defends against. The
header-list bound is not here: it is the HTTP/1.1 one (``max_header_bytes`` and
``max_header_count``), so a request is held to one limit whatever its protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from portico.config import kinds
from portico.config.setting import gunicorn, setting

__all__ = ["HTTP2Settings"]

_WINDOW_MAX = (1 << 31) - 1  # RFC 9113 §6.9.1


@dataclass(frozen=True)
class HTTP2Settings:
    """The HTTP/2 settings (a base of ``Config``; see the module docstring)."""

    # Config holds the slots: a class may have only one base with non-empty __slots__
    __slots__ = ()

    http_protocols: tuple[str, ...] = setting(
        ("h1", "h2"),
        kinds.HTTP_PROTOCOLS,
        "HTTP versions served (gunicorn's name): `h1`, `h2` or both (the default). Under TLS, "
        "ALPN picks one (`h2` first); on a plain bind a connection that opens with HTTP/2's "
        "preface is HTTP/2 (prior knowledge, RFC 9113 §3.3) and any other HTTP/1.1, on the "
        "same port. `Upgrade: h2c` is not offered (RFC 9113 deprecates it).",
        flags=("--http-protocols",),
        peers=(gunicorn("http_protocols", "--http-protocols"),),
    )

    h2_max_concurrent_streams: int = setting(
        100,
        kinds.integer(1),
        "Most streams (requests) one HTTP/2 connection may have open at once "
        "(SETTINGS_MAX_CONCURRENT_STREAMS); more are refused with REFUSED_STREAM, which "
        "clients retry. RFC 9113 §6.5.2 advises at least 100 (nginx 128, Apache 100).",
        flags=("--h2-max-concurrent-streams",),
        peers=(gunicorn("http2_max_concurrent_streams", "--http2-max-concurrent-streams"),),
    )
    h2_initial_window_size: int = setting(
        256 * 1024,
        kinds.integer(0, _WINDOW_MAX),
        "Bytes of one request body a client may send before the app reads them "
        "(SETTINGS_INITIAL_WINDOW_SIZE): Portico reopens the window only as the app consumes "
        "the body, so this is what a slow app makes the server buffer per stream.",
        flags=("--h2-initial-window-size",),
        peers=(gunicorn("http2_initial_window_size", "--http2-initial-window-size"),),
    )
    h2_connection_window_size: int = setting(
        1024 * 1024,
        kinds.integer(65535, _WINDOW_MAX),
        "Bytes of request bodies all streams of a connection together may have in flight "
        "before the apps read them (the connection's flow-control window, RFC 9113 §6.9).",
        flags=("--h2-connection-window-size",),
    )
    h2_max_frame_size: int = setting(
        16384,
        kinds.integer(16384, (1 << 24) - 1),
        "Largest frame accepted (SETTINGS_MAX_FRAME_SIZE); a frame is buffered whole before "
        "it is parsed. 16 KiB is the protocol's default and most servers'.",
        flags=("--h2-max-frame-size",),
        peers=(gunicorn("http2_max_frame_size", "--http2-max-frame-size"),),
    )
    h2_header_table_size: int = setting(
        4096,
        kinds.integer(0),
        "Size of the HPACK dynamic table the client may make the server keep per connection "
        "(SETTINGS_HEADER_TABLE_SIZE, RFC 7541 §4.2).",
        flags=("--h2-header-table-size",),
    )
    h2_enable_connect_protocol: bool = setting(
        True,
        kinds.BOOL,
        "Offer the extended CONNECT of RFC 8441, which carries WebSockets over HTTP/2.",
        flags=("--h2-enable-connect-protocol", "--no-h2-enable-connect-protocol"),
    )
    h2_header_block_margin: int = setting(
        4096,
        kinds.integer(0),
        "Bytes of HPACK-encoded header block accepted beyond the header-list limit before the "
        "block is refused unread (CONTINUATION flood, CVE-2024-27316); encoded fields are "
        "never much smaller than the limit counts them.",
        flags=("--h2-header-block-margin",),
    )
    h2_max_continuation_frames: int = setting(
        32,
        kinds.integer(1),
        "Most frames (HEADERS and its CONTINUATIONs) one header block may span; more ends the "
        "connection with ENHANCE_YOUR_CALM (CONTINUATION flood, CVE-2024-27316).",
        flags=("--h2-max-continuation-frames",),
    )
    h2_reset_budget: int = setting(
        200,
        kinds.integer(1),
        "How many more streams a client may have reset (by it, CVE-2023-44487 Rapid Reset, or "
        "by us because it broke the protocol, CVE-2025-8671 MadeYouReset) or refused than it "
        "lets complete: each costs a token, each complete response earns one back; an empty "
        "budget ends the connection with ENHANCE_YOUR_CALM.",
        flags=("--h2-reset-budget",),
    )
    h2_control_frame_budget: int = setting(
        1000,
        kinds.integer(1),
        "Score of frames that make the server work without moving a request forward (PING "
        "CVE-2019-9512, SETTINGS CVE-2019-9515, empty frames CVE-2019-9518, PRIORITY and empty "
        "headers CVE-2019-9513/-9516, tiny WINDOW_UPDATEs, unknown types): useful frames lower "
        "it; past this the connection ends with ENHANCE_YOUR_CALM.",
        flags=("--h2-control-frame-budget",),
    )
    h2_small_window_update: int = setting(
        1024,
        kinds.integer(1),
        "A WINDOW_UPDATE smaller than this many bytes counts toward the control-frame score "
        "(zero-window dribble, CVE-2019-9511/-9517).",
        flags=("--h2-small-window-update",),
    )
    h2_max_queued_control_bytes: int = setting(
        64 * 1024,
        kinds.integer(1),
        "Bytes of replies the client's frames ask for (PING and SETTINGS ACKs, RST_STREAMs) "
        "that may wait unsent while the client does not read; more ends the connection "
        "(CVE-2019-9512/-9515). Portico also stops reading while it cannot write.",
        flags=("--h2-max-queued-control-bytes",),
    )
    h2_closed_streams_remembered: int = setting(
        256,
        kinds.integer(1),
        "Recently closed streams remembered per connection, so that frames crossing a reset "
        "are ignored rather than punished (RFC 9113 §5.1).",
        flags=("--h2-closed-streams-remembered",),
    )
    h2_write_timeout: float = setting(
        30.0,
        kinds.SECONDS,
        "Seconds a response may wait for a client that does not open its flow-control window "
        "(or opens it a few bytes at a time) before its stream is reset: the zero-window "
        "dribble of CVE-2019-9511/-9517 holds the server's memory and the app's task for no "
        "longer than this.",
        flags=("--h2-write-timeout",),
    )
