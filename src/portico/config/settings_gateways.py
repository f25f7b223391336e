"""The rows of the settings table for ``uwsgi:`` and ``fastcgi:`` binds, and for what a load
balancer in front asks of a worker (``health_path``, ``shutdown_delay``).

Inherited by ``settings.Config`` and listed after its own rows. Each bound becomes a field of
``UwsgiLimits`` or ``FastCGILimits`` in ``runtime.limits`` and nowhere else; the body bound is
``max_body_size``, the one every protocol obeys.
"""

from __future__ import annotations

from dataclasses import dataclass

from portico.config import kinds
from portico.config.setting import setting

__all__ = ["GatewaySettings"]


@dataclass(frozen=True)
class GatewaySettings:
    """The uwsgi, FastCGI and health settings (a base of ``Config``; see the module docstring)."""

    # Config holds the slots: a class may have only one base with non-empty __slots__
    __slots__ = ()

    cgi_max_vars_size: int = setting(
        65536,
        kinds.integer(1),
        "Most bytes of request variables on a `uwsgi:` or `fastcgi:` bind (the uwsgi vars "
        "block, all `FCGI_PARAMS` records of a request): nginx sends about 20 variables plus "
        "one per request header, so this is the `max_header_bytes` of those binds; more ends "
        "the connection with 431. A uwsgi vars block can hold 65535 bytes at most.",
        flags=("--cgi-max-vars-size",),
    )
    cgi_max_var_count: int = setting(
        128,
        kinds.integer(1),
        "Most request variables (uwsgi vars, FastCGI params) in one request: about 20 from "
        "nginx's `uwsgi_params`/`fastcgi_params` plus one per request header; more gets 431.",
        flags=("--cgi-max-var-count",),
    )
    fastcgi_max_management_size: int = setting(
        4096,
        kinds.integer(8),
        "Largest FastCGI management record (`FCGI_GET_VALUES`) read, in bytes; a larger one "
        "ends the connection.",
        flags=("--fastcgi-max-management-size",),
    )
    health_path: str | None = setting(
        None,
        kinds.HEALTH_PATH,
        "A path the worker answers itself, on every bind and protocol, without calling the "
        "app: `200` while serving, `503` from SIGTERM on (during `shutdown_delay` and the "
        "drain), so that a load balancer's readiness check stops sending traffic before the "
        "sockets close. Matched exactly, before `--static` and `--mount`; unset, no path is.",
        flags=("--health-path",),
    )
    shutdown_delay: float = setting(
        0.0,
        kinds.SECONDS_OR_ZERO,
        "Seconds a worker keeps accepting and serving after SIGTERM, with `health_path` "
        "answering 503, before its graceful drain begins: the time a load balancer needs to "
        "see the failing check and stop sending. The master waits this plus "
        "`graceful_timeout` before it kills a worker (a reload waits for it too).",
        flags=("--shutdown-delay",),
    )
