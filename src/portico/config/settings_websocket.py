"""The WebSocket rows of the settings table: message and queue bounds, keepalive, compression.

Inherited by ``settings.Config``; read into ``WSLimits`` in ``runtime.limits`` and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from portico.config import kinds
from portico.config.setting import gunicorn, setting, uvicorn

__all__ = ["WebSocketSettings"]


@dataclass(frozen=True)
class WebSocketSettings:
    """The WebSocket settings (a base of ``Config``; see the module docstring)."""

    # No slots of its own: several groups are bases of Config, which makes the slots for all.
    __slots__ = ()

    ws_max_message_size: int = setting(
        1048576,
        kinds.integer(0),
        "Largest WebSocket message accepted, in bytes, after decompression (0: unlimited); "
        "a larger one closes the connection with 1009 (RFC 6455 §7.4.1). 1 MiB, as the "
        "websockets library (uvicorn allows 16 MiB): one message may cost a worker this much "
        "memory times `ws_max_queue`.",
        flags=("--ws-max-message-size",),
        peers=(
            gunicorn("websocket_max_message_size", "--websocket-max-message-size"),
            uvicorn("--ws-max-size"),
        ),
    )
    ws_max_queue: int = setting(
        16,
        kinds.integer(1),
        "Most received WebSocket messages waiting for the app's `receive`; when the queue is "
        "full Portico stops reading the socket (TCP pushes back on the client). Memory per "
        "connection is bounded by this times `ws_max_message_size`.",
        flags=("--ws-max-queue",),
        peers=(uvicorn("--ws-max-queue"),),
    )
    ws_ping_interval: float = setting(
        20.0,
        kinds.SECONDS_OR_ZERO,
        "Seconds between keepalive pings on an open WebSocket (0: no pings). Pings keep "
        "proxies from closing idle connections and find clients that vanished.",
        flags=("--ws-ping-interval",),
        peers=(uvicorn("--ws-ping-interval"),),
    )
    ws_ping_timeout: float = setting(
        20.0,
        kinds.SECONDS,
        "Seconds a client has to answer a ping (else the connection closes with 1011) and to "
        "answer a close frame (else the TCP connection is dropped).",
        flags=("--ws-ping-timeout",),
        peers=(uvicorn("--ws-ping-timeout"),),
    )
    ws_per_message_deflate: bool = setting(
        True,
        kinds.BOOL,
        "Negotiate permessage-deflate compression (RFC 7692) with clients that offer it.",
        flags=("--ws-per-message-deflate", "--no-ws-per-message-deflate"),
    )
    ws_deflate_window_bits: int = setting(
        12,
        kinds.integer(9, 15),
        "Base-2 log of the deflate window, for Portico's compressor and (when the client lets "
        "the server choose, RFC 7692 §7.1.2.2) the client's. zlib's compressor keeps "
        "`2 ** (bits + 2)` bytes for it and the decompressor `2 ** bits`: at 12, 20 KiB per "
        "connection instead of zlib's 160 KiB at 15, for little loss of ratio on typical "
        "messages (the websockets library's default too).",
        flags=("--ws-deflate-window-bits",),
    )
    ws_deflate_memory_level: int = setting(
        5,
        kinds.integer(1, 9),
        "zlib memory level of the compressor (1-9): its internal state takes "
        "`2 ** (level + 9)` bytes, 16 KiB at 5 instead of 128 KiB at zlib's default 8.",
        flags=("--ws-deflate-memory-level",),
    )
    ws_write_limit: int = setting(
        65536,
        kinds.integer(1),
        "High-water mark of a WebSocket's write buffer, in bytes: above it the app's `send` "
        "waits until the client has read enough, so a slow client slows the app instead of "
        "growing the worker's memory.",
        flags=("--ws-write-limit",),
    )
