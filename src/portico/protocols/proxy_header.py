"""The PROXY protocol, versions 1 and 2, as bytes in → one header out (HAProxy's
``doc/proxy-protocol.txt``, revision 2020/03/05; section numbers below are that document's).

A proxy that relays TCP without speaking HTTP (HAProxy in ``mode tcp``, AWS NLB, stunnel) puts one
header in front of the connection's first bytes, telling who connected to it. This module reads it
without any I/O: the runtime feeds what it received until :meth:`ProxyHeaderReader.feed` returns
a :class:`ProxyHeader`, then hands :attr:`ProxyHeaderReader.rest` (the bytes after the header, the
start of the HTTP stream) to the HTTP protocol. Anything that is not exactly a PROXY header raises
:class:`ProxyHeaderError`; §2.1 and §2.2 want the receiver to drop such a connection.

Rules kept here:

* the version is told apart by the first byte, so garbage is refused as soon as it arrives;
* v1 (§2.1): one US-ASCII line of at most 107 bytes ending in CRLF, fields separated by exactly one
  space, addresses of the announced family in canonical form (IPv4 as four decimal numbers without
  leading zeroes, IPv6 as RFC 4291 text without a zone), ports 0-65535 without leading zeroes or
  signs; after ``UNKNOWN`` the rest of the line is ignored, as the spec requires;
* v2 (§2.2): the 12-byte signature, version 2, command LOCAL or PROXY, a known family and
  transport, and a 16-bit length that must cover the address block of the family; a header longer
  than ``max_v2_length`` is refused before it is buffered (the spec's own headers fit in 536
  bytes; TLVs make them longer, so the bound is a parameter);
* TLVs (§2.2) are walked with bounds checks: each must lie wholly inside the header, a leftover
  shorter than a TLV's 3-byte head is an error; they are kept as raw ``(type, value)`` pairs.
  Two are interpreted: PP2_TYPE_CRC32C is verified (§2.2.3: a receiver that supports it MUST),
  and the client flag of PP2_TYPE_SSL says whether the client spoke TLS to the proxy
  (:attr:`ProxyHeader.tls`).

Which peers may send the header is the runtime's decision (§5: only from configured binds, ideally
only from known sources); this module only parses it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, NamedTuple

from portico.errors import BadRequest

__all__ = [
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
]

#: §2.2: the first 12 bytes of a v2 header (a NUL at the 5th byte: never a C string).
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_PREFIX: Final = b"PROXY "
#: §2.1: the longest v1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses).
MAX_V1_LINE: Final = 107
#: Default bound on a whole v2 header (16-byte head + addresses + TLVs). HAProxy's own headers
#: with unique-id, SSL and CRC TLVs stay well under 1 KiB; AWS and GCP add tens of bytes.
DEFAULT_MAX_V2_LENGTH: Final = 4096

# commands
LOCAL: Final = "LOCAL"
PROXY: Final = "PROXY"
# families (v1 names TCP4/TCP6/UNKNOWN; v2 adds datagram and Unix transports). v1's UNKNOWN and
# v2's AF_UNSPEC mean the same (use the real connection's endpoints), so they share one name.
TCP4: Final = "TCP4"
TCP6: Final = "TCP6"
UDP4: Final = "UDP4"
UDP6: Final = "UDP6"
UNIX: Final = "UNIX"
UNIX_DGRAM: Final = "UNIX_DGRAM"
UNSPEC: Final = "UNSPEC"

# v2 family/transport byte (§2.2, 14th byte): high nibble family, low nibble transport
_FAMILIES: Final[dict[int, str]] = {
    0x11: TCP4,
    0x12: UDP4,
    0x21: TCP6,
    0x22: UDP6,
    0x31: UNIX,
    0x32: UNIX_DGRAM,
}
_ADDRESS_LENGTH: Final[dict[int, int]] = {1: 12, 2: 36, 3: 216}

PP2_TYPE_CRC32C: Final = 0x03
PP2_TYPE_SSL: Final = 0x20
_PP2_CLIENT_SSL: Final = 0x01

# hex groups, colons and (for an embedded IPv4 tail) dots; ipaddress checks the rest
_v6_text = re.compile(rb"[0-9A-Fa-f:.]{2,45}").fullmatch


class ProxyHeaderError(BadRequest):
    """The bytes are not a valid PROXY protocol header; the connection must be dropped.

    ``detail`` is Portico's own words (never the peer's bytes), safe for logs. It is a
    :class:`BadRequest` so it carries a status like every protocol error, but the peer is a proxy,
    not an HTTP client: the runtime closes the connection without writing a response.
    """


class ProxyHeader(NamedTuple):
    """One parsed PROXY header (a ``NamedTuple``, like the protocol events: built in one C call).

    Addresses are ``None`` when the header carries none: a LOCAL command (a health check from the
    proxy itself), v1 ``UNKNOWN`` or v2 ``UNSPEC``. In all those cases the receiver uses the real
    connection's endpoints (§2.1, §2.2). For TCP/UDP the addresses are normalised text
    (``str(ipaddress.ip_address(...))``); for Unix sockets they are paths (an abstract socket keeps
    its leading NUL) and the ports are ``None``.
    """

    version: int  # 1 or 2
    command: str  # PROXY or LOCAL (v1 is always PROXY)
    family: str  # TCP4, TCP6, UDP4, UDP6, UNIX, UNIX_DGRAM or UNSPEC
    source_addr: str | None = None
    source_port: int | None = None
    dest_addr: str | None = None
    dest_port: int | None = None
    #: v2 TLVs after the addresses, in order, as raw ``(type, value)`` pairs
    tlvs: tuple[tuple[int, bytes], ...] = ()
    #: v2 PP2_TYPE_SSL said the client connected to the proxy over TLS (§2.2.6)
    tls: bool = False

    @property
    def client(self) -> tuple[str, int] | None:
        """The peer to use instead of the socket's, or ``None`` to keep the socket's peer."""
        if self.source_port is None or self.source_addr is None:
            return None
        return (self.source_addr, self.source_port)

    @property
    def server(self) -> tuple[str, int] | None:
        """The address the client connected to, or ``None`` to keep the socket's own."""
        if self.dest_port is None or self.dest_addr is None:
            return None
        return (self.dest_addr, self.dest_port)


def parse_proxy_header(
    data: bytes, max_v2_length: int = DEFAULT_MAX_V2_LENGTH
) -> tuple[ProxyHeader, int] | None:
    """Parse a PROXY header at the start of ``data``.

    Returns ``None`` when ``data`` is a valid beginning that needs more bytes, or the header and
    how many bytes of ``data`` it took. Raises :class:`ProxyHeaderError` as soon as ``data``
    cannot be the start of a valid header.
    """
    if not data:
        return None
    if data[0] == 0x0D:  # v2 starts with CR, v1 with "P": the first byte decides
        return _parse_v2(data, max_v2_length)
    return _parse_v1(data)


class ProxyHeaderReader:
    """Incremental reader: feed bytes as they arrive until a header comes out.

    >>> reader = ProxyHeaderReader()
    >>> reader.feed(b"PROXY TCP4 192.0.2.1 ") is None
    True
    >>> reader.feed(b"192.0.2.2 5000 80\\r\\nGET / HTTP/1.1\\r\\n").client
    ('192.0.2.1', 5000)
    >>> reader.rest
    b'GET / HTTP/1.1\\r\\n'
    """

    __slots__ = ("_buffer", "_max_v2_length", "header", "rest")

    def __init__(self, max_v2_length: int = DEFAULT_MAX_V2_LENGTH) -> None:
        self._buffer = b""
        self._max_v2_length = max_v2_length
        #: the header, once :meth:`feed` returned it
        self.header: ProxyHeader | None = None
        #: the bytes received after the header (the start of the HTTP stream)
        self.rest = b""

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Add received bytes; return the header once complete, else ``None`` (need more)."""
        if self.header is not None:
            raise RuntimeError("the PROXY header was already read; pass further bytes on")
        buffer = self._buffer + data if self._buffer else data
        result = parse_proxy_header(buffer, self._max_v2_length)
        if result is None:
            self._buffer = buffer
            return None
        header, used = result
        self._buffer = b""
        self.header = header
        self.rest = buffer[used:]
        return header


# ----------------------------------------------------------------------------------------- v1


def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    size = len(data)
    if data[: min(size, 6)] != _V1_PREFIX[: min(size, 6)]:
        raise ProxyHeaderError("not a PROXY protocol header")
    end = data.find(b"\n", 0, MAX_V1_LINE)
    if end < 0:
        if size >= MAX_V1_LINE:
            raise ProxyHeaderError("PROXY v1 line has no CRLF within 107 bytes")
        if data.find(b"\r", 0, size - 1) >= 0:  # a CR that is not the last byte received
            raise ProxyHeaderError("PROXY v1 line has a CR without LF")
        return None
    # §2.1: "The receiver must not tolerate a single CR or LF character to end the line"
    if end == 0 or data[end - 1] != 0x0D:
        raise ProxyHeaderError("PROXY v1 line ends in LF without CR")
    line = data[: end - 1]
    if line.find(b"\r") >= 0:
        raise ProxyHeaderError("PROXY v1 line has a CR without LF")
    used = end + 1
    if line == b"PROXY UNKNOWN" or line.startswith(b"PROXY UNKNOWN "):
        # §2.1: "the receiver must ignore anything presented before the CRLF is found"
        return ProxyHeader(1, PROXY, UNSPEC), used
    fields = line.split(b" ")
    if len(fields) != 6:
        raise ProxyHeaderError("PROXY v1 line does not have six space-separated fields")
    proto = fields[1]
    if proto == b"TCP4":
        source, dest = _v4_field(fields[2]), _v4_field(fields[3])
        family = TCP4
    elif proto == b"TCP6":
        source, dest = _v6_field(fields[2]), _v6_field(fields[3])
        family = TCP6
    else:
        raise ProxyHeaderError("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")
    return ProxyHeader(
        1, PROXY, family, source, _port_field(fields[4]), dest, _port_field(fields[5])
    ), used


def _v4_field(text: bytes) -> str:
    # §2.1: "exactly 4 integers in the range [0..255] ... Heading zeroes are not permitted"
    parts = text.split(b".")
    if len(parts) != 4 or not all(_decimal(part, 3) and int(part) <= 255 for part in parts):
        raise ProxyHeaderError("PROXY v1 TCP4 address is not a dotted quad of 0-255")
    return text.decode("ascii")


def _decimal(text: bytes, digits: int) -> bool:
    """1 to ``digits`` ASCII digits, no leading zero (bytes.isdigit is ASCII-only)."""
    return 0 < len(text) <= digits and text.isdigit() and (text[0] != 0x30 or len(text) == 1)


def _v6_field(text: bytes) -> str:
    # ipaddress alone would also take a zone ("fe80::1%eth0"); the character check excludes it
    if _v6_text(text) is None:
        raise ProxyHeaderError("PROXY v1 TCP6 address is not an IPv6 address")
    try:
        return str(ipaddress.IPv6Address(text.decode("ascii")))
    except ValueError:
        raise ProxyHeaderError("PROXY v1 TCP6 address is not an IPv6 address") from None


def _port_field(text: bytes) -> int:
    if not _decimal(text, 5):
        raise ProxyHeaderError("PROXY v1 port is not a decimal number without leading zeroes")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError("PROXY v1 port is above 65535")
    return port


# ----------------------------------------------------------------------------------------- v2


def _parse_v2(data: bytes, max_v2_length: int) -> tuple[ProxyHeader, int] | None:
    size = len(data)
    if data[: min(size, 12)] != V2_SIGNATURE[: min(size, 12)]:
        raise ProxyHeaderError("not a PROXY protocol header")
    if size >= 13:
        version_command = data[12]
        if version_command >> 4 != 2:
            raise ProxyHeaderError("PROXY v2 header has a version other than 2")
        if version_command & 0x0F > 1:
            raise ProxyHeaderError("PROXY v2 command is neither LOCAL nor PROXY")
    if size >= 14:
        family_byte = data[13]
        if family_byte >> 4 > 3 or family_byte & 0x0F > 2:
            raise ProxyHeaderError("PROXY v2 address family or transport is not defined")
    if size < 16:
        return None
    total = 16 + (data[14] << 8 | data[15])
    if total > max_v2_length:
        raise ProxyHeaderError("PROXY v2 header is longer than allowed")
    if size < total:
        return None
    if data[12] & 0x0F == 0:
        # §2.2 LOCAL: "discard the protocol block including the family"
        return ProxyHeader(2, LOCAL, UNSPEC), total
    family = _FAMILIES.get(data[13])
    if family is None:
        # AF_UNSPEC or an UNSPEC transport: "the receiver should ignore address information"
        return ProxyHeader(2, PROXY, UNSPEC), total
    address_length = _ADDRESS_LENGTH[data[13] >> 4]
    if total - 16 < address_length:
        raise ProxyHeaderError("PROXY v2 length is shorter than the family's address block")
    tlvs, tls = _walk_tlvs(data, 16 + address_length, total)
    if family in (UNIX, UNIX_DGRAM):
        return ProxyHeader(
            2,
            PROXY,
            family,
            _unix_path(data[16:124]),
            None,
            _unix_path(data[124:232]),
            None,
            tlvs,
            tls,
        ), total
    if family in (TCP4, UDP4):
        source = f"{data[16]}.{data[17]}.{data[18]}.{data[19]}"
        dest = f"{data[20]}.{data[21]}.{data[22]}.{data[23]}"
        ports = 24
    else:
        source = str(ipaddress.IPv6Address(data[16:32]))
        dest = str(ipaddress.IPv6Address(data[32:48]))
        ports = 48
    source_port = data[ports] << 8 | data[ports + 1]
    dest_port = data[ports + 2] << 8 | data[ports + 3]
    return ProxyHeader(2, PROXY, family, source, source_port, dest, dest_port, tlvs, tls), total


def _walk_tlvs(data: bytes, start: int, end: int) -> tuple[tuple[tuple[int, bytes], ...], bool]:
    tlvs: list[tuple[int, bytes]] = []
    tls = False
    pos = start
    while pos < end:
        if end - pos < 3:
            raise ProxyHeaderError("PROXY v2 header ends inside a TLV's type and length")
        kind = data[pos]
        length = data[pos + 1] << 8 | data[pos + 2]
        value_end = pos + 3 + length
        if value_end > end:
            raise ProxyHeaderError("PROXY v2 TLV runs past the end of the header")
        value = data[pos + 3 : value_end]
        if kind == PP2_TYPE_CRC32C:
            if length != 4:
                raise ProxyHeaderError("PROXY v2 CRC32C TLV is not 4 bytes long")
            # §2.2.3: the checksum of the whole header with the checksum field zeroed
            zeroed = data[: pos + 3] + b"\x00\x00\x00\x00" + data[value_end:end]
            if crc32c(zeroed) != int.from_bytes(value, "big"):
                raise ProxyHeaderError("PROXY v2 CRC32C checksum does not match")
        elif kind == PP2_TYPE_SSL and length >= 5 and value[0] & _PP2_CLIENT_SSL:
            tls = True
        tlvs.append((kind, value))
        pos = value_end
    return tuple(tlvs), tls


def _unix_path(raw: bytes) -> str:
    # sun_path: NUL-terminated; an abstract socket (Linux) starts with NUL and is padded with
    # NULs; all NULs is an unnamed socket ("")
    if raw[:1] == b"\x00":
        name = raw[1:].rstrip(b"\x00")
        return "\x00" + name.decode("utf-8", "surrogateescape") if name else ""
    return raw.partition(b"\x00")[0].decode("utf-8", "surrogateescape")


# ------------------------------------------------------------------------------------ CRC32C


def _crc32c_table() -> list[int]:
    # CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, as RFC 4960 Appendix B specifies
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE: Final = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
    table = _CRC32C_TABLE
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
