"""RFC 9110 pieces the static files use: HTTP dates, entity tags and preconditions (§13), Range
(§14) and Accept-Encoding (§12.5.3)."""

from __future__ import annotations

import calendar
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portico.protocols.codings import choose_coding, parse_accept_encoding
from portico.protocols.conditional import (
    evaluate_preconditions,
    format_http_date,
    if_range_allows,
    parse_http_date,
    tag_list_matches,
)
from portico.protocols.ranges import (
    MAX_RANGES,
    UNSATISFIABLE,
    ByteRange,
    content_range,
    select_range,
)

# ------------------------------------------------------------------------------ HTTP dates

SUNDAY = calendar.timegm((1994, 11, 6, 8, 49, 37))


@pytest.mark.parametrize(
    "text",
    [
        b"Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        b"Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        b"Sun Nov  6 08:49:37 1994",  # obsolete asctime
        b"  Sun, 06 Nov 1994 08:49:37 GMT ",
        b"Sun, 06 nov 1994 08:49:37 GMT",  # month names compared case-insensitively
    ],
)
def test_the_three_date_forms_of_rfc9110(text: bytes) -> None:
    assert parse_http_date(text) == SUNDAY


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"yesterday",
        b"Sun, 06 Nov 1994 08:49:37",  # no zone
        b"Sun, 06 Nov 1994 08:49:37 EST",  # only GMT
        b"Sun, 06 Nov 1994 08:49:37 +0000",
        b"Sun, 31 Feb 1994 08:49:37 GMT",  # no such day
        b"Sun, 06 Foo 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 25:49:37 GMT",
        b"Sun, 6 Nov 1994 08:49:37 GMT",  # IMF-fixdate has two-digit days
        b"1994-11-06T08:49:37Z",
        b"784111777",
    ],
)
def test_not_a_date(text: bytes) -> None:
    assert parse_http_date(text) is None


def test_leap_second_and_two_digit_years() -> None:
    assert parse_http_date(b"Sun, 06 Nov 1994 08:49:60 GMT") == SUNDAY + 22
    this_year = time.gmtime().tm_year
    near = (this_year + 10) % 100  # ten years ahead: this century
    far = (this_year + 60) % 100  # sixty years ahead: the past century
    assert time.gmtime(parse_http_date(b"Monday, 01-Jan-%02d 00:00:00 GMT" % near)).tm_year == (
        this_year + 10
    )
    assert time.gmtime(parse_http_date(b"Monday, 01-Jan-%02d 00:00:00 GMT" % far)).tm_year == (
        this_year + 60 - 100
    )


@given(st.integers(0, 2**33))
def test_format_and_parse_round_trip(timestamp: int) -> None:
    text = format_http_date(timestamp)
    assert len(text) == 29 and text.endswith(b" GMT")
    assert parse_http_date(text) == timestamp


# ------------------------------------------------------------------------------ entity tags

TAG = b'"abc-123"'


@pytest.mark.parametrize(
    ("field", "strong", "weak"),
    [
        (b'"abc-123"', True, True),
        (b'W/"abc-123"', False, True),  # a weak tag never matches strongly
        (b'"other", "abc-123"', True, True),
        (b'"other" ,\tW/"abc-123" ', False, True),
        (b"*", True, True),
        (b" * ", True, True),
        (b'"other"', False, False),
        (b'"abc-123', False, False),  # unterminated
        (b"abc-123", False, False),  # unquoted
        (b'"abc-123" "x"', False, False),  # not a list
        (b'w/"abc-123"', False, False),  # "W/" is case-sensitive
        (b'"abc-123"x', False, False),
        (b"", False, False),
        (b'*, "abc-123"', False, False),
    ],
)
def test_tag_lists(field: bytes, strong: bool, weak: bool) -> None:
    assert tag_list_matches(field, TAG, strong=True) is strong
    assert tag_list_matches(field, TAG, strong=False) is weak


LM = SUNDAY
BEFORE = format_http_date(LM - 60)
AT = format_http_date(LM)
AFTER = format_http_date(LM + 60)


@pytest.mark.parametrize(
    ("if_match", "if_unmodified", "if_none_match", "if_modified", "expected"),
    [
        (None, None, None, None, 0),
        # 1. If-Match
        (TAG, None, None, None, 0),
        (b'"nope"', None, None, None, 412),
        (b'W/"abc-123"', None, None, None, 412),
        (b"*", None, None, None, 0),
        (b"garbage", None, None, None, 412),
        # 2. If-Unmodified-Since (only without If-Match)
        (None, BEFORE, None, None, 412),
        (None, AT, None, None, 0),
        (None, AFTER, None, None, 0),
        (None, b"not a date", None, None, 0),
        (TAG, BEFORE, None, None, 0),
        # 3. If-None-Match (weak comparison)
        (None, None, TAG, None, 304),
        (None, None, b'W/"abc-123"', None, 304),
        (None, None, b'"nope"', None, 0),
        (None, None, b"*", None, 304),
        # 4. If-Modified-Since (only without If-None-Match)
        (None, None, None, AT, 304),
        (None, None, None, AFTER, 304),
        (None, None, None, BEFORE, 0),
        (None, None, None, b"garbage", 0),
        (None, None, b'"nope"', AT, 0),
        # the order: step 1 before step 3
        (b'"nope"', None, TAG, None, 412),
        (TAG, None, TAG, None, 304),
    ],
)
def test_preconditions_in_the_order_of_rfc9110_13_2_2(
    if_match: bytes | None,
    if_unmodified: bytes | None,
    if_none_match: bytes | None,
    if_modified: bytes | None,
    expected: int,
) -> None:
    got = evaluate_preconditions(if_match, if_unmodified, if_none_match, if_modified, TAG, LM)
    assert got == expected


def test_if_range() -> None:
    now = LM + 3600
    assert if_range_allows(TAG, TAG, LM, now)
    assert not if_range_allows(b'W/"abc-123"', TAG, LM, now)  # strong comparison
    assert not if_range_allows(b'"other"', TAG, LM, now)
    assert if_range_allows(AT, TAG, LM, now)
    assert not if_range_allows(AFTER, TAG, LM, now)  # only an exact date
    assert not if_range_allows(BEFORE, TAG, LM, now)
    assert not if_range_allows(AT, TAG, LM, LM + 0.5)  # a date less than 1 s old is weak
    assert not if_range_allows(b"garbage", TAG, LM, now)


# ---------------------------------------------------------------------------------- Range


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (b"bytes=0-4", ByteRange(0, 5)),
        (b"bytes=6-", ByteRange(6, 12)),
        (b"bytes=-6", ByteRange(6, 12)),
        (b"bytes=-100", ByteRange(0, 12)),  # a suffix longer than the file: all of it
        (b"bytes=0-999", ByteRange(0, 12)),  # last-pos past the end: clamped
        (b"bytes=11-11", ByteRange(11, 12)),
        (b"BYTES=0-0", ByteRange(0, 1)),  # the unit is case-insensitive
        (b"bytes= 0-4 ", ByteRange(0, 5)),
        (b"bytes=0-4,", ByteRange(0, 5)),  # empty list elements are ignored
        (b"bytes=0-4,2-8", ByteRange(0, 9)),  # overlapping: merged
        (b"bytes=0-4,5-8", ByteRange(0, 9)),  # touching: merged
        (b"bytes=5-8,0-4", ByteRange(0, 9)),
        (b"bytes=0-4,20-30", ByteRange(0, 5)),  # the unsatisfiable one is dropped
        (b"bytes=0-0,2-2", None),  # disjoint: the whole file
        (b"bytes=0-1,4-5,8-9", None),
        (b"bytes=12-", UNSATISFIABLE),
        (b"bytes=100-200", UNSATISFIABLE),
        (b"bytes=-0", UNSATISFIABLE),
        (b"bytes=12-,20-", UNSATISFIABLE),
        (b"bytes=5-1", None),  # first > last: invalid, ignored
        (b"bytes=0-1,5-1", None),
        (b"bytes=a-b", None),
        (b"bytes=-", None),
        (b"bytes=1", None),
        (b"bytes=+1-2", None),
        (b"bytes=0x1-2", None),
        (b"bytes=", None),
        (b"bytes=\xd9\xa1-2", None),  # a non-ASCII digit
        (b"bytes=1-2-3", None),
        (b"items=0-4", None),  # a unit we do not know
        (b"bytes 0-4", None),
        (b" bytes=0-4", None),
        (b"bytes=" + b"1" * 20 + b"-", None),  # absurdly long numbers
        (b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(MAX_RANGES + 1)), None),
    ],
)
def test_select_range(field: bytes, expected: ByteRange | None) -> None:
    assert select_range(field, 12) == expected


def test_many_touching_ranges_up_to_the_limit_still_merge() -> None:
    field = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(MAX_RANGES))
    assert select_range(field, 100) == ByteRange(0, MAX_RANGES)


def test_empty_file_has_no_satisfiable_range() -> None:
    assert select_range(b"bytes=0-", 0) is UNSATISFIABLE
    assert select_range(b"bytes=-5", 0) is UNSATISFIABLE


def test_content_range() -> None:
    assert content_range(ByteRange(0, 5), 12) == b"bytes 0-4/12"


@given(st.integers(0, 10_000), st.binary(max_size=40))
def test_ranges_never_leave_the_file(length: int, spec: bytes) -> None:
    selected = select_range(b"bytes=" + spec, length)
    if selected is not None and selected is not UNSATISFIABLE:
        assert 0 <= selected.start < selected.end <= length


@given(st.integers(1, 10_000), st.integers(0, 20_000), st.integers(0, 20_000))
def test_single_ranges_match_a_model(length: int, first: int, last: int) -> None:
    selected = select_range(b"bytes=%d-%d" % (first, last), length)
    if first > last:
        assert selected is None
    elif first >= length:
        assert selected is UNSATISFIABLE
    else:
        assert selected == ByteRange(first, min(last, length - 1) + 1)


# ------------------------------------------------------------------------- Accept-Encoding

OURS = ["br", "zstd", "gzip"]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (None, None),  # no field: identity
        (b"", None),  # empty: identity only (§12.5.3)
        (b"gzip", "gzip"),
        (b"br", "br"),
        (b"gzip, br", "br"),  # a tie: our order
        (b"gzip, deflate, br, zstd", "br"),
        (b"GZIP", "gzip"),
        (b"x-gzip", "gzip"),
        (b"gzip;q=0.5, br;q=0.4", "gzip"),
        (b"gzip; q=0.5 , br ;q=0.6", "br"),
        (b"br;q=0, gzip", "gzip"),
        (b"br;q=0, gzip;q=0", None),
        (b"*", "br"),
        (b"*;q=0.5, gzip;q=0.2", "br"),  # br gets the 0.5 of "*"
        (b"*;q=0", None),
        (b"identity", None),
        (b"gzip;q=0.5, identity", None),  # identity ranks higher
        (b"gzip, identity", "gzip"),  # a tie: a coding beats the identity
        (b"gzip;q=0.5, *;q=0.8", "br"),
        (b"*;q=0.8, br;q=0.1", "zstd"),
        (b"identity;q=0", None),  # nothing we have: the identity anyway
        (b"gzip;q=0.001", "gzip"),
        (b"gzip;q=1.0", "gzip"),
        (b"gzip;q=1.5", None),  # a bad q-value: the entry is skipped
        (b"gzip;q=0.0001", None),
        (b"gzip;q=abc, br", "br"),
        (b"gzip;level=9", None),
        (b"compress, deflate", None),
        (b";;,,", None),
    ],
)
def test_choose_coding(field: bytes | None, expected: str | None) -> None:
    assert choose_coding(field, OURS) == expected


def test_choose_coding_only_picks_what_we_have() -> None:
    assert choose_coding(b"br, gzip", ["gzip"]) == "gzip"
    assert choose_coding(b"br", ["gzip"]) is None
    assert choose_coding(b"br", []) is None


def test_parse_accept_encoding() -> None:
    assert parse_accept_encoding(b"gzip;q=0.5, br, gzip;q=0.7, *;q=0") == {
        "gzip": 700,
        "br": 1000,
        "*": 0,
    }
