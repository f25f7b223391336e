"""Every HTTP/2 bound comes from its setting, in ``runtime.limits`` only; none has a default of
its own (the rule "every default declared once")."""

from __future__ import annotations

import dataclasses

import pytest

from portico.config import Config
from portico.protocols.h2_settings import H2Limits
from portico.runtime.limits import H2_FIELD_OVERHEAD, build_limits

#: H2Limits field -> the setting it is built from (the header list has its own test below)
_FROM_SETTING = {
    "max_concurrent_streams": "h2_max_concurrent_streams",
    "initial_window_size": "h2_initial_window_size",
    "connection_window_size": "h2_connection_window_size",
    "max_frame_size": "h2_max_frame_size",
    "header_table_size": "h2_header_table_size",
    "enable_connect_protocol": "h2_enable_connect_protocol",
    "header_block_margin": "h2_header_block_margin",
    "max_continuation_frames": "h2_max_continuation_frames",
    "reset_budget": "h2_reset_budget",
    "control_frame_budget": "h2_control_frame_budget",
    "small_window_update": "h2_small_window_update",
    "max_queued_control_bytes": "h2_max_queued_control_bytes",
    "closed_streams_remembered": "h2_closed_streams_remembered",
}


def test_h2_limits_have_no_defaults_of_their_own() -> None:
    for field in dataclasses.fields(H2Limits):
        assert field.default is dataclasses.MISSING, field.name
    with pytest.raises(TypeError):
        H2Limits()  # type: ignore[call-arg]


def test_every_field_is_accounted_for() -> None:
    names = {field.name for field in dataclasses.fields(H2Limits)}
    assert names == {*_FROM_SETTING, "max_header_list_size"}


@pytest.mark.parametrize(("field", "setting"), sorted(_FROM_SETTING.items()))
def test_each_field_follows_its_setting(field: str, setting: str) -> None:
    default = getattr(Config(), setting)
    assert getattr(build_limits(Config()).h2.protocol, field) == default
    changed: object = (not default) if isinstance(default, bool) else default * 2 + 1
    if field == "max_frame_size":
        changed = 32768
    limits = build_limits(Config(**{setting: changed})).h2.protocol
    assert getattr(limits, field) == changed


def test_the_header_list_bound_is_the_http1_one() -> None:
    limits = build_limits(Config(max_header_bytes=1000, max_header_count=10)).h2
    assert limits.protocol.max_header_list_size == 1000 + 10 * H2_FIELD_OVERHEAD
    assert limits.max_header_count == 10


def test_driver_bounds_follow_their_settings() -> None:
    config = Config(max_body_size=123, h2_write_timeout=7.0, http_protocols=("h2",))
    limits = build_limits(config).h2
    assert (limits.max_body_size, limits.write_timeout, limits.protocols) == (123, 7.0, ("h2",))
