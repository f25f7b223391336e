"""``sd_notify(3)``: telling systemd that the server is ready, reloading or stopping.

The protocol is one datagram of ``KEY=VALUE`` lines to the ``AF_UNIX`` socket named by
``NOTIFY_SOCKET`` (a leading ``@`` names an abstract socket). It is small enough that a library
for it would add more than it saves.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from portico.logs import error_log as log

__all__ = ["Notifier"]


class Notifier:
    """Sends state changes to systemd; does nothing when not run under ``Type=notify``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        path = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def reloading(self) -> None:
        # systemd >= 253 (Type=notify-reload) wants the monotonic time with RELOADING=1
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def _send(self, message: str) -> None:
        if not self.address:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto(message.encode("utf-8"), self.address)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self.address, exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
