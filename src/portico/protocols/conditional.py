"""Conditional requests (RFC 9110 §13): validators, HTTP dates and the order preconditions run in.

Used by the static file gateway; written against request header values only, so any response with
an entity tag and a modification time can use it.

* Entity tags (§8.8.3) are compared strongly for ``If-Match`` and ``If-Range`` and weakly for
  ``If-None-Match`` (§13.1.1, §13.1.2, §13.1.5). A list that does not parse matches nothing: for
  ``If-Match`` that means 412 (the safe answer to "only if it is still this one"), for
  ``If-None-Match`` a normal 200.
* Dates (§5.6.7) are IMF-fixdate, or the obsolete RFC 850 and asctime forms, always GMT. A date that
  does not parse is ignored, as §13.1.3 and §13.1.4 require.
* :func:`evaluate_preconditions` follows §13.2.2 step by step.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Final

__all__ = [
    "evaluate_preconditions",
    "format_http_date",
    "if_range_allows",
    "parse_http_date",
    "tag_list_matches",
]

_MONTHS: Final = {
    b"jan": 1,
    b"feb": 2,
    b"mar": 3,
    b"apr": 4,
    b"may": 5,
    b"jun": 6,
    b"jul": 7,
    b"aug": 8,
    b"sep": 9,
    b"oct": 10,
    b"nov": 11,
    b"dec": 12,
}
_TIME = rb"([0-9]{2}):([0-9]{2}):([0-9]{2})"
# §5.6.7: IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT"
_imf = re.compile(
    rb"[A-Za-z]{3}, ([0-9]{2}) ([A-Za-z]{3}) ([0-9]{4}) " + _TIME + rb" GMT"
).fullmatch
# obsolete RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT"
_rfc850 = re.compile(
    rb"[A-Za-z]{6,9}, ([0-9]{2})-([A-Za-z]{3})-([0-9]{2}) " + _TIME + rb" GMT"
).fullmatch
# obsolete asctime "Sun Nov  6 08:49:37 1994"
_asctime = re.compile(
    rb"[A-Za-z]{3} ([A-Za-z]{3}) ([ 0-9][0-9]) " + _TIME + rb" ([0-9]{4})"
).fullmatch
# §8.8.3 entity-tag = [ weak ] opaque-tag; opaque-tag = DQUOTE *etagc DQUOTE
_tag = re.compile(rb'[ \t]*(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|$)')


def format_http_date(timestamp: float) -> bytes:
    """IMF-fixdate (§5.6.7) of a POSIX timestamp, e.g. ``b"Sun, 06 Nov 1994 08:49:37 GMT"``."""
    return formatdate(int(timestamp), usegmt=True).encode("ascii")


def parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch of an HTTP-date in any of its three forms, or None."""
    value = value.strip(b" \t")
    match = _imf(value)
    if match is not None:
        day, month, year, hour, minute, second = match.groups()
    else:
        match = _rfc850(value)
        if match is not None:
            day, month, short_year, hour, minute, second = match.groups()
            year = str(_full_year(int(short_year))).encode()
        else:
            match = _asctime(value)
            if match is None:
                return None
            month, day, hour, minute, second, year = match.groups()
    number = _MONTHS.get(month.lower())
    if number is None:
        return None
    try:
        moment = datetime(
            int(year),
            number,
            int(day),
            int(hour),
            int(minute),
            min(int(second), 59),  # a leap second is the second before it
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return int(moment.timestamp())


def _full_year(short: int) -> int:
    # §5.6.7: a two-digit year more than 50 years in the future is in the past century
    this_year = time.gmtime().tm_year
    year = this_year - this_year % 100 + short
    return year - 100 if year > this_year + 50 else year


def tag_list_matches(field: bytes, etag: bytes, strong: bool) -> bool:
    """Whether an ``If-Match``/``If-None-Match`` value matches ``etag`` (a strong ``"..."``).

    ``*`` matches any current representation. Weak tags (``W/"..."``) never match strongly.
    """
    field = field.strip(b" \t")
    if field == b"*":
        return True
    pos = 0
    end = len(field)
    while pos < end:
        match = _tag.match(field, pos)
        if match is None or match.end() == pos:
            return False  # the list does not parse: it matches nothing
        weak, opaque = match.groups()
        if opaque == etag and not (strong and weak):
            return True
        pos = match.end()
    return False


def evaluate_preconditions(  # noqa: PLR0917 -- the four fields of §13.2.2, in its order
    if_match: bytes | None,
    if_unmodified_since: bytes | None,
    if_none_match: bytes | None,
    if_modified_since: bytes | None,
    etag: bytes,
    last_modified: int,
) -> int:
    """§13.2.2 for a GET or HEAD of a representation that exists: 0 to go on, 304 or 412.

    ``last_modified`` is the whole second the ``Last-Modified`` field shows.
    """
    # 1. If-Match: false → 412
    if if_match is not None:
        if not tag_list_matches(if_match, etag, strong=True):
            return 412
    # 2. otherwise If-Unmodified-Since: modified since then → 412
    elif if_unmodified_since is not None:
        date = parse_http_date(if_unmodified_since)
        if date is not None and last_modified > date:
            return 412
    # 3. If-None-Match: true (a match) → 304 for GET and HEAD
    if if_none_match is not None:
        if tag_list_matches(if_none_match, etag, strong=False):
            return 304
    # 4. otherwise If-Modified-Since: not modified since then → 304
    elif if_modified_since is not None:
        date = parse_http_date(if_modified_since)
        if date is not None and last_modified <= date:
            return 304
    # 5. If-Range is evaluated with the Range field (if_range_allows); 6. perform the method
    return 0


def if_range_allows(value: bytes, etag: bytes, last_modified: int, now: float) -> bool:
    """§13.1.5: whether a Range may be honoured; False means send the whole representation.

    An entity tag must match strongly. A date must equal ``Last-Modified`` exactly, and only counts
    when that date is a strong validator (§8.8.2.2: at least a second older than the response's
    Date), since a file changed twice within a second would otherwise pass.
    """
    value = value.strip(b" \t")
    if value.startswith((b'"', b"W/")):
        return value == etag
    date = parse_http_date(value)
    return date is not None and date == last_modified and now - last_modified >= 1
