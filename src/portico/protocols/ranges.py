"""Range requests (RFC 9110 §14): which bytes of a representation one response carries.

The policy, and why:

* One range (``first-last``, ``first-``, ``-suffix``) gets a 206 with ``Content-Range``.
* Several ranges are merged where they overlap or touch (§14.2 allows coalescing); if one range is
  left, it is served like a single one. If more are left, the Range field is ignored and the whole
  representation is sent with 200, which §14.2 allows ("A server MAY ignore the Range header
  field"). No multipart/byteranges: the response body is one contiguous piece of the file, so the
  runtime can send it with one ``sendfile``, and no client can make the server assemble many small
  parts — the amplification of Apache's CVE-2011-3192, where a few hundred overlapping ranges of one
  file made every request cost memory. Real clients (browsers' media and PDF viewers, download
  managers) ask for one range at a time.
* More than :data:`MAX_RANGES` ranges, a unit other than ``bytes``, or a range that does not parse
  (including first > last) make the whole field ignored: 200.
* Nothing satisfiable (every first-pos at or past the end, a zero suffix, an empty file) is 416
  with ``Content-Range: bytes */LENGTH`` (§15.5.17).
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = ["MAX_RANGES", "UNSATISFIABLE", "ByteRange", "content_range", "select_range"]

#: More ranges than this in one Range field: the field is ignored.
MAX_RANGES: Final = 16


class ByteRange(NamedTuple):
    """Bytes ``start`` up to (not including) ``end`` of the representation."""

    start: int
    end: int


#: The result for a Range field with nothing satisfiable (a real range never has end == start).
UNSATISFIABLE: Final = ByteRange(0, 0)

# 1*DIGIT, bounded so a client cannot make us build a huge integer
_MAX_DIGITS: Final = 19


def _position(text: bytes) -> int:
    """A non-negative decimal, or -1 when it is not one."""
    if not text or len(text) > _MAX_DIGITS or not text.isdigit():  # bytes.isdigit: ASCII only
        return -1
    return int(text)


def select_range(value: bytes, length: int) -> ByteRange | None:
    """The one range of ``length`` bytes to send for a Range field ``value``.

    Returns ``None`` to ignore the field (send everything with 200), :data:`UNSATISFIABLE` for 416,
    or the range for a 206.
    """
    unit, equals, specs = value.partition(b"=")
    if not equals or unit.strip(b" \t").lower() != b"bytes" or unit[:1] in (b" ", b"\t"):
        return None  # §14.1: a unit we do not know (or no unit): ignore the field
    ranges: list[ByteRange] = []
    count = 0
    for raw in specs.split(b","):
        spec = raw.strip(b" \t")
        if not spec:
            continue  # §5.6.1: empty list elements are ignored
        count += 1
        if count > MAX_RANGES:
            return None
        first_text, dash, last_text = spec.partition(b"-")
        if not dash:
            return None
        if not first_text:  # suffix-range "-N": the last N bytes
            suffix = _position(last_text)
            if suffix < 0:
                return None
            if suffix > 0 and length > 0:
                ranges.append(ByteRange(max(0, length - suffix), length))
            continue
        first = _position(first_text)
        if first < 0:
            return None
        if last_text:
            last = _position(last_text)
            if last < first:  # not digits, or first > last: an invalid range-spec
                return None
            end = min(last + 1, length)
        else:
            end = length
        if first < length:  # §14.1.1: satisfiable when first-pos < length
            ranges.append(ByteRange(first, end))
    if count == 0:
        return None
    if not ranges:
        return UNSATISFIABLE
    if len(ranges) == 1:
        return ranges[0]
    ranges.sort()
    start, end = ranges[0]
    for other in ranges[1:]:
        if other.start > end:
            return None  # disjoint ranges would need multipart: send the whole representation
        end = max(end, other.end)
    return ByteRange(start, end)


def content_range(chosen: ByteRange, length: int) -> bytes:
    """The ``Content-Range`` value of a 206 (§14.4): ``bytes first-last/length``."""
    return b"bytes %d-%d/%d" % (chosen.start, chosen.end - 1, length)
