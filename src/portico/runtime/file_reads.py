"""Sending a file where ``sendfile`` cannot, or need not: reads off the event loop, framed by the
protocol, and small files the page cache holds read at once.

TLS encrypts in user space and FastCGI wraps the body in records, so their streams read the file
in the context's reading threads, a piece ahead of the one being written, and hand each piece to
the stream's own ``write`` (which frames it and applies the client's backpressure).
"""

from __future__ import annotations

import os
from typing import Final

from portico.errors import AppError
from portico.gateways.stream import IO_UNIT, ClientDisconnected, Stream
from portico.runtime.context import Driver

__all__ = ["INLINE_FILE", "read_cached", "send_file_by_reads"]

#: Files up to this size are read (when the page cache has them) and written with the head.
INLINE_FILE: Final = 64 * 1024


def read_cached(fd: int, offset: int, count: int) -> bytes | None:
    """``count`` bytes of the file at ``offset`` if the page cache holds them all, else ``None``:
    ``RWF_NOWAIT`` makes the read refuse rather than wait for a disk (Linux 4.14), so the event
    loop never blocks on it; a short read (the file shrank) is ``None`` too, and the caller's
    slower path reports it."""
    if count == 0:
        return b""
    if not _NOWAIT:
        return None  # no way to read without waiting for a disk: leave it to sendfile
    buffer = bytearray(count)
    try:
        got = os.preadv(fd, [buffer], offset, _NOWAIT)
    except OSError:  # not cached (EAGAIN), or a file system without RWF_NOWAIT
        return None
    return bytes(buffer) if got == count else None


_NOWAIT: Final = getattr(os, "RWF_NOWAIT", 0)


async def send_file_by_reads(
    stream: Stream, conn: Driver, fd: int, offset: int, count: int
) -> None:
    """``count`` bytes of ``fd`` from ``offset`` as the rest of ``stream``'s body, then its end.

    A file that turns out shorter aborts the exchange (``stream.abort()``: the connection for
    HTTP/1.1 and the gateways, the stream for HTTP/2), so a truncated body never looks whole.
    """
    loop = conn.loop
    pool = conn.ctx.file_reader()
    end = offset + count
    position = offset
    pending = loop.run_in_executor(pool, os.pread, fd, min(IO_UNIT, count), position)
    try:
        while True:
            data = await pending
            position += len(data)
            left = end - position
            if not data and left > 0:
                stream.abort()
                raise AppError(f"file ended after {position - offset} of {count} bytes")
            if left > 0:
                pending = loop.run_in_executor(pool, os.pread, fd, min(IO_UNIT, left), position)
            waiter = stream.write(data, left <= 0)
            if waiter is not None:
                await waiter
            if stream.disconnected:  # HTTP/2: the stream was reset while the window was shut
                raise ClientDisconnected("client disconnected")
            if left <= 0:
                return
    finally:
        pending.cancel()  # a read ahead nobody will write (the client left)
