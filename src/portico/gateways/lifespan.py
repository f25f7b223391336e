"""The ASGI lifespan protocol (https://asgi.readthedocs.io/en/latest/specs/lifespan.html).

``mode`` follows ``--lifespan``: ``on`` makes any failure fatal, ``auto`` treats an app that raises
before its first lifespan message as one that does not support lifespan (the common
``assert scope["type"] == "http"`` pattern), ``off`` never calls the app with a lifespan scope.
The loop is injected (its ``create_future``/``create_task``) so this layer does no I/O itself.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

from portico.errors import LifespanError
from portico.gateways.asgi import ASGIApp, Message
from portico.logs import error_log as log


class _Future(Protocol):
    def done(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def result(self) -> Any: ...
    def __await__(self) -> Any: ...


class LoopLike(Protocol):
    def create_future(self) -> Any: ...
    def create_task(self, coro: Coroutine[Any, Any, Any], /) -> Any: ...


class Lifespan:
    """Runs the app's lifespan: :meth:`startup` before serving, :meth:`shutdown` after."""

    def __init__(self, app: ASGIApp, loop: LoopLike, mode: str = "auto") -> None:
        self.app = app
        self.loop = loop
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = mode != "off"
        self._incoming: list[Message] = []
        self._incoming_ready: _Future = loop.create_future()
        self._outcome: _Future | None = None
        self._task: Any = None
        self._failed_message = ""

    async def startup(self) -> None:
        """Run startup; raise :class:`LifespanError` (exit 3) if the app reports failure."""
        if not self.supported:
            return
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self._outcome = self.loop.create_future()
        self._task = self.loop.create_task(self._main(scope))
        self._put({"type": "lifespan.startup"})
        await self._outcome
        kind = self._outcome.result()
        if kind == "lifespan.startup.failed":
            raise LifespanError(f"application startup failed: {self._failed_message}".rstrip(": "))
        if kind == "error":
            raise LifespanError(f"application startup failed: {self._failed_message}")

    async def shutdown(self) -> None:
        """Run shutdown; failures are logged (the process is ending anyway)."""
        if not self.supported or self._task is None or self._task.done():
            return
        self._outcome = self.loop.create_future()
        self._put({"type": "lifespan.shutdown"})
        await self._outcome
        kind = self._outcome.result()
        if kind == "lifespan.shutdown.failed":
            log.error("application shutdown failed: %s", self._failed_message)

    def _put(self, message: Message) -> None:
        self._incoming.append(message)
        if not self._incoming_ready.done():
            self._incoming_ready.set_result(None)

    async def _receive(self) -> Message:
        while not self._incoming:
            self._incoming_ready = self.loop.create_future()
            await self._incoming_ready
        return self._incoming.pop(0)

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind not in (
            "lifespan.startup.complete",
            "lifespan.startup.failed",
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        ):
            raise RuntimeError(f"unexpected lifespan message {kind!r}")
        if kind.endswith(".failed"):
            self._failed_message = str(message.get("message", ""))
        self._resolve(kind)

    def _resolve(self, kind: str) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result(kind)

    async def _main(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as exc:
            started = self._outcome is not None and self._outcome.done()
            if self.mode == "auto" and not started:
                log.info(
                    "ASGI lifespan is not supported by the app (%s); continuing", type(exc).__name__
                )
                self.supported = False
                self._resolve("unsupported")
                return
            self._failed_message = f"{type(exc).__name__}: {exc}"
            log.error("Exception in ASGI lifespan", exc_info=exc)
            self._resolve("error")
            return
        # the app returned: fine before startup only in auto mode (it ignores lifespan)
        if self._outcome is not None and not self._outcome.done():
            if self.mode == "auto":
                self.supported = False
                self._resolve("unsupported")
            else:
                self._failed_message = "the app returned during lifespan without answering"
                self._resolve("error")
