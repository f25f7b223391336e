"""The WSGI thread pool on a real event loop and real threads, without sockets."""

from __future__ import annotations

import asyncio
import threading
import time

from portico.runtime.wsgi_pool import ThreadPool


def run(jobs: list[tuple[float, float]], threads: int) -> list[tuple[int, float, float, str]]:
    """Submit ``(delay, seconds)`` jobs (each ``delay`` after the previous one); each job sleeps
    (blocked, as on a database) for ``seconds``. Returns (job, start, end, thread) in order."""
    spans: list[tuple[int, float, float, str]] = []
    done = threading.Event()

    def job(index: int, seconds: float) -> None:
        start = time.monotonic()
        time.sleep(seconds)
        spans.append((index, start, time.monotonic(), threading.current_thread().name))
        if len(spans) == len(jobs):
            done.set()

    async def main() -> None:
        pool = ThreadPool(threads, "test-pool")
        try:
            for index, (delay, seconds) in enumerate(jobs):
                await asyncio.sleep(delay)
                pool.submit(lambda arg: job(*arg), (index, seconds))
            while not done.is_set():
                await asyncio.sleep(0.01)
        finally:
            assert pool.shutdown() == 0

    asyncio.run(main())
    return sorted(spans)


def test_a_job_queued_behind_a_blocked_thread_gets_another_thread() -> None:
    # The first job holds its thread without computing: the loop sees its CPU clock stand
    # still and wakes a second thread for the queued job instead of letting it wait.
    (_, _, first_end, first_thread), (_, second_start, _, second_thread) = run(
        [(0.0, 1.0), (0.05, 0.0)], threads=2
    )
    assert second_start < first_end
    assert second_thread != first_thread


def test_jobs_that_wait_fill_the_pool_and_no_more() -> None:
    # Six jobs queued at once, all blocked in sleep: the pool wakes threads until all three
    # run one each (not one after the other), and never runs a fourth at once.
    spans = run([(0.0, 0.3)] * 6, threads=3)
    at_once = max(sum(s <= start < e for _, s, e, _ in spans) for _, start, _, _ in spans)
    assert at_once == 3
    assert len({name for *_, name in spans}) == 3
