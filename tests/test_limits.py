"""Every protocol limit comes from its setting, built in one place (``runtime.limits``).

The defaults are declared once, in the settings table: the limit objects have none of their own,
and each of their fields is taken from the setting named here. A new limit field without a row in
this table fails the test, so a default cannot slip back into a protocol module.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from portico.config import Config
from portico.errors import ConfigError
from portico.gateways.static_options import StaticOptions
from portico.protocols.fastcgi import FastCGILimits
from portico.protocols.h2_settings import H2Limits
from portico.protocols.http11 import H1Limits
from portico.protocols.uwsgi import UwsgiLimits
from portico.protocols.websocket import WSOptions
from portico.runtime.limits import (
    H2_FIELD_OVERHEAD,
    H2DriverLimits,
    Limits,
    ProxyTrust,
    WSLimits,
    build_limits,
)

# limit object field -> (setting, a value that is not its default)
SOURCES: dict[str, tuple[str, Any]] = {
    "h1.max_request_line": ("max_request_line", 1234),
    "h1.max_header_count": ("max_header_count", 17),
    "h1.max_header_bytes": ("max_header_bytes", 4321),
    "h1.max_body_size": ("max_body_size", 99),
    "uwsgi.max_vars_size": ("cgi_max_vars_size", 2345),
    "uwsgi.max_var_count": ("cgi_max_var_count", 23),
    "uwsgi.max_body_size": ("max_body_size", 99),
    "fastcgi.max_params_size": ("cgi_max_vars_size", 2345),
    "fastcgi.max_param_count": ("cgi_max_var_count", 23),
    "fastcgi.max_body_size": ("max_body_size", 99),
    "fastcgi.max_management_size": ("fastcgi_max_management_size", 512),
    "fastcgi.max_connections": ("max_connections", 55),
    "health_path": ("health_path", b"/hz"),
    "websocket.protocol.max_message_size": ("ws_max_message_size", 777),
    "websocket.protocol.per_message_deflate": ("ws_per_message_deflate", False),
    "websocket.protocol.deflate_window_bits": ("ws_deflate_window_bits", 9),
    "websocket.protocol.deflate_memory_level": ("ws_deflate_memory_level", 2),
    "websocket.max_queue": ("ws_max_queue", 3),
    "websocket.ping_interval": ("ws_ping_interval", 7.5),
    "websocket.ping_timeout": ("ws_ping_timeout", 2.5),
    "websocket.write_limit": ("ws_write_limit", 999),
    "header_timeout": ("header_timeout", 3.0),
    "keepalive_timeout": ("keepalive_timeout", 11.0),
    "max_connections": ("max_connections", 55),
    "max_in_flight": ("max_in_flight", 66),
    "proxies.headers": ("proxy_headers", False),
    "proxies.allow_ips": ("forwarded_allow_ips", "10.0.0.0/8"),
    "proxies.source": ("proxy_headers_source", "forwarded"),
    "proxies.protocol": ("proxy_protocol", True),
    "static.mounts": ("static", (("/s", "/srv"),)),
    "static.index": ("static_index", "home.htm"),
    "static.hidden": ("static_hidden", True),
    "static.symlinks": ("static_symlinks", "deny"),
    "static.precompressed": ("static_precompressed", ("gzip",)),
    "static.cache_control": ("static_cache_control", "max-age=60"),
    "static.immutable_cache_control": ("static_immutable_cache_control", "public"),
    "static.fingerprint": ("static_fingerprint", "-[0-9]+"),
    "headers": ("headers", [(b"x-a", b"1")]),
    "h2.protocol.max_concurrent_streams": ("h2_max_concurrent_streams", 7),
    "h2.protocol.initial_window_size": ("h2_initial_window_size", 65535),
    "h2.protocol.connection_window_size": ("h2_connection_window_size", 70000),
    "h2.protocol.max_frame_size": ("h2_max_frame_size", 32768),
    "h2.protocol.header_table_size": ("h2_header_table_size", 0),
    "h2.protocol.enable_connect_protocol": ("h2_enable_connect_protocol", False),
    "h2.protocol.header_block_margin": ("h2_header_block_margin", 100),
    "h2.protocol.max_continuation_frames": ("h2_max_continuation_frames", 4),
    "h2.protocol.reset_budget": ("h2_reset_budget", 9),
    "h2.protocol.control_frame_budget": ("h2_control_frame_budget", 99),
    "h2.protocol.small_window_update": ("h2_small_window_update", 10),
    "h2.protocol.max_queued_control_bytes": ("h2_max_queued_control_bytes", 4096),
    "h2.protocol.closed_streams_remembered": ("h2_closed_streams_remembered", 8),
    "h2.max_header_count": ("max_header_count", 17),
    "h2.max_body_size": ("max_body_size", 99),
    "h2.write_timeout": ("h2_write_timeout", 4.5),
    "h2.protocols": ("http_protocols", ("h2",)),
}
#: fields built from more than one setting (each has its own test below)
DERIVED = {"h2.protocol.max_header_list_size"}
# settings whose value the limit object holds in another form
SPELLED: dict[str, Any] = {"static": ("/s=/srv",), "headers": ("X-A: 1",), "health_path": "/hz"}


def leaf_fields(cls: type, prefix: str = "") -> list[str]:
    """The dotted names of every plain field of a limits dataclass and those it contains."""
    hints = typing.get_type_hints(cls)
    names = []
    for field in dataclasses.fields(cls):
        if field.name.startswith("_"):
            continue  # derived (WSOptions' compressor factory)
        kind = hints[field.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            names += leaf_fields(kind, f"{prefix}{field.name}.")
        else:
            names.append(prefix + field.name)
    return names


def value_at(limits: Limits, path: str) -> Any:
    value: Any = limits
    for part in path.split("."):
        value = getattr(value, part)
    return value


def test_every_limit_field_has_its_setting() -> None:
    assert sorted(leaf_fields(Limits)) == sorted([*SOURCES, *DERIVED])


def test_the_http2_header_list_is_the_http1_bound() -> None:
    """RFC 9113 §6.5.2 counts a field as its name, its value and 32 octets."""
    limits = build_limits(Config(max_header_bytes=1000, max_header_count=10))
    assert limits.h2.protocol.max_header_list_size == 1000 + 10 * H2_FIELD_OVERHEAD
    assert H2_FIELD_OVERHEAD == 32


@pytest.mark.parametrize("path", sorted(SOURCES))
def test_each_limit_is_built_from_its_setting(path: str) -> None:
    setting, value = SOURCES[path]
    given = SPELLED.get(setting, value)
    assert getattr(Config(), setting) != given  # the test value is not the default
    assert value_at(build_limits(Config(**{setting: given})), path) == value
    if setting not in SPELLED:
        assert value_at(build_limits(Config()), path) == getattr(Config(), setting)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("X-A: a\rb", "CR, LF or NUL"),
        ("Bad Name: 1", "invalid response header name"),
        ("Content-Length: 3", "the protocol writes Content-Length"),
        ("connection: close", "the protocol writes connection"),
    ],
)
def test_default_headers_are_checked_as_the_apps_are(header: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_limits(Config(headers=(header,)))


@pytest.mark.parametrize(
    "cls",
    [
        H1Limits,
        H2Limits,
        H2DriverLimits,
        UwsgiLimits,
        FastCGILimits,
        WSOptions,
        WSLimits,
        ProxyTrust,
        StaticOptions,
        Limits,
    ],
)
def test_limit_objects_declare_no_defaults_of_their_own(cls: type) -> None:
    own = [
        field.name
        for field in dataclasses.fields(cls)
        if not field.name.startswith("_")
        and (
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING
        )
    ]
    assert own == [], f"{cls.__name__} spells defaults the settings table owns: {own}"
