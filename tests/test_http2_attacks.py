"""HTTP/2 attacks against a real server, with raw frames over sockets, in bounded loops.

Each test checks three things: the connection is ended with the right code (or the work stays
bounded), the worker's resident memory stays flat, and another client is served meanwhile.
The bounds are settings (``h2_*``); see ``docs/settings.md`` for the CVE each one answers.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from typing import ClassVar

import hpack
import pytest

from tests.conftest import ServerFactory, ServerProcess, rss_kib
from tests.h2client import H2Client

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0,
    0x1,
    0x3,
    0x4,
    0x6,
    0x7,
    0x8,
    0x9,
)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
ENHANCE_YOUR_CALM, REFUSED_STREAM, CANCEL = 0xB, 0x7, 0x8
#: how much a worker's RSS may grow during an attack (allocator noise, the first requests)
RSS_SLACK_KIB = 16 * 1024


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id)


def frame_with(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return frame(kind, flags, stream_id, payload) + payload


class Raw:
    """A client that speaks frames: the preface, then whatever the test writes."""

    #: every one made, closed after each test
    opened: ClassVar[list[Raw]] = []

    def __init__(self, port: int, settings: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        Raw.opened.append(self)
        self.encoder = hpack.Encoder()
        self.buf = b""
        self.frames: list[tuple[int, int, int, bytes]] = []
        self.closed = False
        self.send(PREFACE + frame_with(SETTINGS, 0, 0, settings))
        self.next_id = 1
        # the server's SETTINGS, acknowledged now: an ACK written later could land inside a
        # header block the test is sending, which is a different error (PROTOCOL_ERROR)
        deadline = time.monotonic() + 5
        while not self.frames and not self.closed and time.monotonic() < deadline:
            self.read(0.5)

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True
            return False
        return True

    def head(
        self, path: str = "/", end: bool = True, extra: list[tuple[str, str]] | None = None
    ) -> bytes:
        stream_id = self.next_id
        self.next_id += 2
        block = self.encoder.encode(
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "t"),
                *(extra or []),
            ]
        )
        return frame_with(HEADERS, END_HEADERS | (END_STREAM if end else 0), stream_id, block)

    def told_off(self) -> bool:
        """Whether a GOAWAY has come (looking without waiting): the flood loops stop then, or
        the server's close would reset the connection and lose the GOAWAY from our buffer."""
        self.read(0.0)
        return self.closed or any(kind == GOAWAY for kind, _, _, _ in self.frames)

    def read(self, timeout: float = 0.2) -> None:
        """Read what has arrived (for up to ``timeout``); ACK the server's SETTINGS."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except (TimeoutError, BlockingIOError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self.buf += chunk
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            kind, flags = self.buf[3], self.buf[4]
            stream_id = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            self.frames.append((kind, flags, stream_id, self.buf[9 : 9 + length]))
            if kind == SETTINGS and not flags & ACK:
                self.send(frame_with(SETTINGS, ACK, 0))
            self.buf = self.buf[9 + length :]

    def goaway_code(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes; the code of its last GOAWAY (None if it sent none)."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.read(0.5)
        codes = [int.from_bytes(p[4:8], "big") for k, _, _, p in self.frames if k == GOAWAY]
        return codes[-1] if codes else None

    def resets(self) -> dict[int, int]:
        return {s: int.from_bytes(p, "big") for k, _, s, p in self.frames if k == RST_STREAM}

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(autouse=True)
def _close_raw_clients() -> Iterator[None]:
    yield
    while Raw.opened:
        Raw.opened.pop().close()


@pytest.fixture
def slow_server(serve: ServerFactory) -> Iterator[ServerProcess]:
    yield serve("asgi_apps:slow", "--workers", "1")


def _still_serves(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        assert client.get("/?0").status == 200


def _memory_is_flat(server: ServerProcess, before: int) -> None:
    assert rss_kib(server.worker_pid) - before < RSS_SLACK_KIB


def test_rapid_reset_cve_2023_44487(slow_server: ServerProcess) -> None:
    before = rss_kib(slow_server.worker_pid)
    raw = Raw(slow_server.port)
    for _ in range(2000):  # far past the reset budget (200)
        stream_id = raw.next_id
        if not raw.send(
            raw.head("/?5") + frame_with(RST_STREAM, 0, stream_id, struct.pack(">I", CANCEL))
        ):
            break
    assert raw.goaway_code() == ENHANCE_YOUR_CALM
    _still_serves(slow_server)
    _memory_is_flat(slow_server, before)


def test_continuation_flood_cve_2024_27316(slow_server: ServerProcess) -> None:
    before = rss_kib(slow_server.worker_pid)
    raw = Raw(slow_server.port)
    raw.send(frame_with(HEADERS, 0, 1, raw.encoder.encode([(":method", "GET")])))
    for i in range(10_000):  # never END_HEADERS
        if not raw.send(frame_with(CONTINUATION, 0, 1, b"\x40\x01a\x01b" * (i % 50 + 1))):
            break
        if raw.told_off():
            break
    assert raw.goaway_code() == ENHANCE_YOUR_CALM
    _still_serves(slow_server)
    _memory_is_flat(slow_server, before)


def test_made_you_reset_cve_2025_8671(slow_server: ServerProcess) -> None:
    """Streams the client makes the server reset (a zero WINDOW_UPDATE is a stream error):
    they cost the same budget as the client's own resets."""
    before = rss_kib(slow_server.worker_pid)
    raw = Raw(slow_server.port)
    for _ in range(2000):
        stream_id = raw.next_id
        zero = frame_with(WINDOW_UPDATE, 0, stream_id, b"\x00" * 4)
        if not raw.send(raw.head("/?5") + zero) or raw.told_off():
            break
    assert raw.goaway_code() == ENHANCE_YOUR_CALM
    _still_serves(slow_server)
    _memory_is_flat(slow_server, before)


def test_hpack_bomb_is_refused_per_stream(slow_server: ServerProcess) -> None:
    """One 4 KiB header in the dynamic table, then requests that repeat it by index: each would
    decode to megabytes; each is refused with 431 once past the header-list bound."""
    before = rss_kib(slow_server.worker_pid)
    raw = Raw(slow_server.port)
    big = raw.encoder.encode(
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "t"),
            ("x-bomb", "b" * 4000),
        ]
    )
    raw.send(frame_with(HEADERS, END_HEADERS | END_STREAM, raw.next_id, big))
    raw.next_id += 2
    index = bytes([0x80 | 62])  # the newest dynamic-table entry: x-bomb
    for _ in range(20):
        block = raw.encoder.encode(
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "t")]
        )
        raw.send(frame_with(HEADERS, END_HEADERS | END_STREAM, raw.next_id, block + index * 4000))
        raw.next_id += 2
    deadline = time.monotonic() + 10
    statuses: list[bytes] = []
    while len(statuses) < 21 and time.monotonic() < deadline and not raw.closed:
        raw.read()
        statuses = [p for k, _, s, p in raw.frames if k == HEADERS]
    assert len(statuses) == 21  # every request answered, the connection kept
    assert raw.goaway_code(timeout=0.5) is None
    _still_serves(slow_server)
    _memory_is_flat(slow_server, before)


@pytest.mark.parametrize(
    "flood",
    [
        frame_with(PING, 0, 0, b"12345678"),
        frame_with(SETTINGS, 0, 0),
        frame_with(DATA, 0, 1),  # empty DATA on an open stream
    ],
    ids=["ping-cve-2019-9512", "settings-cve-2019-9515", "empty-data-cve-2019-9518"],
)
def test_control_frame_floods_end_the_connection(slow_server: ServerProcess, flood: bytes) -> None:
    before = rss_kib(slow_server.worker_pid)
    raw = Raw(slow_server.port)
    raw.send(raw.head("/?5", end=False))
    for _ in range(200):  # 100 frames a write, 20,000 at most; the budget is 1,000
        if not raw.send(flood * 100) or raw.told_off():
            break
    assert raw.goaway_code() == ENHANCE_YOUR_CALM
    _still_serves(slow_server)
    _memory_is_flat(slow_server, before)


def test_a_client_that_never_reads_stops_the_server_reading(serve: ServerFactory) -> None:
    """PINGs whose ACKs are never read, with the control-frame budget out of the way: the
    replies the server owes stay bounded (``h2_max_queued_control_bytes``) instead of growing
    with the flood, and so does its memory."""
    slow_server = serve("asgi_apps:slow", "--h2-control-frame-budget", "100000000")
    before = rss_kib(slow_server.worker_pid)
    sock = socket.create_connection(("127.0.0.1", slow_server.port), timeout=2)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(PREFACE + frame_with(SETTINGS, 0, 0) + frame_with(SETTINGS, ACK, 0))
    ping = frame_with(PING, 0, 0, b"12345678") * 1000
    sent = 0
    try:
        for _ in range(2000):  # up to 34 MB of PINGs
            sock.sendall(ping)
            sent += len(ping)
    except (TimeoutError, OSError):
        pass
    sock.close()
    # the replies owed pass max_queued_control_bytes within one read: the connection ends
    assert slow_server.wait_for_log("HTTP/2: client does not read our replies")
    _still_serves(slow_server)
    _memory_is_flat(slow_server, before)


def test_zero_window_dribble_cve_2019_9511_9517(serve: ServerFactory) -> None:
    """A client that opens its window a byte at a time (or never): the stalled response is reset
    after ``h2_write_timeout``, and memory stays flat."""
    server = serve("asgi_apps:big", "--h2-write-timeout", "1")
    before = rss_kib(server.worker_pid)
    never = Raw(server.port, settings=struct.pack(">HI", 0x4, 0))  # INITIAL_WINDOW_SIZE 0
    dribble = Raw(server.port, settings=struct.pack(">HI", 0x4, 1))
    never.send(never.head("/?8388608"))
    dribble.send(dribble.head("/?8388608"))
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and not (1 in never.resets() and 1 in dribble.resets()):
        dribble.send(frame_with(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1)))
        never.read(0.05)
        dribble.read(0.05)
    assert never.resets().get(1) == CANCEL
    assert dribble.resets().get(1) == CANCEL
    _still_serves_big(server)
    _memory_is_flat(server, before)


def _still_serves_big(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        assert len(client.get("/?100000").body) == 100000


def test_stream_limit_abuse(serve: ServerFactory) -> None:
    """More streams at once than SETTINGS_MAX_CONCURRENT_STREAMS: the excess is refused (the
    client may retry), and a client that keeps going past the budget is told to calm down."""
    server = serve("asgi_apps:slow", "--h2-max-concurrent-streams", "10")
    before = rss_kib(server.worker_pid)
    raw = Raw(server.port)
    raw.send(b"".join(raw.head("/?3") for _ in range(15)))
    deadline = time.monotonic() + 5
    while len(raw.resets()) < 5 and time.monotonic() < deadline:
        raw.read()
    assert sorted(raw.resets().values()) == [REFUSED_STREAM] * 5
    for _ in range(100):
        if not raw.send(b"".join(raw.head("/?3") for _ in range(50))) or raw.told_off():
            break
    assert raw.goaway_code() == ENHANCE_YOUR_CALM
    _still_serves(server)
    _memory_is_flat(server, before)
