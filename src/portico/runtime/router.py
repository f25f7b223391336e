"""Which app serves an admitted request, and how: static files, an ASGI task, the WSGI pool, or a
WebSocket.

The worker context hands every admitted request (any protocol's :class:`Stream`) to the router.
Static folders (``--static``) come first: a path under one never reaches an app. Then, with
``--mount``, the longest matching prefix picks the app, else the one app serves everything.
"""

from __future__ import annotations

from typing import Any, Final

from portico.gateways.asgi import ASGIApp, HTTPCycle, http_scope
from portico.gateways.static import StaticFiles
from portico.gateways.stream import Stream
from portico.protocols.events import Headers
from portico.runtime.context import Dispatcher, WorkerContext
from portico.runtime.ws_engine import serve_websocket
from portico.runtime.wsgi_pool import WSGIPool

__all__ = ["Mount", "Router"]

_NOT_FOUND_BODY: Final = b"Not Found\n"
_NOT_FOUND_HEADERS: Final[Headers] = [(b"content-type", b"text/plain; charset=utf-8")]


class Mount:
    """One app served under a URL prefix: ASGI (``app``) or WSGI (``wsgi``).

    ``root_path`` is what the app is told it is mounted under: ``--root-path`` followed by the
    mount's ``prefix``; a trusted proxy's ``X-Forwarded-Prefix`` replaces the first part.
    """

    def __init__(
        self,
        prefix: str,
        app: ASGIApp | None,
        wsgi: WSGIPool | None,
        root_path: str,
        state: dict[str, Any],
    ) -> None:
        self.prefix = b"" if prefix == "/" else prefix.encode("ascii")
        #: the mount's own part of ``root_path``, which the request's path still holds
        self.mount_path = "" if prefix == "/" else prefix
        # "/api" serves "/api" and "/api/...", never "/apix"
        self.prefix_dir = self.prefix + b"/"
        self.app = app
        self.wsgi = wsgi
        self.root_path = root_path
        self.state = state

    def matches(self, path: bytes) -> bool:
        prefix = self.prefix
        return not prefix or path == prefix or path.startswith(self.prefix_dir)


class Router(Dispatcher):
    """Hands requests to their app; ``mounted`` turns on prefix matching (``--mount``)."""

    def __init__(
        self,
        ctx: WorkerContext,
        mounts: list[Mount],
        *,
        mounted: bool,
        static: StaticFiles | None = None,
    ) -> None:
        self.ctx = ctx
        # longest prefix first
        self.mounts = sorted(mounts, key=lambda m: -len(m.prefix))
        #: the one app that serves every path, when there is no mount table
        self.only: Mount | None = None if mounted else mounts[0]
        self.static = static if static is not None and static.mounts else None

    def dispatch(self, stream: Stream) -> None:
        request = stream.request
        static = self.static
        if static is not None:
            folder = static.match(request.raw_path)
            if folder is not None:
                if request.upgrade is not None and stream.upgrade_requested():
                    stream.decline_upgrade()
                self.ctx.spawn(static.serve(stream, folder), stream)
                return
        mount = self.only
        if mount is None:
            mount = self._match(request.raw_path)
            if mount is None:
                if request.upgrade is not None and stream.upgrade_requested():
                    stream.decline_upgrade()
                stream.start(404, list(_NOT_FOUND_HEADERS), _NOT_FOUND_BODY, True)
                stream.app_finished()
                return
        prefix = stream.prefix
        root_path = mount.root_path if prefix is None else prefix + mount.mount_path
        if request.upgrade is not None and stream.upgrade_requested():
            app = mount.app
            if app is not None:
                serve_websocket(self.ctx, stream, app, root_path, mount.state, mount.mount_path)
                return
            stream.decline_upgrade()  # WSGI has no WebSocket: an ordinary request
        wsgi = mount.wsgi
        if wsgi is not None:
            wsgi.dispatch(stream)
            return
        app = mount.app
        assert app is not None
        scope = http_scope(stream, root_path, mount.state, mount.mount_path)
        self.ctx.spawn(HTTPCycle(stream).run(app, scope), stream)

    def _match(self, path: bytes) -> Mount | None:
        for mount in self.mounts:
            if mount.matches(path):
                return mount
        return None
