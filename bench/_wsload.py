"""A WebSocket echo load generator: N connections, each sending one message and waiting for its
echo before the next (closed loop, like wrk's one request in flight per connection).

    python bench/_wsload.py --port 8000 --connections 64 --duration 10 --size 64

Prints one JSON object: messages per second, latency percentiles (ms), errors. It is written to
be much cheaper per message than any server under test, so that one CPU of it can saturate one
CPU of the server: every frame it sends is built once (RFC 6455 §5.3 lets a client pick any
masking key, so one fixed key serves every frame), and it reads the server's unmasked frames
straight from the socket without a WebSocket library. It offers no extension, so no server
compresses. Uses uvloop when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import sys
import time

MASK = b"\x37\xfa\x21\x3d"


def masked_text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    key = (MASK * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload) ^ int.from_bytes(key)).to_bytes(n) if n else b""
    return head + MASK + masked


class EchoClient(asyncio.Protocol):
    def __init__(self, stats: Stats, frame: bytes, payload_len: int, path: str) -> None:
        self.stats = stats
        self.frame = frame
        self.payload_len = payload_len
        self.path = path
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.sent_at = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16))
        self.transport.write(  # type: ignore[union-attr]
            b"GET %s HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (self.path.encode(), key)
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.stats.errors += 1
                self.ready.set_exception(RuntimeError(buffer[:60].decode(errors="replace")))
                return
            self.upgraded = True
            buffer = buffer[end + 4 :]
            self.ready.set_result(None)
        expected = 2 + self.payload_len + (2 if self.payload_len >= 126 else 0)
        while len(buffer) >= expected:  # the echo of our one message in flight
            buffer = buffer[expected:]
            now = time.perf_counter_ns()
            stats = self.stats
            if stats.recording:
                stats.count += 1
                stats.latencies.append(now - self.sent_at)
            if stats.running:
                self.send()
        self.buffer = buffer

    def send(self) -> None:
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.frame)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stats.running:
            self.stats.errors += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the handshake"))


class Stats:
    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.latencies: list[int] = []
        self.recording = False
        self.running = True


async def run(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    payload = b"x" * args.size
    frame = masked_text_frame(payload)
    stats = Stats()
    clients: list[EchoClient] = []
    for _ in range(args.connections):
        _, client = await loop.create_connection(
            lambda: EchoClient(stats, frame, len(payload), args.path), args.host, args.port
        )
        clients.append(client)
    await asyncio.gather(*(c.ready for c in clients))
    for client in clients:
        client.send()
    await asyncio.sleep(args.warmup)
    stats.recording = True
    started = time.perf_counter()
    await asyncio.sleep(args.duration)
    stats.recording = False
    elapsed = time.perf_counter() - started
    stats.running = False
    for client in clients:
        if client.transport is not None:
            client.transport.abort()
    latencies = sorted(stats.latencies)

    def pct(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6

    return {
        "messages": stats.count,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(stats.count / elapsed, 1),
        "p50_ms": round(pct(0.50), 3),
        "p99_ms": round(pct(0.99), 3),
        "errors": stats.errors,
        "connections": args.connections,
        "size": args.size,
    }


def main() -> int:
    p = argparse.ArgumentParser(description="WebSocket echo load generator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/ws")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--size", type=int, default=64, help="bytes of text per message (< 65536)")
    args = p.parse_args()
    try:
        import uvloop  # noqa: PLC0415 - optional

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(json.dumps(runner(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
