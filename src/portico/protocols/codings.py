"""Content-coding negotiation: ``Accept-Encoding`` (RFC 9110 §12.5.3) against what is on disk.

:func:`choose_coding` picks among the codings the server has (in its order of preference) and the
identity (no coding):

* each coding's quality is its own ``;q=`` if listed, else that of ``*`` if listed, else 0
  (not acceptable); ``x-gzip`` is ``gzip`` (§8.4.1.3); names are case-insensitive;
* the identity is acceptable unless ``identity;q=0``, or ``*;q=0`` without an ``identity`` entry;
* the highest quality wins; a tie goes to the server's order, and a coding beats the identity;
* no Accept-Encoding at all: the identity. §12.5.3 would allow any coding, but a client that says
  nothing may not decode one, and every server of note does the same;
* nothing acceptable at all (``identity;q=0`` and no coding we have): the identity anyway. §12.5.3
  lets a server "disregard the header field" instead of answering 406, and an uncompressed body
  is more useful to such a client than an error.
* an entry that does not parse (a bad q-value) is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = ["choose_coding", "parse_accept_encoding"]

# codings ; OWS "q=" qvalue (§12.4.2: at most three decimals, at most 1)
_entry = re.compile(
    rb"[ \t]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*"
    rb"(?:;[ \t]*[qQ]=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?))?[ \t]*"
).fullmatch
_ALIASES: Final = {"x-gzip": "gzip"}


def parse_accept_encoding(value: bytes) -> dict[str, int]:
    """Coding name (lower case) → quality in thousandths; malformed entries are left out."""
    qualities: dict[str, int] = {}
    for raw in value.split(b","):
        if not raw.strip(b" \t"):
            continue
        match = _entry(raw)
        if match is None:
            continue
        name = match.group(1).decode("ascii").lower()
        name = _ALIASES.get(name, name)
        q_text = match.group(2)
        quality = 1000 if q_text is None else round(float(q_text) * 1000)
        # a coding listed twice: keep the best (senders do not do it; be generous)
        qualities[name] = max(quality, qualities.get(name, -1))
    return qualities


def choose_coding(value: bytes | None, available: Sequence[str]) -> str | None:
    """The coding to send (one of ``available``), or ``None`` for the identity."""
    if value is None or not available:
        return None
    qualities = parse_accept_encoding(value)
    star = qualities.get("*")
    best: str | None = None
    best_quality = 0
    for coding in available:  # the server's preference order decides ties
        quality = qualities.get(coding, star if star is not None else 0)
        if quality > best_quality:
            best, best_quality = coding, quality
    if best is None:
        return None
    identity = qualities.get("identity")
    if identity is None:
        # §12.5.3: the identity is acceptable unless refused; with no explicit entry it takes
        # the quality of "*" if there is one. Not listed, it does not outrank a listed coding.
        identity = star if star is not None else 1
        if identity > best_quality:
            return None
        return best
    return best if best_quality >= identity else None
