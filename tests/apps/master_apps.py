"""Apps for the master-process tests: which worker answered, slow, hung and growing requests."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

# Printed at import: with --preload it appears once, from the master.
print(f"master_apps imported in process {os.getpid()}", file=sys.stderr, flush=True)

_hoard: list[bytes] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/`` answers the worker's pid; ``/slow?S`` sleeps S seconds; ``/block`` blocks the loop;
    ``/grow`` keeps 64 MiB more; ``/exit`` crashes the worker."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print(f"lifespan shutdown in {os.getpid()}", file=sys.stderr, flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/slow":
        print("slow request started", file=sys.stderr, flush=True)
        await asyncio.sleep(float(scope["query_string"] or b"1"))
    elif path == "/block":
        blocking_call_in_the_event_loop()
    elif path == "/exit":
        os._exit(1)  # a worker that crashes
    elif path == "/grow":
        _hoard.append(os.urandom(1 << 20) * 64)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


def blocking_call_in_the_event_loop() -> None:
    time.sleep(3600)


async def failing_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
