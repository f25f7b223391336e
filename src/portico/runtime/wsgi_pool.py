"""WSGI's execution model: a bounded thread pool per worker, and the hand-off to the event loop.

The loop owns the connection; a WSGI app blocks, so each request runs in a thread of the pool and
talks to its :class:`Stream` through :class:`ThreadStream`, which hands every call to the loop
with ``call_soon_threadsafe`` and blocks the thread on a lock that the loop releases when the call
is done. The loop is never blocked by the app, and the app's thread is blocked exactly as long as
HTTP asks:

* request body: the thread waits for body bytes only when it has read everything handed over so
  far, and the loop hands over everything it has buffered at once (so a body that arrived with the
  head costs no hand-off at all: it is taken at dispatch);
* response: a write returns once the connection accepted it and, when the client reads slowly,
  once it drained below its high-water mark (``Stream.write`` returns that waiter);
* the last write of a response is not waited for: it is sent together with the end of the request
  in one hand-off, so a one-shot response (``start_response`` + a list) costs one hop in total;
* ``wsgi.file_wrapper`` over a regular file is sent by the stream's ``send_file`` (``sendfile``
  where the connection allows it), on the loop, while the thread waits.

Only the stream seam (``gateways.stream``) is used: nothing here knows which protocol carries
the request.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import os
import queue
import stat
import threading
from collections.abc import Callable
from typing import IO, Any

from portico.errors import AppError
from portico.gateways.stream import ClientDisconnected, Stream
from portico.gateways.wsgi import WSGIApp, base_environ, run_wsgi
from portico.logs import error_log as log
from portico.protocols.events import Headers

_ERROR_BODY = b"Internal Server Error\n"
_ERROR_HEADERS: Headers = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"%d" % len(_ERROR_BODY)),
]


class ThreadStream:
    """The app thread's view of one :class:`Stream` (implements ``gateways.BlockingStream``).

    At most one hand-off is outstanding at a time (the thread waits for each), so one lock per
    request carries every wake-up: the thread holds it, and the loop releases it when done.
    """

    __slots__ = (
        "_body",
        "_eof",
        "_error",
        "_final",
        "_loop",
        "_wake",
        "client",
        "request",
        "scheme",
        "server",
        "stream",
        "tls",
    )

    def __init__(self, stream: Stream, loop: asyncio.AbstractEventLoop) -> None:
        self.stream = stream
        self.request = stream.request
        self.client: tuple[str, int] | None = stream.client
        self.server: tuple[str, int | None] | None = stream.server
        self.scheme: str = stream.scheme
        self.tls: dict[str, Any] | None = stream.tls
        self._loop = loop
        self._wake = _thread.allocate_lock()
        self._wake.acquire()
        self._body = b""
        self._eof = False
        self._error: BaseException | None = None
        # the last write of the response, sent with the end of the request (one hand-off);
        # True once send_file completed the response itself
        self._final: tuple[int, Headers, bytes, bytes] | bytes | bool | None = None

    @property
    def disconnected(self) -> bool:
        return self.stream.disconnected

    # --- thread side ------------------------------------------------------------------------

    def _call(self, func: Callable[..., None], *args: Any) -> None:
        """Run ``func(*args)`` on the loop and block until it releases the lock."""
        self._loop.call_soon_threadsafe(func, *args)
        self._wake.acquire()
        error = self._error
        if error is not None:
            self._error = None
            raise error

    def read_body(self, max_bytes: int) -> bytes:
        body = self._body
        while not body:
            if self._eof:
                return b""
            self._call(self._loop_read)  # raises ClientDisconnected if the body was cut
            body = self._body
        if len(body) > max_bytes:
            self._body = body[max_bytes:]
            return body[:max_bytes]
        self._body = b""
        return body

    def start(
        self, status: int, headers: Headers, body: bytes, end: bool, reason: bytes = b""
    ) -> None:
        if self.stream.disconnected:
            raise ClientDisconnected("client disconnected")
        if end:
            self._final = (status, headers, body, reason)
        else:
            self._call(self._loop_start, status, headers, body, reason)

    def write(self, body: bytes, end: bool) -> None:
        if self.stream.disconnected:
            raise ClientDisconnected("client disconnected")
        if end:
            self._final = body
        else:
            self._call(self._loop_write, body)

    def send_file(
        self,
        status: int,
        headers: Headers,
        file: IO[bytes],
        length: int | None,
        reason: bytes = b"",
    ) -> bool:
        """Head, then the file from its position through ``Stream.send_file``; ``False`` if it
        cannot be (no real descriptor, not a regular file, shorter than ``length``): nothing
        was sent."""
        try:
            fd = file.fileno()
            offset = file.tell()
            info = os.fstat(fd)
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
            return False
        if not stat.S_ISREG(info.st_mode):
            return False  # a pipe, a socket: read in blocks instead
        available = info.st_size - offset
        if length is None:
            length = available
            headers = [*headers, (b"content-length", b"%d" % length)]
        elif length > available:
            return False  # the block path reports the short body as the app's error
        if self.stream.disconnected:
            raise ClientDisconnected("client disconnected")
        self._call(self._loop_send_file, status, headers, fd, offset, length, reason)
        self._final = True
        return True

    def abort(self) -> None:
        self._loop.call_soon_threadsafe(self.stream.abort)

    def finish(self) -> None:
        """The app is done: send the last write, if any, and end the request (no waiting)."""
        self._loop.call_soon_threadsafe(self._loop_finish, self._final)

    # --- loop side --------------------------------------------------------------------------

    def _release(self, _: object = None) -> None:
        self._wake.release()

    def _loop_read(self) -> None:
        stream = self.stream
        chunk = stream.read()
        if chunk is None:
            stream.wait_readable().add_done_callback(self._loop_read_again)
            return
        self._body, more = chunk
        self._eof = not more
        self._wake.release()

    def _loop_read_again(self, _: object) -> None:
        chunk = self.stream.read()
        if chunk is None:  # readable, yet nothing: the client left before the body ended
            self._error = ClientDisconnected("client disconnected before the request body ended")
        else:
            self._body, more = chunk
            self._eof = not more
        self._wake.release()

    def _after(self, waiter: Any) -> None:
        if waiter is None or waiter.done():
            self._wake.release()
        else:
            waiter.add_done_callback(self._release)

    def _loop_start(self, status: int, headers: Headers, body: bytes, reason: bytes) -> None:
        try:
            waiter = self.stream.start(status, headers, body, False, reason)
        except BaseException as exc:
            self._error = exc
            self._wake.release()
            return
        self._after(waiter)

    def _loop_write(self, body: bytes) -> None:
        try:
            waiter = self.stream.write(body, False)
        except BaseException as exc:
            self._error = exc
            self._wake.release()
            return
        self._after(waiter)

    def _loop_send_file(  # noqa: PLR0917 -- the thread's arguments, passed through
        self, status: int, headers: Headers, fd: int, offset: int, length: int, reason: bytes
    ) -> None:
        stream = self.stream
        try:
            stream.start(status, headers, b"", False, reason)
        except BaseException as exc:
            self._error = exc
            self._wake.release()
            return
        task = self._loop.create_task(stream.send_file(fd, offset, length))
        task.add_done_callback(self._loop_file_sent)

    def _loop_file_sent(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            self._error = task.exception()
        self._wake.release()

    def _loop_finish(self, final: tuple[int, Headers, bytes, bytes] | bytes | bool | None) -> None:
        stream = self.stream
        try:
            if final is True or stream.disconnected:
                pass  # send_file ended the response, or there is nobody to answer
            elif type(final) is tuple:
                try:
                    stream.start(final[0], final[1], final[2], True, final[3])
                except AppError as exc:
                    # refused before anything was written: the client still gets a 500
                    log.error("%s", exc)
                    stream.start(500, list(_ERROR_HEADERS), _ERROR_BODY, True)
            elif type(final) is bytes:
                try:
                    stream.write(final, True)
                except AppError as exc:  # the stream already ended the exchange
                    log.error("%s", exc)
            elif not stream.response_complete():
                # the gateway always ends or aborts a response; never leave the client hanging
                log.error("WSGI request ended without a complete response")
                if stream.response_started():
                    stream.abort()
                else:
                    stream.start(500, list(_ERROR_HEADERS), _ERROR_BODY, True)
        except ClientDisconnected:
            pass
        finally:
            stream.app_finished()


class ThreadPool:
    """A fixed set of threads taking jobs from one queue: the bounded pool WSGI apps run on.

    Not ``concurrent.futures.ThreadPoolExecutor``: its ``submit`` builds a ``Future`` and a work
    item and goes through a ``queue.Queue`` of Python locks, which measured 17 µs per hand-off
    from a uvloop loop to a thread and back on this machine, against 1.3 µs for a
    ``queue.SimpleQueue`` (a C queue) and no futures: the loop never needs a job's result, since
    the job reports back through its stream.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[Any], None], Any] | None] = (
            queue.SimpleQueue()
        )
        # Daemon threads: an app stuck past the graceful deadline must not keep the process up.
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, func: Callable[[Any], None], arg: Any) -> None:
        self._jobs.put((func, arg))

    def _work(self) -> None:
        get = self._jobs.get
        while (job := get()) is not None:
            func, arg = job
            try:
                func(arg)
            except BaseException as exc:  # a job must never kill its thread
                log.error("uncaught error in a WSGI thread", exc_info=exc)

    def shutdown(self, timeout: float = 0.5) -> int:
        """Drop jobs not started, stop the threads; return how many are still running a job."""
        jobs = self._jobs
        while not jobs.empty():
            with contextlib.suppress(queue.Empty):
                jobs.get_nowait()
        for _ in self._threads:
            jobs.put(None)
        for thread in self._threads:
            thread.join(timeout / len(self._threads))
        return sum(thread.is_alive() for thread in self._threads)


class WSGIPool:
    """Runs a WSGI app for one worker: ``dispatch`` is called on the loop for each request."""

    def __init__(
        self,
        app: WSGIApp,
        threads: int,
        *,
        root_path: str,
        multiprocess: bool,
        mount_path: str = "",
    ) -> None:
        self.app = app
        self.root_path = root_path
        #: the ``--mount`` prefix within ``root_path``: what follows a trusted proxy's prefix
        self.mount_path = mount_path
        self.multiprocess = multiprocess
        self.base = base_environ(self)
        self.pool = ThreadPool(threads, "portico-wsgi")
        self.loop: asyncio.AbstractEventLoop | None = None

    def dispatch(self, request_stream: Stream) -> None:
        """On the loop: queue the request for a thread, with the body already here."""
        loop = self.loop
        if loop is None:
            self.loop = loop = asyncio.get_running_loop()
        stream = ThreadStream(request_stream, loop)
        request = request_stream.request
        if not request.has_body:
            stream._eof = True
        elif not request.expect_continue:
            # The driver dispatches on the head, before it feeds the body that came in the same
            # read: look once more after it did, so that such a body is handed over with the
            # request instead of by a hop from the thread.
            loop.call_soon(self._submit_with_body, stream)
            return
        self.pool.submit(self._run, stream)

    def _submit_with_body(self, stream: ThreadStream) -> None:
        inner = stream.stream
        if inner.buffered and not inner.disconnected:
            chunk = inner.read()
            if chunk is not None:
                stream._body, more = chunk
                stream._eof = not more
        self.pool.submit(self._run, stream)

    def _run(self, stream: ThreadStream) -> None:
        """In a pool thread: the whole life of one request."""
        prefix = stream.stream.prefix
        root_path = self.root_path if prefix is None else prefix + self.mount_path
        try:
            run_wsgi(self.app, stream, self.base, root_path, mount_path=self.mount_path)
        finally:
            stream.finish()

    def shutdown(self) -> int:
        """Stop the threads; return how many are still running a request (they are cut off
        with the process)."""
        return self.pool.shutdown()
