"""HPACK, the header compression of HTTP/2 (RFC 7541), as pure functions and two small classes.

* :class:`Decoder` reads the header blocks a client sends. It keeps the dynamic table (§2.3.2),
  bounded by our SETTINGS_HEADER_TABLE_SIZE (§4.2), and bounds its work: a header list past
  ``max_header_list_size`` (counted as it grows, §4.1 sizes, so a table entry repeated a thousand
  times counts a thousand times) stops being collected, and the block still decodes to its end so
  the table stays in step; then :class:`HeaderListTooLarge` says "refuse this request". Anything
  malformed (a string longer than the block, an index past the table, bad Huffman padding, a size
  update not at the start of the block) is a :class:`CompressionError`: the connection must end.
* :func:`encode_field` / :class:`Encoder` write response fields. They never insert into the
  dynamic table: a field is a static-table index, or a literal "without indexing" (``never
  indexed`` for credentials) with a static name index when there is one. That makes the encoding of
  a field a pure function of the field, so it is computed once per process and cached, and a
  response costs one dictionary look-up per field, shared by every connection. The price is a few
  bytes per response that a per-connection table would save (``server: portico`` is 9 bytes instead
  of 1 on the second response); on the CPU-bound paths Portico cares about, the look-up wins, and
  no state can fall out of step with the peer's decoder.

Huffman decoding (§5.2) runs a small state machine over 4-bit nibbles, built at import from the
code table of Appendix B (``hpack_tables``): every nibble is one table read giving the next state
and at most one decoded byte (no code is shorter than 5 bits).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from portico.protocols.h2_errors import CompressionError, HeaderListTooLarge
from portico.protocols.hpack_tables import HUFFMAN_CODES, HUFFMAN_LENGTHS, STATIC_TABLE

__all__ = [
    "DEFAULT_TABLE_SIZE",
    "NEVER_INDEXED",
    "Decoder",
    "Encoder",
    "encode_field",
    "encode_integer",
    "encode_string",
    "huffman_decode",
    "huffman_encode",
]

#: SETTINGS_HEADER_TABLE_SIZE before any SETTINGS (RFC 9113 §6.5.2)
DEFAULT_TABLE_SIZE: Final = 4096
#: §4.1: an entry's size is its name and value lengths plus 32
ENTRY_OVERHEAD: Final = 32
_STATIC_COUNT: Final = len(STATIC_TABLE)

#: Response fields written as "never indexed" (§6.2.3), so that no intermediary that re-encodes
#: them puts a credential where a compression-ratio attack (CRIME, §7.1) could guess it.
NEVER_INDEXED: Final = frozenset({b"authorization", b"proxy-authorization", b"set-cookie"})

# --------------------------------------------------------------------------------- Huffman

_EMIT: Final = 1 << 8  # the entry decodes one byte (bits 0-7 hold it)
_FAIL: Final = 1 << 9  # the nibble completes EOS, which a string must never contain (§5.2)
_STATE_SHIFT: Final = 10


def _build_huffman_machine() -> tuple[list[int], list[bool]]:
    """The decoding table ``[state * 16 + nibble] -> entry`` and which states may end a string.

    States are the inner nodes of the code tree (the root is state 0). An entry packs the next
    state (from bit 10), the EMIT and FAIL flags and the decoded byte. A string may end only in a
    state reached from the root by at most seven 1 bits: that is padding by a prefix of EOS (§5.2).
    """
    zero: list[int] = [-1]
    one: list[int] = [-1]
    symbol: list[int] = [-1]
    for sym in range(257):
        code = HUFFMAN_CODES[sym]
        node = 0
        for shift in range(HUFFMAN_LENGTHS[sym] - 1, -1, -1):
            branch = one if (code >> shift) & 1 else zero
            child = branch[node]
            if child < 0:
                child = len(symbol)
                zero.append(-1)
                one.append(-1)
                symbol.append(-1)
                branch[node] = child
            node = child
        symbol[node] = sym
    inner = [node for node in range(len(symbol)) if symbol[node] < 0]
    state_of = {node: state for state, node in enumerate(inner)}
    accepting = [False] * len(inner)
    node, depth = 0, 0
    while depth <= 7 and symbol[node] < 0:
        accepting[state_of[node]] = True
        node = one[node]
        depth += 1
    table = [0] * (len(inner) * 16)
    for state, start in enumerate(inner):
        for nibble in range(16):
            node, entry = start, 0
            for shift in (3, 2, 1, 0):
                node = one[node] if (nibble >> shift) & 1 else zero[node]
                sym = symbol[node]
                if sym == 256:
                    entry = _FAIL
                    break
                if sym >= 0:
                    entry = _EMIT | sym
                    node = 0
            if not entry & _FAIL:
                entry |= state_of[node] << _STATE_SHIFT
            table[state * 16 + nibble] = entry
    return table, accepting


_MACHINE, _ACCEPTING = _build_huffman_machine()

# Decoded Huffman strings by their encoded bytes: the same user-agent, accept and cookie strings
# arrive on every connection, and a look-up is far cheaper than a decode. Bounded; cleared when
# full. (A pure function of its input, so sharing it between connections leaks nothing.)
_huffman_cache: Final[dict[bytes, bytes]] = {}
_HUFFMAN_CACHE_ENTRIES: Final = 1024
_HUFFMAN_CACHE_MAX_LEN: Final = 256


def huffman_decode(data: bytes) -> bytes:
    """Decode a Huffman-coded string literal; :class:`CompressionError` if it is not valid."""
    cached = _huffman_cache.get(data)
    if cached is not None:
        return cached
    machine = _MACHINE
    out = bytearray()
    state = 0
    for byte in data:
        entry = machine[(state << 4) | (byte >> 4)]
        if entry & _FAIL:
            raise CompressionError("Huffman string contains EOS")
        if entry & _EMIT:
            out.append(entry & 0xFF)
        entry = machine[((entry >> _STATE_SHIFT) << 4) | (byte & 0xF)]
        if entry & _FAIL:
            raise CompressionError("Huffman string contains EOS")
        if entry & _EMIT:
            out.append(entry & 0xFF)
        state = entry >> _STATE_SHIFT
    if not _ACCEPTING[state]:
        raise CompressionError("Huffman string has invalid padding")
    decoded = bytes(out)
    if len(data) <= _HUFFMAN_CACHE_MAX_LEN:
        if len(_huffman_cache) >= _HUFFMAN_CACHE_ENTRIES:
            _huffman_cache.clear()
        _huffman_cache[data] = decoded
    return decoded


def huffman_length(data: bytes) -> int:
    """The length in bytes of ``data`` once Huffman-coded."""
    lengths = HUFFMAN_LENGTHS
    bits = 0
    for byte in data:
        bits += lengths[byte]
    return (bits + 7) >> 3


def huffman_encode(data: bytes) -> bytes:
    """Huffman-code ``data``, padded with the most significant bits of EOS (all ones)."""
    codes = HUFFMAN_CODES
    lengths = HUFFMAN_LENGTHS
    out = bytearray()
    acc = 0
    bits = 0
    for byte in data:
        acc = (acc << lengths[byte]) | codes[byte]
        bits += lengths[byte]
        while bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
        acc &= (1 << bits) - 1
    if bits:
        out.append(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xFF)
    return bytes(out)


# ------------------------------------------------------------------------------ primitives


def encode_integer(value: int, prefix_bits: int, flags: int) -> bytes:
    """§5.1: ``value`` on a ``prefix_bits``-bit prefix; ``flags`` are the first byte's high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_string(data: bytes, huffman: bool = True) -> bytes:
    """§5.2: a string literal, Huffman-coded when that is shorter."""
    if huffman:
        coded_length = huffman_length(data)
        if coded_length < len(data):
            return encode_integer(coded_length, 7, 0x80) + huffman_encode(data)
    return encode_integer(len(data), 7, 0) + data


def _read_integer(data: bytes, pos: int, mask: int) -> tuple[int, int]:
    """§5.1: the integer with its prefix in the ``mask`` bits of ``data[pos]``; where it ends."""
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise CompressionError("header block ends inside an integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:  # no length, index or size of ours needs more than 2^32
            raise CompressionError("integer too large in header block")


def _read_string(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(data):
        raise CompressionError("header block ends before a string")
    huffman = data[pos] & 0x80
    length, pos = _read_integer(data, pos, 0x7F)
    end = pos + length
    if end > len(data):
        raise CompressionError("string literal longer than the header block")
    raw = data[pos:end]
    if huffman:
        return huffman_decode(raw), end
    return raw, end


# --------------------------------------------------------------------------------- decoder


class Decoder:
    """The decoding side of one connection's HPACK context (requests, for a server)."""

    def __init__(
        self, max_table_size: int = DEFAULT_TABLE_SIZE, max_header_list_size: int = 65536
    ) -> None:
        #: the largest size the encoder may ask for: our SETTINGS_HEADER_TABLE_SIZE (§4.2)
        self.max_allowed_table_size = max_table_size
        #: the bound on a decoded list, in §4.1 sizes (SETTINGS_MAX_HEADER_LIST_SIZE)
        self.max_header_list_size = max_header_list_size
        #: positions in the last decoded list of the fields sent "never indexed" (§6.2.3), for a
        #: caller that re-encodes them; empty nearly always
        self.never_indexed: list[int] = []
        self._max_size = max_table_size
        self._size = 0
        self._entries: list[tuple[bytes, bytes]] = []  # newest last

    @property
    def table_size(self) -> int:
        return self._size

    def set_max_allowed_table_size(self, size: int) -> None:
        """Our SETTINGS_HEADER_TABLE_SIZE changed (and the peer acknowledged it)."""
        self.max_allowed_table_size = size
        if self._max_size > size:
            self._resize(size)

    def _resize(self, size: int) -> None:
        self._max_size = size
        entries = self._entries
        while self._size > size:
            name, value = entries.pop(0)
            self._size -= len(name) + len(value) + ENTRY_OVERHEAD

    def _add(self, field: tuple[bytes, bytes]) -> None:
        """§4.4: insert, evicting the oldest entries; an entry larger than the table empties it."""
        size = len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
        entries = self._entries
        if size > self._max_size:
            entries.clear()
            self._size = 0
            return
        limit = self._max_size - size
        while self._size > limit:
            name, value = entries.pop(0)
            self._size -= len(name) + len(value) + ENTRY_OVERHEAD
        entries.append(field)
        self._size += size

    def _get(self, index: int) -> tuple[bytes, bytes]:
        """§2.3.3: the static table, then the dynamic one newest first; 0 and past the end fail."""
        if index <= _STATIC_COUNT:
            if index == 0:
                raise CompressionError("header index 0")
            return STATIC_TABLE[index - 1]
        entries = self._entries
        position = len(entries) - (index - _STATIC_COUNT)
        if position < 0:
            raise CompressionError("header index past the end of the table")
        return entries[position]

    def decode(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Decode one complete header block.

        :raises CompressionError: the block is malformed; the connection must end.
        :raises HeaderListTooLarge: the list passed ``max_header_list_size``; the table is in step.
        """
        headers: list[tuple[bytes, bytes]] = []
        if self.never_indexed:
            self.never_indexed = []
        limit = self.max_header_list_size
        list_size = 0
        seen_field = False
        pos = 0
        end = len(data)
        while pos < end:
            byte = data[pos]
            if byte & 0x80:  # §6.1 indexed field: most of a request, after the first
                index = byte & 0x7F
                if index == 0x7F:
                    index, pos = _read_integer(data, pos, 0x7F)
                else:
                    pos += 1
                field = STATIC_TABLE[index - 1] if 0 < index <= _STATIC_COUNT else self._get(index)
            elif byte & 0x40:  # §6.2.1 literal with incremental indexing
                index, pos = _read_integer(data, pos, 0x3F)
                if index:
                    name = self._get(index)[0]
                else:
                    name, pos = _read_string(data, pos)
                value, pos = _read_string(data, pos)
                field = (name, value)
                self._add(field)
            elif byte & 0x20:  # §6.3 dynamic table size update: only before the first field
                if seen_field:
                    raise CompressionError("table size update after a header field")
                size, pos = _read_integer(data, pos, 0x1F)
                if size > self.max_allowed_table_size:
                    raise CompressionError("table size update above SETTINGS_HEADER_TABLE_SIZE")
                self._resize(size)
                continue
            else:  # §6.2.2 without indexing (0000), §6.2.3 never indexed (0001)
                index, pos = _read_integer(data, pos, 0x0F)
                if index:
                    name = self._get(index)[0]
                else:
                    name, pos = _read_string(data, pos)
                value, pos = _read_string(data, pos)
                field = (name, value)
                if byte & 0x10:
                    self.never_indexed.append(len(headers))
            seen_field = True
            list_size += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
            if list_size <= limit:
                headers.append(field)
        if list_size > limit:
            raise HeaderListTooLarge("request header list larger than the limit")
        return headers


# --------------------------------------------------------------------------------- encoder

_STATIC_FIELD: Final[dict[tuple[bytes, bytes], int]] = {}
_STATIC_NAME: Final[dict[bytes, int]] = {}
for _index, _field in enumerate(STATIC_TABLE, 1):
    if _field[1]:
        _STATIC_FIELD.setdefault(_field, _index)
    _STATIC_NAME.setdefault(_field[0], _index)

_field_cache: Final[dict[tuple[bytes, bytes], bytes]] = {}
_FIELD_CACHE_ENTRIES: Final = 4096


def _encode_field_uncached(name: bytes, value: bytes, never_indexed: bool) -> bytes:
    if not never_indexed:
        index = _STATIC_FIELD.get((name, value), 0)
        if index:
            return bytes((0x80 | index,))  # every static index fits the 7-bit prefix
    flags = 0x10 if never_indexed else 0x00
    index = _STATIC_NAME.get(name, 0)
    head = encode_integer(index, 4, flags) if index else bytes((flags,)) + encode_string(name)
    return head + encode_string(value)


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field, never entering the dynamic table; cached (credentials excepted)."""
    key = (name, value)
    encoded = _field_cache.get(key)
    if encoded is None:
        if name in NEVER_INDEXED:  # rarely repeated and secret: neither cached nor indexed
            return _encode_field_uncached(name, value, True)
        encoded = _encode_field_uncached(name, value, False)
        if len(_field_cache) >= _FIELD_CACHE_ENTRIES:
            _field_cache.clear()
        _field_cache[key] = encoded
    return encoded


class Encoder:
    """The encoding side of one connection (responses). Stateless but for table-size updates.

    Because nothing is ever inserted, our dynamic table stays empty whatever size the peer allows;
    still, a decoder may insist on seeing a size update after it lowered SETTINGS_HEADER_TABLE_SIZE
    (RFC 7541 §4.2), so the next block then starts with "size 0", which is always within bounds.
    """

    def __init__(self) -> None:
        self._size_update_due = False

    def peer_table_size_changed(self) -> None:
        self._size_update_due = True

    def take_prefix(self) -> bytes:
        """What must open the next header block: a size update, once, after a change."""
        if self._size_update_due:
            self._size_update_due = False
            return b"\x20"
        return b""

    def encode(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        """A whole header block (names must already be lower-case)."""
        return self.take_prefix() + b"".join([encode_field(n, v) for n, v in headers])
