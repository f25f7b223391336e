"""The public API of the edge modules (PROXY protocol, origin resolution, static files), pinned:
the runtime wires these names in, so a rename or removal must show up here first."""

from __future__ import annotations

import importlib

import pytest

from portico.config import Config
from portico.runtime.limits import build_limits

PUBLIC = {
    "portico.protocols.proxy_header": {
        "DEFAULT_MAX_V2_LENGTH",
        "LOCAL",
        "MAX_V1_LINE",
        "PROXY",
        "TCP4",
        "TCP6",
        "UDP4",
        "UDP6",
        "UNIX",
        "UNIX_DGRAM",
        "UNSPEC",
        "V2_SIGNATURE",
        "ProxyHeader",
        "ProxyHeaderError",
        "ProxyHeaderReader",
        "crc32c",
        "parse_proxy_header",
    },
    "portico.protocols.forwarded": {
        "FORWARDED",
        "X_FORWARDED",
        "Origin",
        "OriginResolver",
        "TrustedProxies",
    },
    "portico.protocols.conditional": {
        "evaluate_preconditions",
        "format_http_date",
        "if_range_allows",
        "parse_http_date",
        "tag_list_matches",
    },
    "portico.protocols.ranges": {
        "MAX_RANGES",
        "UNSATISFIABLE",
        "ByteRange",
        "content_range",
        "select_range",
    },
    "portico.protocols.codings": {"choose_coding", "parse_accept_encoding"},
    "portico.gateways.static_options": {
        "CODING_SUFFIXES",
        "StaticOptions",
        "parse_mount",
    },
    "portico.gateways.static": {
        "StaticFiles",
        "StaticMount",
        "StaticOptions",
        "StaticStream",
        "parse_mount",
    },
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names(module: str) -> None:
    loaded = importlib.import_module(module)
    assert set(loaded.__all__) == PUBLIC[module]
    for name in loaded.__all__:
        assert hasattr(loaded, name), name


def test_static_options_defaults_come_from_the_settings() -> None:
    options = build_limits(Config()).static
    assert (options.mounts, options.index, options.hidden, options.symlinks) == (
        (),
        "index.html",
        False,
        "inside",
    )
    assert options.precompressed == ("br", "zstd", "gzip")
    assert options.cache_control == "no-cache"
    assert options.immutable_cache_control == "public, max-age=31536000, immutable"
