"""Helpers for the HTTP/2 tests: the ``h2`` library as a client, raw frames from ``hyperframe``."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from portico.config import Config
from portico.protocols.events import Request
from portico.protocols.h2_events import H2Event
from portico.protocols.h2_frames import PREFACE
from portico.protocols.http2 import H2Connection, H2Limits
from portico.runtime.limits import build_limits


def h2_limits(**fields: Any) -> H2Limits:
    """The limits a server has by default (from the settings table), with ``fields`` changed."""
    return dataclasses.replace(build_limits(Config()).h2.protocol, **fields)


GET = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":path", b"/"),
    (b":authority", b"example.com"),
]


def request_headers(method: bytes = b"GET", path: bytes = b"/", **extra: bytes) -> list[Any]:
    head = [(b":method", method), (b":scheme", b"https"), (b":path", path)]
    head.append((b":authority", b"example.com"))
    return head + [(k.replace("_", "-").encode(), v) for k, v in extra.items()]


def feed(server: H2Connection, data: bytes, mode: str, seed: int = 0) -> list[H2Event]:
    """Feed ``data`` whole, byte by byte, or in seeded random pieces."""
    if mode == "whole":
        return server.receive_data(data)
    events: list[H2Event] = []
    if mode == "bytes":
        for i in range(len(data)):
            events += server.receive_data(data[i : i + 1])
        return events
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 40)
        events += server.receive_data(data[pos : pos + step])
        pos += step
    return events


class Pair:
    """An ``h2`` client and a Portico server connection, joined in memory."""

    def __init__(
        self, limits: H2Limits | None = None, mode: str = "whole", **client_settings: int
    ) -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(config=config)
        self.client.initiate_connection()
        if client_settings:
            codes = h2.settings.SettingCodes
            self.client.update_settings(
                {codes[name.upper()]: value for name, value in client_settings.items()}
            )
        self.server = H2Connection(limits or h2_limits())
        self.mode = mode
        self.seed = 0
        self.client_events: list[h2.events.Event] = []
        self.to_client()
        self.to_server()

    def to_server(self) -> list[H2Event]:
        self.seed += 1
        events = feed(self.server, self.client.data_to_send(), self.mode, self.seed)
        self.to_client()
        return events

    def to_client(self) -> list[h2.events.Event]:
        events = self.client.receive_data(self.server.data_to_send())
        self.client_events += events
        return events

    def request(self, headers: list[Any] | None = None, end_stream: bool = True) -> int:
        stream_id: int = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, headers or GET, end_stream=end_stream)
        return stream_id

    def of_type(self, kind: type) -> list[Any]:
        return [e for e in self.client_events if isinstance(e, kind)]


def preface(settings: dict[int, int] | None = None) -> bytes:
    """What a raw client sends first: the preface and its SETTINGS."""
    frame = SettingsFrame(0)
    frame.settings = settings or {}
    return PREFACE + frame.serialize()


def headers_frame(
    stream_id: int, headers: Iterable[Any], end_stream: bool = True, encoder: Any = None
) -> bytes:
    frame = HeadersFrame(stream_id)
    frame.data = (encoder or hpack.Encoder()).encode(list(headers))
    frame.flags.add("END_HEADERS")
    if end_stream:
        frame.flags.add("END_STREAM")
    return bytes(frame.serialize())


def raw_server(limits: H2Limits | None = None, settings: dict[int, int] | None = None) -> Any:
    server = H2Connection(limits or h2_limits())
    assert server.receive_data(preface(settings)) == []
    server.data_to_send()
    return server


def frames(data: bytes) -> Iterator[Frame]:
    """Parse what the server wrote with ``hyperframe``."""
    pos = 0
    while pos < len(data):
        frame, length = Frame.parse_frame_header(memoryview(data[pos : pos + 9]))
        frame.parse_body(memoryview(data[pos + 9 : pos + 9 + length]))
        pos += 9 + length
        yield frame


def goaway_code(data: bytes) -> int | None:
    for frame in frames(data):
        if isinstance(frame, GoAwayFrame):
            return int(frame.error_code)
    return None


def resets(data: bytes) -> dict[int, int]:
    return {f.stream_id: f.error_code for f in frames(data) if isinstance(f, RstStreamFrame)}


def requests(events: Iterable[H2Event]) -> list[Request]:
    return [e for e in events if isinstance(e, Request)]
