"""Every bound and option the runtime, its protocols and gateways obey, built from the settings
in one place.

The defaults live in one place only, the settings table (``portico.config.settings``); the option
objects of the protocols and gateways (``H1Limits``, ``H2Limits``, ``UwsgiLimits``,
``FastCGILimits``, ``WSOptions``, ``StaticOptions``) have no defaults of their own, and this module
is the only code that maps settings onto them (``tests/test_limits.py`` pins that every field
comes from its setting). A new protocol adds its limits here.
"""

from __future__ import annotations

from dataclasses import dataclass

from portico.config import Config
from portico.errors import AppError, ConfigError
from portico.gateways.static_options import StaticOptions, parse_mount
from portico.protocols.events import Headers
from portico.protocols.fastcgi import FastCGILimits
from portico.protocols.h2_settings import H2Limits
from portico.protocols.headers import check_response_field
from portico.protocols.http11 import H1Limits
from portico.protocols.uwsgi import UwsgiLimits
from portico.protocols.websocket import WSOptions

__all__ = [
    "H2_FIELD_OVERHEAD",
    "H2DriverLimits",
    "Limits",
    "ProxyTrust",
    "WSLimits",
    "build_limits",
    "default_headers",
]

#: RFC 9113 §6.5.2 counts each header field as its name, its value and 32 octets: the HTTP/2
#: header-list limit is the HTTP/1.1 one (bytes of names and values) plus that per field allowed.
H2_FIELD_OVERHEAD = 32

# Fields that frame or route the response: the protocol writes them, never a setting.
_FRAMING = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"upgrade",
        b"te",
        b"trailer",
        b"proxy-connection",
    }
)


@dataclass(frozen=True, slots=True)
class WSLimits:
    """A WebSocket's bounds: the protocol's, and the engine's queue, keepalive and buffer."""

    protocol: WSOptions
    max_queue: int
    ping_interval: float
    ping_timeout: float
    write_limit: int


@dataclass(frozen=True, slots=True)
class H2DriverLimits:
    """An HTTP/2 connection's bounds: the protocol's, and what its driver enforces itself."""

    protocol: H2Limits
    #: the most header fields of a request (the HTTP/1.1 bound; the core counts only bytes)
    max_header_count: int
    #: the largest request body, in bytes (0: unlimited)
    max_body_size: int
    #: how long a response may wait for the client to open its window
    write_timeout: float
    #: which HTTP versions are served (``h1``, ``h2``)
    protocols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProxyTrust:
    """Which peers may say who the client is, and how (proxy headers, the PROXY protocol)."""

    #: apply trusted proxies' headers at all
    headers: bool
    #: the trusted peers, in ``--forwarded-allow-ips`` syntax
    allow_ips: str
    #: ``x-forwarded`` or ``forwarded``
    source: str
    #: every connection starts with a PROXY protocol header
    protocol: bool


@dataclass(frozen=True, slots=True)
class Limits:
    """What one worker's connections may hold and for how long, and how they are served."""

    h1: H1Limits
    h2: H2DriverLimits
    uwsgi: UwsgiLimits
    fastcgi: FastCGILimits
    websocket: WSLimits
    header_timeout: float
    keepalive_timeout: float
    max_connections: int
    max_in_flight: int
    proxies: ProxyTrust
    static: StaticOptions
    #: ``--header``: fields added to every response that lacks a field of that name
    headers: Headers
    #: the path the worker answers itself (``--health-path``), as the raw request path
    health_path: bytes | None


def build_limits(config: Config) -> Limits:
    """The limits of a worker serving ``config``."""
    return Limits(
        h1=H1Limits(
            max_request_line=config.max_request_line,
            max_header_count=config.max_header_count,
            max_header_bytes=config.max_header_bytes,
            max_body_size=config.max_body_size,
        ),
        h2=H2DriverLimits(
            protocol=H2Limits(
                max_concurrent_streams=config.h2_max_concurrent_streams,
                initial_window_size=config.h2_initial_window_size,
                connection_window_size=config.h2_connection_window_size,
                max_frame_size=config.h2_max_frame_size,
                max_header_list_size=config.max_header_bytes
                + H2_FIELD_OVERHEAD * config.max_header_count,
                header_table_size=config.h2_header_table_size,
                enable_connect_protocol=config.h2_enable_connect_protocol,
                header_block_margin=config.h2_header_block_margin,
                max_continuation_frames=config.h2_max_continuation_frames,
                reset_budget=config.h2_reset_budget,
                control_frame_budget=config.h2_control_frame_budget,
                small_window_update=config.h2_small_window_update,
                max_queued_control_bytes=config.h2_max_queued_control_bytes,
                closed_streams_remembered=config.h2_closed_streams_remembered,
            ),
            max_header_count=config.max_header_count,
            max_body_size=config.max_body_size,
            write_timeout=config.h2_write_timeout,
            protocols=config.http_protocols,
        ),
        uwsgi=UwsgiLimits(
            max_vars_size=config.cgi_max_vars_size,
            max_var_count=config.cgi_max_var_count,
            max_body_size=config.max_body_size,
        ),
        fastcgi=FastCGILimits(
            max_params_size=config.cgi_max_vars_size,
            max_param_count=config.cgi_max_var_count,
            max_body_size=config.max_body_size,
            max_management_size=config.fastcgi_max_management_size,
            max_connections=config.max_connections,
        ),
        websocket=WSLimits(
            protocol=WSOptions(
                max_message_size=config.ws_max_message_size,
                per_message_deflate=config.ws_per_message_deflate,
                deflate_window_bits=config.ws_deflate_window_bits,
                deflate_memory_level=config.ws_deflate_memory_level,
            ),
            max_queue=config.ws_max_queue,
            ping_interval=config.ws_ping_interval,
            ping_timeout=config.ws_ping_timeout,
            write_limit=config.ws_write_limit,
        ),
        header_timeout=config.header_timeout,
        keepalive_timeout=config.keepalive_timeout,
        max_connections=config.max_connections,
        max_in_flight=config.max_in_flight,
        proxies=ProxyTrust(
            headers=config.proxy_headers,
            allow_ips=config.forwarded_allow_ips,
            source=config.proxy_headers_source,
            protocol=config.proxy_protocol,
        ),
        static=StaticOptions(
            mounts=tuple(parse_mount(mount) for mount in config.static),
            index=config.static_index,
            hidden=config.static_hidden,
            symlinks=config.static_symlinks,
            precompressed=config.static_precompressed,
            cache_control=config.static_cache_control,
            immutable_cache_control=config.static_immutable_cache_control,
            fingerprint=config.static_fingerprint,
        ),
        headers=default_headers(config),
        health_path=None if config.health_path is None else config.health_path.encode("ascii"),
    )


def default_headers(config: Config) -> Headers:
    """``--header Name:Value`` as response fields, checked as the app's are (ConfigError)."""
    out: Headers = []
    for pair in config.headers:
        name, _, value = pair.partition(":")
        field = (name.strip().lower().encode("latin-1"), value.strip().encode("latin-1"))
        try:
            check_response_field(*field)
        except AppError as exc:
            raise ConfigError(f"--header {pair!r}: {exc}") from None
        if field[0] in _FRAMING:
            raise ConfigError(
                f"--header {pair!r}: the protocol writes {name.strip()}, not a setting"
            )
        out.append(field)
    return out
