"""The one exception tree of Portico.

::

    PorticoError
    ├── StartupError            the server cannot start; carries the process exit code
    │   ├── ConfigError         exit 2: unknown key or bad value, naming its source
    │   ├── AppLoadError        exit 4: the app cannot be imported or is not an app
    │   └── LifespanError       exit 3: the app's lifespan startup failed
    ├── ProtocolError           the peer broke HTTP; carries the status it implies
    │   ├── BadRequest          400
    │   ├── RequestTimeout      408
    │   ├── ContentTooLarge     413
    │   ├── URITooLong          414
    │   ├── HeadersTooLarge     431
    │   ├── NotImplementedByServer 501
    │   └── VersionNotSupported 505
    ├── AppError                the app broke ASGI/WSGI (bad message, bad header, wrong length)
    └── ClientDisconnected      (also an OSError) ``send`` after the client went away

Errors carry their consequence (the exit code or the HTTP status), so callers ask the error instead
of keeping an ``isinstance`` ladder — the idea of h11's ``error_status_hint``.
"""

from __future__ import annotations

__all__ = [
    "AppError",
    "AppLoadError",
    "BadRequest",
    "ClientDisconnected",
    "ConfigError",
    "ContentTooLarge",
    "HeadersTooLarge",
    "LifespanError",
    "NotImplementedByServer",
    "PorticoError",
    "ProtocolError",
    "RequestTimeout",
    "StartupError",
    "URITooLong",
    "VersionNotSupported",
]

#: Process exit codes, documented in the README.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BOOT = 3
EXIT_APP_LOAD = 4


class PorticoError(Exception):
    """Base of every error Portico raises on purpose."""


class StartupError(PorticoError):
    """The server cannot start. ``exit_code`` is what the process exits with."""

    exit_code = EXIT_FAILURE


class ConfigError(StartupError):
    """A setting is unknown or has a bad value; the message names its source (flag, env, file)."""

    exit_code = EXIT_USAGE


class AppLoadError(StartupError):
    """The app could not be imported, found, or recognised as ASGI or WSGI."""

    exit_code = EXIT_APP_LOAD


class LifespanError(StartupError):
    """The app reported ``lifespan.startup.failed`` or raised during startup."""

    exit_code = EXIT_BOOT


class ProtocolError(PorticoError):
    """The client sent something HTTP does not allow; ``status`` is the response it deserves.

    After a protocol error the connection is always closed once the error response is written:
    the bytes that follow cannot be trusted to start a new message (RFC 9112 §11.2).
    """

    status = 400

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status


class BadRequest(ProtocolError):
    status = 400


class RequestTimeout(ProtocolError):
    status = 408


class ContentTooLarge(ProtocolError):
    status = 413


class URITooLong(ProtocolError):
    status = 414


class HeadersTooLarge(ProtocolError):
    status = 431


class NotImplementedByServer(ProtocolError):
    status = 501


class VersionNotSupported(ProtocolError):
    status = 505


class AppError(PorticoError):
    """The application broke its gateway contract (ASGI message order, bad header, wrong length)."""


class ClientDisconnected(PorticoError, OSError):
    """Raised by the app's ``send`` when the client has gone (ASGI spec 2.4: an ``OSError``)."""
