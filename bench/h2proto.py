"""Microbenchmark of the HTTP/2 protocol core, in memory: Portico's own against the h2 library.

The work per request: parse a browser-like GET (HEADERS, HPACK-encoded by h2 as a client, with its
dynamic table, 10 streams per batch as a page load sends them), produce a 200 response HEADERS
(content-type plus default date and server) and a 13-byte DATA with END_STREAM, and take the bytes
to write. Both servers see the same client bytes. Prints microseconds per request for Portico
(compiled with mypyc when that build is installed, and pure Python from a copy of the sources) and
for h2. Takes a few seconds.

    python bench/h2proto.py [--requests 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events

import portico
from portico.config import Config
from portico.protocols import http2
from portico.protocols.events import Request
from portico.protocols.http2 import H2Connection
from portico.runtime.limits import build_limits

BATCH = 10
BROWSER = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"www.example.com"),
    (b":path", b"/static/app.js?v=3"),
    (b"sec-ch-ua", b'"Chromium";v="131", "Not_A Brand";v="24"'),
    (b"sec-ch-ua-mobile", b"?0"),
    (b"sec-ch-ua-platform", b'"Linux"'),
    (
        b"user-agent",
        b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        b"Chrome/131.0.0.0 Safari/537.36",
    ),
    (b"accept", b"*/*"),
    (b"sec-fetch-site", b"same-origin"),
    (b"sec-fetch-mode", b"no-cors"),
    (b"sec-fetch-dest", b"script"),
    (b"referer", b"https://www.example.com/"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"),
    (b"accept-language", b"en-US,en;q=0.9"),
    (b"cookie", b"session=8f14e45fceea167a5a36dedd4bea2543; theme=dark"),
    (b"priority", b"u=1"),
]
BODY = b"Hello, world!"
DATE = b"Tue, 01 Dec 2026 00:00:00 GMT"


def client_bytes(requests: int) -> tuple[bytes, list[bytes]]:
    """The client's preface, then one chunk of bytes per batch of BATCH requests."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = h2.connection.H2Connection(config=config)
    client.initiate_connection()
    client.increment_flow_control_window(2**31 - 1 - 65535)  # room for every response
    preface = client.data_to_send()
    batches = []
    for _ in range(requests // BATCH):
        for _ in range(BATCH):
            client.send_headers(client.get_next_available_stream_id(), BROWSER, end_stream=True)
        batches.append(client.data_to_send())
    return preface, batches


def run_portico(preface: bytes, batches: list[bytes]) -> float:
    server = H2Connection(build_limits(Config()).h2.protocol)
    server.data_to_send()
    server.receive_data(preface)
    headers = [(b"content-type", b"text/plain")]
    start = time.perf_counter()
    for batch in batches:
        for event in server.receive_data(batch):
            if type(event) is Request:
                stream_id = event.stream_id
                server.send_headers(stream_id, 200, headers, False, DATE, b"portico")
                server.send_data(stream_id, BODY, True)
        server.data_to_send()
    return time.perf_counter() - start


def run_h2(preface: bytes, batches: list[bytes]) -> float:
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    server = h2.connection.H2Connection(config=config)
    server.initiate_connection()
    server.data_to_send()
    server.receive_data(preface)
    start = time.perf_counter()
    for batch in batches:
        for event in server.receive_data(batch):
            if isinstance(event, h2.events.RequestReceived):
                stream_id = event.stream_id
                server.send_headers(
                    stream_id,
                    [
                        (b":status", b"200"),
                        (b"content-type", b"text/plain"),
                        (b"date", DATE),
                        (b"server", b"h2"),
                    ],
                )
                server.send_data(stream_id, BODY, end_stream=True)
        server.data_to_send()
    return time.perf_counter() - start


def best_us(run: object, preface: bytes, batches: list[bytes], repeat: int) -> float:
    requests = len(batches) * BATCH
    times = [run(preface, batches) for _ in range(repeat)]  # type: ignore[operator]
    return min(times) / requests * 1e6


def compiled() -> bool:
    return not (http2.__file__ or "").endswith(".py")


def pure_copy() -> str:
    """A copy of the sources without compiled modules, for the pure-Python figure."""
    source = Path(portico.__file__).parent
    target = Path(tempfile.mkdtemp(prefix="h2proto-")) / "portico"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return str(target.parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=["portico"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    preface, batches = client_bytes(args.requests)
    ours = best_us(run_portico, preface, batches, args.repeat)
    kind = "compiled" if compiled() else "pure Python"
    if args.only:
        print(f"{ours:.2f}")
        return
    print(f"{args.requests} requests, {BATCH} streams a batch, best of {args.repeat}")
    print(f"portico ({kind}): {ours:7.2f} us/request")
    if compiled():
        path = pure_copy()
        env = {**os.environ, "PYTHONPATH": path, "PORTICO_PURE_CHECK": "1"}
        command = [sys.executable, __file__, "--only", "portico"]
        command += ["--requests", str(args.requests), "--repeat", str(args.repeat)]
        pure = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        shutil.rmtree(path)
        print(f"portico (pure Python): {float(pure.stdout):7.2f} us/request")
    theirs = best_us(run_h2, preface, batches, args.repeat)
    print(f"h2 {h2.__version__}: {theirs:7.2f} us/request")


if __name__ == "__main__":
    main()
