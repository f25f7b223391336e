"""Feeding a sans-I/O gateway protocol (uwsgi, FastCGI) whole, byte by byte and in random splits.

The same idea as ``tests/test_corpus.py`` for HTTP/1.1: a wire-format case must give the same
events however the bytes are cut, so each case is fed in every mode and the results compared.
"""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from hypothesis import strategies as st

from portico.protocols.events import Body, StreamError


class Receiver(Protocol):
    def receive_data(self, data: bytes) -> Sequence[Any]: ...

    def receive_eof(self) -> Sequence[Any]: ...


MODES = ["whole", "bytes", *(f"random{i}" for i in range(4))]


def pieces(data: bytes, mode: str, seed: str = "") -> Iterator[bytes]:
    if mode == "whole" or len(data) < 2:
        yield data
    elif mode == "bytes":
        for i in range(len(data)):
            yield data[i : i + 1]
    else:
        rng = random.Random(f"{seed}:{mode}")
        count = min(len(data) - 1, rng.randint(1, 16))
        yield from split_at(data, rng.sample(range(1, len(data)), count))


def split_at(data: bytes, cuts: Sequence[int]) -> Iterator[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    for start, end in zip([0, *points], [*points, len(data)], strict=True):
        yield data[start:end]


def normalize(events: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Events as plain tuples, consecutive Body pieces joined (how they are cut may differ)."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, Body):
            assert type(event.data) is bytes
            if not event.data:
                continue
            if out and out[-1][0] == "Body" and out[-1][1] == event.stream_id:
                out[-1] = ("Body", event.stream_id, out[-1][2] + event.data)
                continue
        out.append((type(event).__name__, *event))
    return out


def feed(
    make: Callable[[], Receiver], chunks: Iterator[bytes], eof: bool = False
) -> list[tuple[Any, ...]]:
    """Feed the chunks to a new protocol object; return its normalized events."""
    proto = make()
    events: list[Any] = []
    for chunk in chunks:
        events += proto.receive_data(chunk)
    if eof:
        events += proto.receive_eof()
    return normalize(events)


def error_of(events: list[tuple[Any, ...]]) -> tuple[int, str] | None:
    """The ``(status, detail)`` of the StreamError, if any; at most one is ever reported."""
    errors = [e for e in events if e[0] == StreamError.__name__]
    assert len(errors) <= 1, errors
    if not errors:
        return None
    _, _, status, detail = errors[0]
    return status, detail


def whole_and_split(
    make: Callable[[], Receiver], data: bytes, mode: str, seed: str, eof: bool = False
) -> list[tuple[Any, ...]]:
    """The events of ``data`` fed whole, after checking that ``mode`` gives the same ones."""
    whole = feed(make, iter([data]), eof)
    assert feed(make, pieces(data, mode, seed), eof) == whole
    return whole


def same_when_cut(
    make: Callable[[], Receiver], data: bytes, cuts: Sequence[int], eof: bool = False
) -> None:
    assert feed(make, split_at(data, cuts), eof) == feed(make, iter([data]), eof)


#: byte edits (where, modulo the length; the new byte) and cut points, for check_mutation
EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=4)
CUTS = st.lists(st.integers(1, 1 << 20), max_size=8)


def check_mutation(
    make: Callable[[], Receiver],
    valid: bytes,
    edits: Sequence[tuple[int, int]],
    cuts: Sequence[int],
    eof: bool = True,
) -> None:
    """``valid`` (its first 4000 bytes) with some bytes changed: ``receive_data`` returns (never
    raises), the events do not depend on how the bytes are cut, and nothing follows a
    StreamError."""
    changed = bytearray(valid[:4000])
    for at, byte in edits:
        changed[at % len(changed)] = byte
    data = bytes(changed)
    cuts = [c % len(data) for c in cuts]
    events = feed(make, iter([data]), eof)
    assert feed(make, split_at(data, cuts), eof) == events
    kinds = [e[0] for e in events]
    if StreamError.__name__ in kinds:
        assert kinds.index(StreamError.__name__) == len(kinds) - 1, kinds


def peak_memory_while(run: Callable[[], None]) -> int:
    """The peak of Python allocations (bytes) while ``run`` runs."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
