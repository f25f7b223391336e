"""WSGI's execution model: a bounded thread pool per worker, and the hand-off to the event loop.

The loop owns the connection; a WSGI app blocks, so each request runs in a thread of the pool and
talks to its :class:`Stream` through :class:`ThreadStream`, which hands a call that must wait to
the loop with ``call_soon_threadsafe`` and blocks the thread on a lock that the loop releases when
the call is done, and sends the ones that need no answer (the end of a request, an abort) through
the pool's :class:`Outbox`, one loop wake-up per batch. The loop is never blocked by the app, and
the app's thread is blocked exactly as long as HTTP asks:

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
import collections
import os
import stat
import threading
import time
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
        "_outbox",
        "_wake",
        "client",
        "request",
        "scheme",
        "server",
        "stream",
        "tls",
    )

    def __init__(self, stream: Stream, loop: asyncio.AbstractEventLoop, outbox: Outbox) -> None:
        self.stream = stream
        self.request = stream.request
        self.client: tuple[str, int] | None = stream.client
        self.server: tuple[str, int | None] | None = stream.server
        self.scheme: str = stream.scheme
        self.tls: dict[str, Any] | None = stream.tls
        self._loop = loop
        self._outbox = outbox
        # made by the first hand-off that waits: a one-shot response never needs one
        self._wake: _thread.LockType | None = None
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
        wake = self._wake
        if wake is None:
            self._wake = wake = _thread.allocate_lock()
            wake.acquire()
        self._loop.call_soon_threadsafe(func, *args)
        wake.acquire()
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
        # through the outbox, so that it reaches the loop before this request's finish
        self._outbox.put(_abort, self.stream)

    def finish(self) -> None:
        """The app is done: send the last write, if any, and end the request (no waiting)."""
        self._outbox.put(_finish, self)

    # --- loop side --------------------------------------------------------------------------

    def _release(self, _: object = None) -> None:
        wake = self._wake
        assert wake is not None  # made by _call before its hand-off
        wake.release()

    def _loop_read(self) -> None:
        stream = self.stream
        chunk = stream.read()
        if chunk is None:
            stream.wait_readable().add_done_callback(self._loop_read_again)
            return
        self._body, more = chunk
        self._eof = not more
        self._release()

    def _loop_read_again(self, _: object) -> None:
        chunk = self.stream.read()
        if chunk is None:  # readable, yet nothing: the client left before the body ended
            self._error = ClientDisconnected("client disconnected before the request body ended")
        else:
            self._body, more = chunk
            self._eof = not more
        self._release()

    def _after(self, waiter: Any) -> None:
        if waiter is None or waiter.done():
            self._release()
        else:
            waiter.add_done_callback(self._release)

    def _loop_start(self, status: int, headers: Headers, body: bytes, reason: bytes) -> None:
        try:
            waiter = self.stream.start(status, headers, body, False, reason)
        except BaseException as exc:
            self._error = exc
            self._release()
            return
        self._after(waiter)

    def _loop_write(self, body: bytes) -> None:
        try:
            waiter = self.stream.write(body, False)
        except BaseException as exc:
            self._error = exc
            self._release()
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
            self._release()
            return
        task = self._loop.create_task(stream.send_file(fd, offset, length))
        task.add_done_callback(self._loop_file_sent)

    def _loop_file_sent(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            self._error = task.exception()
        self._release()

    def _loop_finish(self) -> None:
        stream = self.stream
        final = self._final
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


def _abort(stream: Stream) -> None:
    stream.abort()


def _finish(stream: ThreadStream) -> None:
    stream._loop_finish()


class Outbox:
    """What the app threads send the loop without waiting (the end of a request, an abort), in
    the order they sent it, with one loop wake-up per batch: the first call of a batch schedules
    the loop's drain, the others only queue behind it. ``call_soon_threadsafe`` per request
    would build a handle for each and wake the loop for each."""

    __slots__ = ("_calls", "_scheduled", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._calls: collections.deque[tuple[Callable[[Any], None], Any]] = collections.deque()
        self._scheduled = False

    def put(self, func: Callable[[Any], None], arg: Any) -> None:
        """From any thread: run ``func(arg)`` on the loop, after what was put before."""
        self._calls.append((func, arg))
        # appended before the flag is read: a drain that already cleared the flag either sees
        # the call, or the flag reads False here and a new drain is scheduled
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        calls = self._calls
        while calls:
            func, arg = calls.popleft()
            try:
                func(arg)
            except Exception:  # one request's failure must not strand the others behind it
                log.exception("could not end a WSGI request")


class _Thread:
    """One thread of a :class:`ThreadPool`: its wake lock and what the loop knows of it."""

    __slots__ = ("busy", "clock", "cpu", "wake")

    def __init__(self) -> None:
        self.wake = _thread.allocate_lock()
        self.wake.acquire()  # held: the thread sleeps on it until the loop releases it
        self.busy = False  # running a job
        # its CPU-time clock once it runs (Linux makes thread clocks negative numbers)
        self.clock: int | None = None
        self.cpu = 0  # that clock at the last stall check (ns)


class ThreadPool:
    """A fixed set of threads taking jobs from one queue: the bounded pool WSGI apps run on.

    Built for the GIL: only one thread runs Python at a time. Waking a thread per job, as a
    plain queue does, makes each woken thread preempt the loop only to wait for the GIL:
    measured on one core with 8 threads, 2.2 context switches per request and 10% of the
    worker's samples in the kernel's task switch. So the loop queues the jobs of its turn and
    wakes one thread at the end of the turn (the most recently idle: its stack is warm), and
    that thread takes job after job until the queue is empty.

    An app that waits on I/O (a database, an API) releases the GIL but holds its thread, and the
    queue must not wait behind it. Every ``STALL`` seconds while jobs wait, the loop reads the
    CPU clock of each thread running a job (``pthread_getcpuclockid``): one whose clock stood
    still is blocked. When every awake thread is blocked, one more is woken per waiting job;
    when a thread ends a job while another awake one is computing, it goes back to sleep and
    leaves the queue to that one, so the extra threads a burst of waiting apps woke do not stay
    awake fighting for the GIL once the apps compute again (measured before this rule: runs
    where all 8 threads stayed awake served 43,000 req/s where one thread served 64,000).

    Not ``concurrent.futures.ThreadPoolExecutor``: its ``submit`` builds a ``Future`` and a work
    item and goes through a ``queue.Queue`` of Python locks; the loop never needs a job's result,
    since the job reports back through its stream.
    """

    #: how often the loop looks at the threads while jobs wait (seconds)
    STALL = 0.001
    #: below this much time left free by the loop between two looks, a look tells nothing (ns)
    OPPORTUNITY_NS = 200_000

    def __init__(self, threads: int, name: str) -> None:
        self._jobs: collections.deque[tuple[Callable[[Any], None], Any] | None] = (
            collections.deque()
        )
        self._state = _thread.allocate_lock()  # guards _idle, and _awake's changes
        self._all = [_Thread() for _ in range(threads)]
        self._idle: list[_Thread] = list(self._all)  # sleeping threads, the last one warmest
        self._awake = 0  # threads running a job or about to look at the queue
        self._blocked = 0  # threads running a job whose clock stood still at the last look
        self._wake_scheduled = False
        self._stall_check: asyncio.TimerHandle | None = None
        self._closing = False  # the queue holds the threads' stop marks: none may sleep now
        self._looked = 0  # time.monotonic_ns() at the last look
        self._loop_cpu = 0  # the loop thread's CPU time then
        self.loop: asyncio.AbstractEventLoop | None = None
        # Daemon threads: an app stuck past the graceful deadline must not keep the process up.
        self._threads = [
            threading.Thread(target=self._work, args=(me,), name=f"{name}-{i}", daemon=True)
            for i, me in enumerate(self._all)
        ]
        for thread in self._threads:
            thread.start()

    # --- loop side --------------------------------------------------------------------------

    def submit(self, func: Callable[[Any], None], arg: Any) -> None:
        """On the loop: queue a job; a thread is woken at the end of this loop turn."""
        self._jobs.append((func, arg))
        if not self._wake_scheduled:
            self._wake_scheduled = True
            loop = self.loop
            if loop is None:
                self.loop = loop = asyncio.get_running_loop()
            loop.call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_scheduled = False
        if not self._jobs:
            return
        if self._awake <= self._blocked:  # nobody awake can take it
            self._rouse(1)
        self._watch()

    def _rouse(self, count: int) -> None:
        """Wake up to ``count`` sleeping threads, the warmest first. (Read without the lock,
        ``_awake`` may count a thread that is just going to sleep: it looks at the queue once
        more under the lock, so a job is never left behind; at worst one thread too many
        wakes, and sleeps again.)"""
        with self._state:
            idle = self._idle
            for _ in range(min(count, len(idle))):
                self._awake += 1
                idle.pop().wake.release()

    def _watch(self) -> None:
        """Look at the threads in ``STALL`` seconds (unless a look is already due)."""
        if self._stall_check is None and self.loop is not None:
            self._stall_check = self.loop.call_later(self.STALL, self._check_stall)

    def _check_stall(self) -> None:
        """Count the threads blocked in their apps, and wake more if every awake one is.

        A thread's CPU clock also stands still while it waits for the GIL, which the loop
        holds while it runs: so the clocks are compared with the time the loop left free since
        the last look (wall time less the loop's own CPU time). A thread that used less than a
        quarter of it is blocked; when the loop left almost nothing free, the look tells
        nothing and nobody counts as blocked.
        """
        self._stall_check = None
        now = time.monotonic_ns()
        loop_cpu = time.thread_time_ns()
        free = (now - self._looked) - (loop_cpu - self._loop_cpu)
        self._looked = now
        self._loop_cpu = loop_cpu
        blocked = 0
        for me in self._all:
            clock = me.clock
            if me.busy and clock is not None:
                try:
                    cpu = time.clock_gettime_ns(clock)
                except OSError:  # the thread is gone (shutting down): it computes nothing
                    continue
                if free >= self.OPPORTUNITY_NS and (cpu - me.cpu) * 4 < free:
                    blocked += 1
                me.cpu = cpu
        self._blocked = blocked
        jobs = self._jobs
        if not jobs:
            return
        if self._awake == 0:
            self._rouse(1)  # jobs of this turn, before its end wakes a thread: one takes them all
        elif self._awake <= blocked:  # every awake thread waits in its app
            self._rouse(len(jobs))
        if self._idle:
            self._watch()

    def _watch_from_thread(self) -> None:
        loop = self.loop
        if loop is not None:
            loop.call_soon_threadsafe(self._watch)

    # --- thread side ------------------------------------------------------------------------

    def _work(self, me: _Thread) -> None:
        me.clock = time.pthread_getcpuclockid(threading.get_ident())
        jobs = self._jobs
        state = self._state
        me.wake.acquire()  # released by the loop when it picks this thread
        while True:
            try:
                job = jobs.popleft()
            except IndexError:
                state.acquire()
                if jobs:  # queued between the pop and the lock: take it
                    state.release()
                    continue
                self._awake -= 1
                self._idle.append(me)
                state.release()
                me.wake.acquire()  # whoever pops us counted us awake
                continue
            if job is None:
                return
            me.busy = True
            func, arg = job
            try:
                func(arg)
            except BaseException as exc:  # a job must never kill its thread
                log.error("uncaught error in a WSGI thread", exc_info=exc)
            me.busy = False
            if jobs and self._awake - self._blocked > 1 and not self._closing:
                # another awake thread computes: leave the queue to it, and have the loop keep
                # watching in case it blocks
                state.acquire()
                if self._awake - self._blocked > 1:
                    self._awake -= 1
                    self._idle.append(me)
                    state.release()
                    self._watch_from_thread()
                    me.wake.acquire()
                    continue
                state.release()

    def shutdown(self, timeout: float = 0.5) -> int:
        """Drop jobs not started, stop the threads; return how many are still running a job."""
        jobs = self._jobs
        jobs.clear()
        self._closing = True
        if self._stall_check is not None:
            self._stall_check.cancel()
            self._stall_check = None
        jobs.extend([None] * len(self._threads))
        self._rouse(len(self._threads))
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
        self.outbox: Outbox | None = None
        #: requests of this loop turn whose body may have come with the head
        self._with_body: list[ThreadStream] = []

    def dispatch(self, request_stream: Stream) -> None:
        """On the loop: queue the request for a thread, with the body already here."""
        loop = self.loop
        outbox = self.outbox
        if loop is None or outbox is None:
            self.loop = loop = asyncio.get_running_loop()
            self.outbox = outbox = Outbox(loop)
        stream = ThreadStream(request_stream, loop, outbox)
        request = request_stream.request
        if not request.has_body:
            stream._eof = True
        elif not request.expect_continue:
            # The driver dispatches on the head, before it feeds the body that came in the same
            # read: look once more after it did (at the end of the turn, once for all of its
            # requests), so that such a body is handed over with the request instead of by a
            # hop from the thread.
            waiting = self._with_body
            waiting.append(stream)
            if len(waiting) == 1:
                loop.call_soon(self._submit_with_body)
            return
        self.pool.submit(self._run, stream)

    def _submit_with_body(self) -> None:
        waiting = self._with_body
        self._with_body = []
        pool = self.pool
        for stream in waiting:
            inner = stream.stream
            if inner.buffered and not inner.disconnected:
                chunk = inner.read()
                if chunk is not None:
                    stream._body, more = chunk
                    stream._eof = not more
            pool.submit(self._run, stream)

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
