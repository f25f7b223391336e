"""HPACK (RFC 7541): the RFC's own examples, and property tests against the ``hpack`` library."""

from __future__ import annotations

import hpack
import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hypothesis import given, settings
from hypothesis import strategies as st

from portico.protocols.h2_errors import COMPRESSION_ERROR, CompressionError, HeaderListTooLarge
from portico.protocols.hpack import (
    Decoder,
    Encoder,
    encode_field,
    encode_integer,
    encode_string,
    huffman_decode,
    huffman_encode,
)
from portico.protocols.hpack_tables import HUFFMAN_CODES, HUFFMAN_LENGTHS, STATIC_TABLE

# ------------------------------------------------------------------------ specification data


def test_tables_match_an_independent_transcription() -> None:
    assert list(zip(HUFFMAN_CODES, HUFFMAN_LENGTHS, strict=True)) == list(
        zip(REQUEST_CODES, REQUEST_CODES_LENGTH, strict=True)
    )
    assert tuple(hpack.table.HeaderTable.STATIC_TABLE) == STATIC_TABLE


@pytest.mark.parametrize(
    ("value", "prefix", "encoded"),
    [(10, 5, b"\x0a"), (1337, 5, b"\x1f\x9a\x0a"), (42, 8, b"\x2a")],  # RFC 7541 C.1.1-C.1.3
)
def test_integer_examples(value: int, prefix: int, encoded: bytes) -> None:
    assert encode_integer(value, prefix, 0) == encoded


def test_request_examples_with_and_without_huffman() -> None:
    # RFC 7541 C.3 (plain literals) and C.4 (Huffman), three requests on one connection each
    first = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")]
    first.append((b":authority", b"www.example.com"))
    second = [*first, (b"cache-control", b"no-cache")]
    third = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html")]
    third += [(b":authority", b"www.example.com"), (b"custom-key", b"custom-value")]
    plain = [
        "828684410f7777772e6578616d706c652e636f6d",
        "828684be58086e6f2d6361636865",
        "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
    ]
    huffman = [
        "828684418cf1e3c2e5f23a6ba0ab90f4ff",
        "828684be5886a8eb10649cbf",
        "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
    ]
    for blocks in (plain, huffman):
        decoder = Decoder()
        assert [decoder.decode(bytes.fromhex(b)) for b in blocks] == [first, second, third]
        assert decoder.table_size == 164  # C.3.3: three entries


# ------------------------------------------------------------------------ reference properties

_names = st.sampled_from(
    [b"content-type", b"user-agent", b"x-trace", b"cookie", b"accept", b"authorization", b"a"]
) | st.binary(min_size=1, max_size=20).map(lambda b: b.lower())
_fields = st.tuples(_names, st.binary(max_size=80))
_lists = st.lists(_fields, max_size=12)


@given(blocks=st.lists(_lists, min_size=1, max_size=6), table=st.sampled_from([0, 64, 256, 4096]))
@settings(max_examples=150, deadline=None)
def test_decodes_what_hpack_encodes(blocks: list[list[tuple[bytes, bytes]]], table: int) -> None:
    encoder = hpack.Encoder()
    encoder.header_table_size = table  # the next block starts with a size update
    decoder = Decoder(max_table_size=4096, max_header_list_size=1 << 20)
    for headers in blocks:
        for huffman in (True, False):
            assert decoder.decode(encoder.encode(headers, huffman=huffman)) == headers


@given(blocks=st.lists(_lists, min_size=1, max_size=4))
@settings(max_examples=100, deadline=None)
def test_hpack_decodes_what_we_encode(blocks: list[list[tuple[bytes, bytes]]]) -> None:
    encoder = Encoder()
    decoder = hpack.Decoder()
    for headers in blocks:
        assert decoder.decode(encoder.encode(headers), raw=True) == headers
    assert not decoder.header_table.dynamic_entries  # we never insert


@given(st.binary(max_size=300))
def test_huffman_round_trip_and_reference(data: bytes) -> None:
    encoded = huffman_encode(data)
    assert encoded == HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(data)
    assert huffman_decode(encoded) == data


def test_never_indexed_fields_are_reported_and_written_so() -> None:
    block = hpack.Encoder().encode(
        [(b"accept", b"*/*"), hpack.NeverIndexedHeaderTuple(b"authorization", b"secret")]
    )
    decoder = Decoder()
    assert decoder.decode(block) == [(b"accept", b"*/*"), (b"authorization", b"secret")]
    assert decoder.never_indexed == [1]
    assert decoder.table_size == len(b"accept*/*") + 32  # the secret stayed out of the table
    ours = encode_field(b"authorization", b"secret")
    assert ours[0] & 0xF0 == 0x10  # §6.2.3 representation
    assert isinstance(hpack.Decoder().decode(ours)[0], hpack.NeverIndexedHeaderTuple)


def test_static_fields_are_one_byte() -> None:
    assert encode_field(b":status", b"200") == b"\x88"
    assert encode_field(b":status", b"404") == b"\x8d"
    assert encode_field(b"content-type", b"text/plain")[0] == 0x0F  # name index 31: 4-bit prefix


def test_size_update_follows_a_smaller_peer_table() -> None:
    encoder = Encoder()
    assert encoder.encode([(b"a", b"b")])[0] != 0x20
    encoder.peer_table_size_changed()
    assert encoder.encode([(b"a", b"b")])[0] == 0x20  # "size 0": always within the peer's bound
    assert encoder.encode([(b"a", b"b")])[0] != 0x20


# ------------------------------------------------------------------------ malformed input


@pytest.mark.parametrize(
    "block",
    [
        b"\x80",  # index 0
        b"\xbe",  # index 62: the dynamic table is empty
        b"\xff\xff\xff\xff\xff\xff\x7f",  # an integer past 2^32
        b"\xff",  # ends inside an integer
        b"\x40\x05abc",  # name longer than the block
        b"\x00\x01a\x7f\x10",  # value length past the end
        b"\x00",  # ends before the name
        b"\x40\x01a\x82\xff\xff",  # Huffman value with 16 bits of padding
        b"\x40\x01a\x81\x00",  # Huffman padding that is not EOS's ones
        b"\x40\x01a\x84\xff\xff\xff\xff",  # a Huffman string that contains EOS
        b"\x82\x3f\xe1\x1f",  # size update after a field
        b"\x3f\xe2\x1f",  # size update to 4097, above SETTINGS_HEADER_TABLE_SIZE
    ],
)
def test_malformed_blocks_are_compression_errors(block: bytes) -> None:
    with pytest.raises(CompressionError) as caught:
        Decoder().decode(block)
    assert caught.value.error_code == COMPRESSION_ERROR


def test_size_updates_are_allowed_at_the_start_and_evict() -> None:
    decoder = Decoder()
    decoder.decode(b"\x40\x01a\x01b")
    assert decoder.table_size == 34
    assert decoder.decode(b"\x20\x3f\xe1\x1f\x82") == [(b":method", b"GET")]  # 0, then 4096
    assert decoder.table_size == 0
    with pytest.raises(CompressionError):
        decoder.decode(b"\xbe")


def test_an_entry_larger_than_the_table_empties_it() -> None:
    decoder = Decoder(max_table_size=64)
    decoder.decode(b"\x40\x01a\x01b")
    decoder.decode(b"\x40\x01c" + encode_string(b"x" * 100, huffman=False))
    assert decoder.table_size == 0


def test_hpack_bomb_is_bounded_and_keeps_the_table_in_step() -> None:
    # one 4 KiB entry, then a block of 1-byte references to it: 4 MiB decoded from 1 KiB
    encoder = hpack.Encoder()
    decoder = Decoder(max_table_size=8192, max_header_list_size=16384)
    big = [(b"x-big", b"v" * 4000)]
    decoder.decode(encoder.encode(big))
    bomb = b"\xbe" * 1000
    with pytest.raises(HeaderListTooLarge):
        decoder.decode(bomb)
    assert decoder.decode(encoder.encode([(b"after", b"ok")])) == [(b"after", b"ok")]
