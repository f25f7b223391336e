"""One request/response exchange on an HTTP/1.1 connection: the gateways' :class:`Stream`.

The driver (``http1``) creates one per request and feeds it. What the stream needs of its driver
is :class:`H1Owner`, declared here so that this module does not depend on the driver's (the
driver subclasses it); both are compiled together.
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any, Final

from portico.errors import AppError
from portico.gateways.stream import IO_UNIT, ClientDisconnected, Stream, Tunnel, TunnelOwner
from portico.protocols.events import Headers, Request, StreamError
from portico.protocols.http11 import H1Connection
from portico.runtime.context import Driver
from portico.runtime.file_reads import INLINE_FILE, read_cached, send_file_by_reads

__all__ = ["H1Owner", "H1Stream"]

# A client that went away while a file was being sent to it.
_GONE: Final = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF})
# How long sendfile waits for the socket before it tries again anyway. The wait needs a bound:
# a client that half-closed and then reset is reported by the event loop as an error on the
# watcher, with no callback (libuv stops a poll handle on POLLERR), and the transport, done
# reading after the EOF, never hears of it; the next sendfile then fails with EPIPE.
_SENDFILE_RECHECK: Final = 1.0


class H1Owner(Driver):
    """What an :class:`H1Stream` asks of its connection (``http1.H1Driver`` implements it)."""

    proto: H1Connection

    def send_continue(self, stream: H1Stream) -> None:
        raise NotImplementedError

    def body_consumed(self) -> None:
        raise NotImplementedError

    def response_done(self, stream: H1Stream) -> None:
        raise NotImplementedError

    def decline_upgrade(self) -> None:
        raise NotImplementedError

    def detach(self) -> bytes:
        """Give the transport up to an upgrade; return the bytes after the handshake."""
        raise NotImplementedError


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class H1Stream(Stream):
    """One request/response exchange on an HTTP/1.1 connection (implements ``gateways.Stream``)."""

    # Defaults live on the class: creating a stream (once per request) sets only what differs.
    status = 0
    body_error: StreamError | None = None
    _reader: asyncio.Future[None] | None = None
    _disconnect_waiter: asyncio.Future[None] | None = None
    _file_waiter: asyncio.Future[None] | None = None
    _started = False
    _complete = False
    _eof = False

    def __init__(self, conn: H1Owner, request: Request) -> None:
        self.conn = conn
        self.request = request
        self.client = conn.client
        self.server = conn.sockname
        self.scheme = conn.scheme
        self.tls = conn.tls
        if conn.proxied:
            self.proxied = True
        self._chunks: list[bytes] = []
        self._body_done = not request.has_body

    # --- fed by the driver ---------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.buffered += len(data)
        self._wake_reader()

    def feed_end(self) -> None:
        self._body_done = True
        self._wake_reader()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)

    def client_eof(self) -> None:
        """The client stopped sending. It may still read (a half-close), so responses can still
        be written, but an app waiting for ``http.disconnect`` is told now: for most clients EOF
        means they are gone, and long-polling apps must not wait forever."""
        self._eof = True
        self._wake_reader()
        waiter = self._disconnect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def lost(self) -> None:
        """The connection is gone (or unusable): wake everything that waits on it."""
        self.disconnected = True
        self._wake_reader()
        waiter = self._disconnect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        waiter = self._file_waiter
        if waiter is not None:
            _wake(waiter)

    # --- the Stream seam -------------------------------------------------------

    def read(self) -> tuple[bytes, bool] | None:
        chunks = self._chunks
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self.buffered = 0
            self.conn.body_consumed()
            return data, not self._body_done
        if self._body_done and not self.body_error:
            return b"", False
        if not self.disconnected and not self._eof:
            self.conn.send_continue(self)
        return None

    def wait_readable(self) -> asyncio.Future[None]:
        fut = self.conn.loop.create_future()
        if self._chunks or self._body_done or self.disconnected or self._eof:
            fut.set_result(None)
        else:
            self._reader = fut
        return fut

    def wait_disconnect(self) -> asyncio.Future[None]:
        fut = self.conn.loop.create_future()
        if self.disconnected or self._complete or self._eof:
            fut.set_result(None)
        else:
            self._disconnect_waiter = fut
        return fut

    def start(
        self, status: int, headers: Headers, body: bytes, end: bool, reason: bytes = b""
    ) -> Any:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        ctx = conn.ctx
        if ctx.extra_headers or self.request_id:
            headers = ctx.response_fields(self, headers)
        self.response_headers = headers
        chunks = conn.proto.response_start(
            status, headers, body, end=end, date=ctx.date, server=ctx.server_name, reason=reason
        )
        self._started = True
        self.status = status
        self.sent_bytes += len(body)
        conn.write(chunks)
        if end:
            self._finish()
        return conn.drain_waiter()

    def write(self, body: bytes, end: bool) -> Any:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        try:
            chunks = conn.proto.response_body(body, end=end)
        except AppError:
            conn.abort()  # the head is out: a truncated or overlong body must not look whole
            raise
        self.sent_bytes += len(body)
        if chunks:
            conn.write(chunks)
        if end:
            self._finish()
        return conn.drain_waiter()

    def end_with_trailers(self, trailers: Headers) -> Any:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        conn = self.conn
        conn.write(conn.proto.response_end(trailers))
        self._finish()
        return conn.drain_waiter()

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        if count <= INLINE_FILE:
            data = read_cached(fd, offset, count)
            if data is not None:
                # a small file the page cache holds: one write with the head, no thread hop,
                # no sendfile dance (static files are mostly this)
                waiter = self.write(data, True)
                if waiter is not None:
                    await waiter
                return
        if self.conn.sendfile_fd < 0:
            # TLS encrypts in user space: no sendfile
            await send_file_by_reads(self, self.conn, fd, offset, count)
        else:
            await self._send_file_native(fd, offset, count)

    async def _send_file_native(self, fd: int, offset: int, count: int) -> None:
        """``os.sendfile`` on the socket, once everything written before has left: the kernel
        copies from the page cache, and the event loop only waits for the socket to take more."""
        conn = self.conn
        try:
            framing = conn.proto.response_file(count, end=True)
        except AppError:
            conn.abort()  # the head is out
            raise
        if framing is None:  # HEAD, 204, 304: the file is not sent
            self._finish()
            return
        before, after = framing
        if before:
            conn.write([before])
        conn.flush()
        await self._written()
        sent = await self._sendfile(fd, offset, count)
        conn.ctx.bytes_out += sent
        if sent < count:
            conn.abort()  # the file shrank: a truncated body must not look whole
            raise AppError(f"file ended after {sent} of {count} bytes")
        self.sent_bytes += sent
        if after:
            conn.write([after])
        self._finish()

    async def _written(self) -> None:
        """Wait until the transport has handed everything to the kernel: with a high-water mark
        of 0 it pauses the driver until its buffer is empty, and ``resume_writing`` says so."""
        conn = self.conn
        transport = conn.transport
        if transport is None or conn.closed or self.disconnected:
            raise ClientDisconnected("client disconnected")
        if transport.get_write_buffer_size() == 0:
            return
        transport.set_write_buffer_limits(high=0)
        try:
            waiter = conn.drain_waiter()
            if waiter is not None:
                await waiter
        finally:
            if not conn.closed:
                transport.set_write_buffer_limits(high=IO_UNIT)
        if self.disconnected:
            raise ClientDisconnected("client disconnected")

    async def _sendfile(self, fd: int, offset: int, count: int) -> int:
        conn = self.conn
        loop = conn.loop
        # The transport owns the socket and writes nothing meanwhile (this is the response).
        # Its descriptor is used only while the transport is not closing (so the number cannot
        # belong to another connection yet); waiting for the socket to take more needs a
        # duplicate, since the loop refuses a second watcher on the transport's descriptor.
        sock = -1
        sent = 0
        try:
            while sent < count:
                transport = conn.transport
                if self.disconnected or transport is None or transport.is_closing():
                    raise ClientDisconnected("client disconnected")
                try:
                    done = os.sendfile(conn.sendfile_fd, fd, offset + sent, count - sent)
                except BlockingIOError:
                    if sock < 0:
                        sock = os.dup(conn.sendfile_fd)
                    waiter = loop.create_future()
                    self._file_waiter = waiter
                    loop.add_writer(sock, _wake, waiter)
                    recheck = loop.call_later(_SENDFILE_RECHECK, _wake, waiter)
                    try:
                        await waiter  # the socket takes more, lost() woke us, or time to look
                    finally:
                        recheck.cancel()
                        loop.remove_writer(sock)
                        self._file_waiter = None
                    continue
                except OSError as exc:
                    if exc.errno in _GONE:
                        # the transport may not know yet (it stopped reading at the client's
                        # EOF): drop the connection, or it would stay open with nobody on it
                        self.conn.abort()
                        raise ClientDisconnected("client disconnected") from None
                    raise
                if done == 0:
                    break  # the file is shorter than it was
                sent += done
        finally:
            if sock >= 0:
                os.close(sock)
        return sent

    def response_started(self) -> bool:
        return self._started

    def response_complete(self) -> bool:
        return self._complete

    def abort(self) -> None:
        self.conn.abort()

    def app_finished(self) -> None:
        self.conn.ctx.request_done(self)

    def upgrade_requested(self) -> bool:
        return self.conn.proto.upgrade_held == self.request.stream_id

    def decline_upgrade(self) -> None:
        self.conn.decline_upgrade()

    def refuse_upgrade(self) -> None:
        self.conn.proto.close_after_response()

    def accept_upgrade(self, headers: Headers, owner: TunnelOwner) -> tuple[Tunnel, bytes]:
        conn = self.conn
        transport = conn.transport
        if transport is None or self.disconnected or conn.closed:
            raise ClientDisconnected("client disconnected")
        ctx = conn.ctx
        if self.request_id:
            headers = ctx.response_fields(self, headers, defaults=False)
        self.response_headers = headers
        head = conn.proto.switch_response(headers, date=ctx.date, server=ctx.server_name)
        tail = conn.detach()
        self.status = 101
        # the runtime's owners are asyncio protocols (the seam names only what streams call)
        assert isinstance(owner, asyncio.BaseProtocol)
        transport.set_protocol(owner)  # first: the owner's limits may pause or resume writing
        transport.write(head)
        ctx.bytes_out += len(head)
        if ctx.access.enabled:
            ctx.log_response(self, 101)
        return transport, tail

    def _finish(self) -> None:
        self._complete = True
        waiter = self._disconnect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.conn.response_done(self)
