"""CPU per request of the uwsgi and FastCGI protocol cores: parse what nginx sends, serialize a
response. No sockets, no app; HTTP/1.1's core (``H1Connection``) on the same request for scale.

The requests are the bytes nginx 1.22 writes with Debian's ``uwsgi_params`` / ``fastcgi_params``
for ``GET /hello?x=1`` with three client headers. Each figure is the best of ``--rounds`` runs.
It also times FastCGI response records padded to 8 bytes (the spec's recommendation, §3.3)
against unpadded ones, the choice ``protocols/fastcgi_records.py`` explains.

    python bench/gwproto.py [--requests 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from portico.config import Config
from portico.protocols import fastcgi_records
from portico.protocols.fastcgi import FastCGIConnection
from portico.protocols.http11 import H1Connection
from portico.protocols.uwsgi import UwsgiConnection
from portico.runtime.limits import build_limits

LIMITS = build_limits(Config())

VARS = [
    (b"QUERY_STRING", b"x=1"),
    (b"REQUEST_METHOD", b"GET"),
    (b"CONTENT_TYPE", b""),
    (b"CONTENT_LENGTH", b""),
    (b"REQUEST_URI", b"/hello?x=1"),
    (b"PATH_INFO", b"/hello"),
    (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"REQUEST_SCHEME", b"http"),
    (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"REMOTE_PORT", b"40312"),
    (b"SERVER_PORT", b"8080"),
    (b"SERVER_NAME", b"example.test"),
    (b"HTTP_HOST", b"example.test"),
    (b"HTTP_USER_AGENT", b"curl/7.88.1"),
    (b"HTTP_ACCEPT", b"*/*"),
]
FASTCGI_EXTRA = [
    (b"SCRIPT_NAME", b"/hello"),
    (b"DOCUMENT_URI", b"/hello"),
    (b"GATEWAY_INTERFACE", b"CGI/1.1"),
    (b"SERVER_SOFTWARE", b"nginx/1.22.1"),
    (b"REMOTE_USER", b""),
    (b"SERVER_ADDR", b"127.0.0.1"),
    (b"REDIRECT_STATUS", b"200"),
]
HEADERS = [(b"content-type", b"text/plain")]
BODY = b"Hello, world!"
DATE = b"Mon, 01 Jan 2024 00:00:00 GMT"


def uwsgi_packet() -> bytes:
    block = b"".join(
        len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v for k, v in VARS
    )
    return b"\x00" + len(block).to_bytes(2, "little") + b"\x00" + block


def fastcgi_request() -> bytes:
    def record(rtype: int, content: bytes) -> bytes:
        pad = -len(content) % 8
        return struct.pack(">BBHHBx", 1, rtype, 1, len(content), pad) + content + b"\0" * pad

    params = b"".join(bytes((len(k), len(v))) + k + v for k, v in VARS[:5] + FASTCGI_EXTRA)
    params += b"".join(bytes((len(k), len(v))) + k + v for k, v in VARS[5:])
    begin = record(1, b"\x00\x01\x01\x00\x00\x00\x00\x00")
    return begin + record(4, params) + record(4, b"") + record(5, b"")


H1_REQUEST = (
    b"GET /hello?x=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: curl/7.88.1\r\n"
    b"Accept: */*\r\n\r\n"
)


def bench_uwsgi(requests: int) -> float:
    data = uwsgi_packet()
    start = time.perf_counter()
    for _ in range(requests):
        conn = UwsgiConnection(LIMITS.uwsgi)
        conn.receive_data(data)
        conn.response_start(200, HEADERS, BODY, date=DATE)
    return time.perf_counter() - start


def bench_fastcgi(requests: int) -> float:
    data = fastcgi_request()
    conn = FastCGIConnection(LIMITS.fastcgi)  # one kept connection (fastcgi_keep_conn on)
    start = time.perf_counter()
    for _ in range(requests):
        conn.receive_data(data)
        conn.response_start(200, HEADERS, BODY, date=DATE)
    return time.perf_counter() - start


def bench_h1(requests: int) -> float:
    conn = H1Connection(LIMITS.h1)
    line = b"date: %s\r\n" % DATE
    start = time.perf_counter()
    for _ in range(requests):
        conn.receive_data(H1_REQUEST)
        conn.response_start(200, HEADERS, BODY, date_line=line)
    return time.perf_counter() - start


def pure_python_records() -> Callable[[int, list[bytes], bool], fastcgi_records.Chunks]:
    """``stdout_records`` loaded from its source, so that it runs interpreted like the padded
    variant below: the two are compared on equal terms."""
    path = Path(fastcgi_records.__file__).with_name("fastcgi_records.py")
    spec = importlib.util.spec_from_file_location("fastcgi_records_source", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    encode: Callable[[int, list[bytes], bool], fastcgi_records.Chunks] = module.stdout_records
    return encode


def padded_records(request_id: int, pieces: list[bytes], end: bool) -> fastcgi_records.Chunks:
    """``stdout_records`` with each record padded to a multiple of 8 bytes (§3.3)."""
    header = struct.Struct(">BBHHBx").pack
    out: fastcgi_records.Chunks = []
    for data in pieces:
        view = memoryview(data)
        for at in range(0, len(data), 65528):  # the largest multiple of 8 under 65536
            piece = view[at : at + 65528] if len(data) > 65528 else data
            pad = -len(piece) % 8
            if len(piece) <= 16384:
                out.append(header(1, 6, request_id, len(piece), pad) + bytes(piece) + b"\0" * pad)
            else:
                out += (header(1, 6, request_id, len(piece), pad), piece)
                if pad:
                    out.append(b"\0" * pad)
    if end:
        out.append(fastcgi_records.stdout_end(request_id))
    return out


def bench_records(
    encode: Callable[[int, list[bytes], bool], fastcgi_records.Chunks], rounds: int
) -> tuple[float, float, int]:
    small = [b"x" * 77]
    large = [b"y" * 100_003] * 10
    start = time.perf_counter()
    for _ in range(rounds * 100):
        encode(1, small, True)
    small_time = (time.perf_counter() - start) / (rounds * 100)
    start = time.perf_counter()
    for _ in range(rounds):
        chunks = encode(1, large, True)
    large_time = (time.perf_counter() - start) / rounds
    return small_time, large_time, len(chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    compiled = str(sys.modules[UwsgiConnection.__module__].__file__).endswith(".so")
    print(f"portico protocol cores, {'compiled (mypyc)' if compiled else 'pure Python'}")
    for name, bench in (("uwsgi", bench_uwsgi), ("fastcgi", bench_fastcgi), ("http/1.1", bench_h1)):
        best = min(bench(args.requests) for _ in range(args.rounds))
        print(f"  {name:9} parse + response: {best / args.requests * 1e6:6.2f} us/request")
    print("  FastCGI STDOUT records, both pure Python:")
    for name, encode in (("unpadded", pure_python_records()), ("padded", padded_records)):
        small, large, buffers = bench_records(encode, 200)
        print(
            f"    {name:8}: {small * 1e6:5.2f} us for 77 B, "
            f"{large * 1e6:6.1f} us and {buffers} buffers for 10 x 100 KB"
        )


if __name__ == "__main__":
    main()
