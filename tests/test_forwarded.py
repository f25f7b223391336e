"""Origin resolution from trusted proxy headers (portico.protocols.forwarded).

Unit tests for each form, then the property that matters: whatever an untrusted client writes, the
client address the app sees is the first untrusted hop from the right of what the proxies wrote.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portico.config import Config
from portico.protocols.events import Headers
from portico.protocols.forwarded import (
    FORWARDED,
    X_FORWARDED,
    Origin,
    OriginResolver,
    TrustedProxies,
)

TRUST = "127.0.0.1, ::1, 10.0.0.0/8, fd00::/8"


def resolver(spec: str = TRUST, source: str = X_FORWARDED) -> OriginResolver:
    return OriginResolver(TrustedProxies(spec), source)


def xff(*values: str, **more: str) -> Headers:
    headers: Headers = [(b"host", b"app.example"), (b"accept", b"*/*")]
    headers += [(b"x-forwarded-for", v.encode("latin-1")) for v in values]
    headers += [(b"x-forwarded-" + k.encode(), v.encode("latin-1")) for k, v in more.items()]
    return headers


def fwd(*values: str) -> Headers:
    return [(b"host", b"app.example")] + [(b"forwarded", v.encode("latin-1")) for v in values]


def client_of(origin: Origin | None) -> tuple[str, int] | None:
    assert origin is not None
    return origin.client(("10.0.0.1", 5555))


# ------------------------------------------------------------------------------ trust set


def test_default_trusts_loopback_and_unix_sockets_only() -> None:
    trusted = TrustedProxies(Config().forwarded_allow_ips)
    assert trusted.spec == "127.0.0.1,::1"
    assert trusted.trusts("127.0.0.1")
    assert trusted.trusts("::1")
    assert trusted.trusts(None)  # a Unix socket peer
    assert not trusted.trusts("127.0.0.2")
    assert not trusted.trusts("10.0.0.1")
    assert not trusted.trusts("localhost")  # a name is never an address
    assert not trusted.trusts("")


def test_unix_socket_trust_can_be_turned_off() -> None:
    assert not TrustedProxies(Config().forwarded_allow_ips, trust_unix=False).trusts(None)
    assert not TrustedProxies("*", trust_unix=False).trusts(None)


def test_networks_and_addresses() -> None:
    trusted = TrustedProxies(" 10.0.0.0/8 , ,192.0.2.5, 2001:db8::/32 ")
    assert trusted.trusts("10.255.0.1")
    assert trusted.trusts("192.0.2.5")
    assert not trusted.trusts("192.0.2.6")
    assert not trusted.trusts("11.0.0.1")
    assert trusted.trusts("2001:db8:1::5")
    assert trusted.trusts("2001:DB8::5")  # not the normalised spelling
    assert not trusted.trusts("2001:db9::5")


def test_ipv4_mapped_peer_matches_its_ipv4_address() -> None:
    trusted = TrustedProxies("127.0.0.1,10.0.0.0/8")
    assert trusted.trusts("::ffff:127.0.0.1")
    assert trusted.trusts("::ffff:10.1.2.3")
    assert not trusted.trusts("::ffff:192.0.2.1")


def test_star_trusts_every_address() -> None:
    trusted = TrustedProxies("*")
    assert trusted.trusts("192.0.2.1") and trusted.trusts("2001:db8::1")


@pytest.mark.parametrize("spec", ["10.0.0.1/8", "foo", "10.0.0.0/33", "fe80::1%eth0", "1.2.3"])
def test_bad_entries_are_named(spec: str) -> None:
    with pytest.raises(ValueError, match=spec.partition("/")[0].replace(".", r"\.")):
        TrustedProxies(f"127.0.0.1,{spec}")


def test_membership_is_remembered_and_bounded() -> None:
    trusted = TrustedProxies("10.0.0.0/8")
    for i in range(5000):
        trusted.trusts(f"192.0.{i // 256 % 256}.{i % 256}")
    assert len(trusted._cache) <= 4096
    assert trusted.trusts("10.1.1.1") and trusted.trusts("10.1.1.1")
    assert "TrustedProxies('10.0.0.0/8'" in repr(trusted)


def test_bad_source_is_refused() -> None:
    with pytest.raises(ValueError, match="x-forwarded"):
        OriginResolver(TrustedProxies("127.0.0.1"), "x-real-ip")


# -------------------------------------------------------------------------- X-Forwarded-For


def test_fast_path_without_proxy_headers() -> None:
    assert resolver().resolve([(b"host", b"a"), (b"user-agent", b"x")]) is None
    assert resolver().resolve([]) is None


def test_single_hop() -> None:
    origin = resolver().resolve(xff("203.0.113.7"))
    assert origin == Origin("203.0.113.7", 0)
    assert client_of(origin) == ("203.0.113.7", 0)


def test_trusted_hops_are_skipped_from_the_right() -> None:
    assert client_of(resolver().resolve(xff("203.0.113.7, 10.0.0.2, 10.0.0.3"))) == (
        "203.0.113.7",
        0,
    )


def test_client_written_entries_left_of_the_client_are_never_used() -> None:
    origin = resolver().resolve(xff("6.6.6.6, 127.0.0.1, 203.0.113.7, 10.0.0.2"))
    assert client_of(origin) == ("203.0.113.7", 0)


def test_every_hop_trusted_gives_the_leftmost() -> None:
    assert client_of(resolver().resolve(xff("10.0.0.9, 10.0.0.2"))) == ("10.0.0.9", 0)
    assert client_of(resolver("*").resolve(xff("6.6.6.6, 203.0.113.7"))) == ("6.6.6.6", 0)


def test_several_fields_are_one_list_in_order() -> None:
    # RFC 9110 §5.3: the same as "203.0.113.9, 10.0.0.2, 198.51.100.1"
    origin = resolver().resolve(xff("203.0.113.9", "10.0.0.2, 198.51.100.1"))
    assert client_of(origin) == ("198.51.100.1", 0)
    origin = resolver().resolve(xff("198.51.100.1", "10.0.0.2"))
    assert client_of(origin) == ("198.51.100.1", 0)


@pytest.mark.parametrize(
    ("hop", "expected"),
    [
        ("2001:db8::1", ("2001:db8::1", 0)),
        ("2001:DB8:0:0::1", ("2001:db8::1", 0)),
        ("[2001:db8::1]", ("2001:db8::1", 0)),
        ("[2001:db8::1]:4711", ("2001:db8::1", 4711)),
        ("192.0.2.1:8080", ("192.0.2.1", 8080)),
        ("::ffff:192.0.2.1", ("::ffff:c000:201", 0)),
    ],
)
def test_hop_forms(hop: str, expected: tuple[str, int]) -> None:
    assert client_of(resolver().resolve(xff(f"{hop}, 10.0.0.2"))) == expected


@pytest.mark.parametrize(
    "hop",
    [
        "garbage",
        "192.0.2.256",
        "192.0.2.01",
        "fe80::1%eth0",
        "[192.0.2.1]",
        "[2001:db8::1",
        "2001:db8::1:80:",
        "192.0.2.1:99999",
        "192.0.2.1:",
        "[2001:db8::1]x",
        "2001:db8::1]:80",
        "1.2.3.4:5:6",
        "\xd9\xa1.2.3.4",  # the UTF-8 of an Arabic-Indic digit one
        "192.0.2.1 192.0.2.2",
    ],
)
def test_a_hop_that_is_not_an_address_makes_the_client_unknown(hop: str) -> None:
    origin = resolver().resolve(xff(f"203.0.113.7, {hop}, 10.0.0.2"))
    assert origin is not None
    assert origin.client_host == ""  # never the proxy's own address
    assert client_of(origin) is None
    assert origin.malformed == ("X-Forwarded-For: a hop that is not an IP address",)


def test_unknown_hop_is_unknown_without_a_note() -> None:
    origin = resolver().resolve(xff("203.0.113.7, unknown"))
    assert origin == Origin("", 0)


def test_garbage_left_of_the_client_is_never_read() -> None:
    origin = resolver().resolve(xff('"<script>", ;;; , 203.0.113.7'))
    assert origin == Origin("203.0.113.7", 0)


def test_empty_fields_say_nothing() -> None:
    assert resolver().resolve(xff("", " , ,")) is None
    assert client_of(resolver().resolve(xff("203.0.113.7,, ,"))) == ("203.0.113.7", 0)


# ------------------------------------------------------------------- X-Forwarded-Proto etc.


@pytest.mark.parametrize(
    ("value", "scheme"),
    [("https", "https"), ("http", "http"), ("wss", "https"), ("ws", "http"), ("HTTPS", "https")],
)
def test_proto(value: str, scheme: str) -> None:
    assert resolver().resolve(xff(proto=value)) == Origin(scheme=scheme)


def test_proto_rightmost_value_wins() -> None:
    # the client sent "https" and the proxy appended what it really saw
    assert resolver().resolve(xff(proto="https, http")) == Origin(scheme="http")
    two_fields = [(b"x-forwarded-proto", b"https"), (b"x-forwarded-proto", b"http")]
    assert resolver().resolve(two_fields) == Origin(scheme="http")


@pytest.mark.parametrize("value", ["ftp", "https;", "http s", "", "javascript"])
def test_bad_proto_is_ignored_with_a_note(value: str) -> None:
    origin = resolver().resolve(xff(proto=value))
    assert origin == Origin(malformed=("X-Forwarded-Proto: not http, https, ws or wss",))


@pytest.mark.parametrize(
    "value",
    ["example.com", "example.com:8443", "[2001:db8::1]:8080", "192.0.2.1", "xn--bcher-kva.example"],
)
def test_host(value: str) -> None:
    assert resolver().resolve(xff(host=value)) == Origin(host=value)


@pytest.mark.parametrize(
    "value",
    [
        "exa mple.com",
        "example.com:99999",
        "example.com:",
        "example.com/path",
        "user@example.com",
        "[::1",
        "[zz::1]",
        "example.com\x00",
        "ex\u00e4mple.com",
        "a" * 256,
    ],
)
def test_bad_host_is_ignored(value: str) -> None:
    origin = resolver().resolve(xff(host=value))
    assert origin == Origin(malformed=("X-Forwarded-Host: not a host[:port]",))


def test_host_rightmost_value_wins() -> None:
    assert resolver().resolve(xff(host="evil.example, app.example")) == Origin(host="app.example")


@pytest.mark.parametrize(("value", "port"), [("443", 443), ("1", 1), ("65535", 65535)])
def test_port(value: str, port: int) -> None:
    assert resolver().resolve(xff(port=value)) == Origin(port=port)


@pytest.mark.parametrize("value", ["0", "65536", "08", "-1", "+80", "http", "4 43"])
def test_bad_port(value: str) -> None:
    origin = resolver().resolve(xff(port=value))
    assert origin == Origin(malformed=("X-Forwarded-Port: not a port from 1 to 65535",))


@pytest.mark.parametrize(
    ("value", "prefix"),
    [
        ("/api", "/api"),
        ("/api/", "/api"),
        ("/", ""),
        ("/a/b.c/d", "/a/b.c/d"),
        ("/a%20b", "/a b"),
        ("/caf%C3%A9", "/caf\u00e9"),
        ("/x/..a", "/x/..a"),
        ("/other, /api", "/api"),
    ],
)
def test_prefix(value: str, prefix: str) -> None:
    assert resolver().resolve(xff(prefix=value)) == Origin(prefix=prefix)


@pytest.mark.parametrize(
    "value",
    [
        "api",
        "/a/../b",
        "/..",
        "/a/./b",
        "/a//b",
        "//evil.example",
        "/a%2fb",
        "/a%2Fb",
        "/%2e%2e/b",
        "/a\\b",
        "/a%5cb",
        "/a%00",
        "/a%0d%0aSet-Cookie:x",
        "/a?x=1",
        "/a#frag",
        "/a%zz",
        "/a%",
        "/a%ff",
        "https://evil.example/",
        "/a b",
    ],
)
def test_bad_prefix_is_ignored(value: str) -> None:
    origin = resolver().resolve(xff(prefix=value))
    assert origin is not None and origin.prefix is None
    assert len(origin.malformed) == 1 and origin.malformed[0].startswith("X-Forwarded-Prefix")


def test_all_x_forwarded_fields_together() -> None:
    headers = xff("203.0.113.7, 10.0.0.2", proto="https", host="app.example", port="443")
    headers.append((b"x-forwarded-prefix", b"/shop"))
    assert resolver().resolve(headers) == Origin(
        "203.0.113.7", 0, "https", "app.example", 443, "/shop"
    )


def test_x_forwarded_mode_ignores_forwarded() -> None:
    assert resolver().resolve(fwd("for=203.0.113.7;proto=https")) is None


def test_untrusted_peer_gets_nothing() -> None:
    res = resolver()
    # the runtime asks once per connection, and only then resolves per request
    assert not res.trusts("203.0.113.50")
    assert res.trusts("10.0.0.1") and res.trusts(None)


# ------------------------------------------------------------------------------- Forwarded


def fres(spec: str = TRUST) -> OriginResolver:
    return resolver(spec, FORWARDED)


def test_rfc7239_examples() -> None:
    # §4 and §7.4, with the hop after each one a trusted proxy of ours
    assert fres().resolve(fwd('for="_gazonk"')) == Origin("", 0)
    assert client_of(fres().resolve(fwd('For="[2001:db8:cafe::17]:4711"'))) == (
        "2001:db8:cafe::17",
        4711,
    )
    assert fres().resolve(fwd("for=192.0.2.60;proto=http;by=203.0.113.43")) == Origin(
        "192.0.2.60", 0, "http"
    )
    assert client_of(fres().resolve(fwd("for=192.0.2.43, for=198.51.100.17"))) == (
        "198.51.100.17",
        0,
    )
    assert client_of(fres("198.51.100.17").resolve(fwd("for=192.0.2.43, for=198.51.100.17"))) == (
        "192.0.2.43",
        0,
    )
    # §7.1: the last proxy did not know its client
    origin = fres().resolve(fwd('for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown'))
    assert origin == Origin("", 0)


def test_forwarded_walk_skips_trusted_hops_and_takes_that_elements_proto_and_host() -> None:
    origin = fres().resolve(
        fwd(
            "for=6.6.6.6;proto=http;host=evil.example, "
            "for=203.0.113.7;proto=https;host=app.example, "
            "for=10.0.0.2;proto=http;host=inner"
        )
    )
    assert origin == Origin("203.0.113.7", 0, "https", "app.example")


def test_forwarded_all_trusted_gives_the_leftmost_element() -> None:
    origin = fres().resolve(fwd("for=10.0.0.9;proto=https, for=10.0.0.2;proto=http"))
    assert origin == Origin("10.0.0.9", 0, "https")


def test_forwarded_several_fields_are_one_list() -> None:
    origin = fres().resolve(fwd("for=6.6.6.6", "for=203.0.113.7", "for=10.0.0.2"))
    assert client_of(origin) == ("203.0.113.7", 0)


def test_forwarded_quoted_strings_and_escapes() -> None:
    assert client_of(fres().resolve(fwd('for="192.0.2.\\1"'))) == ("192.0.2.1", 0)
    assert fres().resolve(fwd('for=203.0.113.7;proto="https"')) == Origin("203.0.113.7", 0, "https")
    origin = fres().resolve(fwd('for=203.0.113.7;host="a\\"b"'))
    assert origin == Origin("203.0.113.7", 0, malformed=("Forwarded host: not a host[:port]",))
    # a quoted comma or semicolon is not a separator
    origin = fres().resolve(fwd('for=203.0.113.7;ext="a, b; c=d"'))
    assert origin == Origin("203.0.113.7", 0)


def test_forwarded_ports() -> None:
    assert client_of(fres().resolve(fwd('for="192.0.2.1:8080"'))) == ("192.0.2.1", 8080)
    assert client_of(fres().resolve(fwd('for="192.0.2.1:_abc"'))) == ("192.0.2.1", 0)
    assert client_of(fres().resolve(fwd('for="[2001:db8::1]:_p-1"'))) == ("2001:db8::1", 0)


def test_forwarded_obfuscated_and_unknown_nodes_are_unknown_clients() -> None:
    for node in ["_hidden", "UNKNOWN", '"_x.y-z:_p"', '"unknown:80"']:
        assert fres().resolve(fwd(f"for={node}, for=10.0.0.2")) == Origin("", 0), node


def test_forwarded_element_without_for() -> None:
    # the peer does not forward addresses: the client stays the peer, the scheme is applied
    assert fres().resolve(fwd("proto=https;host=app.example")) == Origin(
        None, 0, "https", "app.example"
    )
    assert client_of(fres().resolve(fwd("proto=https"))) == ("10.0.0.1", 5555)
    # a trusted proxy further out did not say who connected to it
    assert fres().resolve(fwd("proto=https, for=10.0.0.2")) == Origin("", 0, "https")
    assert fres().resolve(fwd("by=10.0.0.2")) is None


@pytest.mark.parametrize(
    "value",
    [
        "for=[2001:db8::1]",  # IPv6 must be quoted (':' and '[' are not token characters)
        "for=192.0.2.1:80",  # the same for a port
        "for=",
        "for",
        "=192.0.2.1",
        "for=192.0.2.1;for=192.0.2.2",  # a parameter twice in one element
        'for="192.0.2.1',
        'for=192.0.2.1"',
        'for="192.0.2.1\\"',
        "for=192.0.2.1 proto=https",
        'for="192.0.2.1"x',
        'for=a"b"',
        "f@r=192.0.2.1",
    ],
)
def test_forwarded_malformed_rightmost_element_makes_the_client_unknown(value: str) -> None:
    origin = fres().resolve(fwd(value))
    assert origin == Origin("", 0, malformed=("Forwarded: an element that does not parse",))


@pytest.mark.parametrize(
    "node", ['"2001:db8::1"', '"[192.0.2.1]"', "192.0.2.256", '"192.0.2.1:99999"', "_", '"[::1"']
)
def test_forwarded_bad_node(node: str) -> None:
    origin = fres().resolve(fwd(f"for={node}"))
    assert origin == Origin("", 0, malformed=("Forwarded: a for= value that is not a node",))


def test_forwarded_client_garbage_left_of_its_element_is_never_read() -> None:
    # an unterminated quote would swallow the proxy's element in a left-to-right parser
    for garbage in ['for="abc', "\\", "%%%,,;;==", 'x="\\"', "for=6.6.6.6;for=1"]:
        value = garbage + ", for=203.0.113.7;proto=https"
        assert fres().resolve(fwd(value)) == Origin("203.0.113.7", 0, "https"), garbage


def test_forwarded_whitespace_and_empty_elements() -> None:
    origin = fres().resolve(fwd(" for=203.0.113.7 ; proto=https ,, ; ,"))
    assert origin == Origin("203.0.113.7", 0, "https")
    assert fres().resolve(fwd(" , ")) is None


def test_forwarded_mode_ignores_x_forwarded() -> None:
    assert fres().resolve(xff("203.0.113.7", proto="https")) is None


def test_forwarded_bad_proto_is_noted() -> None:
    origin = fres().resolve(fwd("for=203.0.113.7;proto=gopher"))
    assert origin == Origin(
        "203.0.113.7", 0, malformed=("Forwarded proto: not http, https, ws or wss",)
    )


# ------------------------------------------------------------------------ the trust property

UNTRUSTED_NET = [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32")]
TRUSTED_NET = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def addresses(
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> st.SearchStrategy[str]:
    return st.sampled_from(networks).flatmap(
        lambda net: st.integers(0, net.num_addresses - 1).map(lambda i: str(net[i]))
    )


untrusted = addresses(UNTRUSTED_NET)
trusted = addresses(TRUSTED_NET)
# what a client may write ahead of the proxies' entries: anything a header value can hold
client_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=40,
)
client_prefix = st.lists(
    st.one_of(client_text, untrusted, trusted, st.just("unknown"), st.just('"')), max_size=5
)


@st.composite
def chains(draw: st.DrawFn) -> tuple[list[str], str]:
    """The real hops from the client (untrusted) to the peer, and the expected client.

    Every proxy appends the address that connected to it; an untrusted proxy in the middle may
    have written anything to its left, so the expected client is the rightmost untrusted hop.
    """
    hops = [draw(untrusted)]
    for _ in range(draw(st.integers(0, 4))):
        hops.append(draw(st.one_of(trusted, trusted, untrusted)))
    expected = next(h for h in reversed(hops) if not _is_trusted(h))
    return hops, expected


def _is_trusted(host: str) -> bool:
    address = ipaddress.ip_address(host)
    return any(address in net for net in TRUSTED_NET)


def _fwd_node(host: str) -> str:
    return f'"[{host}]"' if ":" in host else host


@given(chains(), client_prefix, st.booleans())
def test_x_forwarded_for_client_cannot_choose_beyond_the_first_untrusted_hop(
    chain: tuple[list[str], str], prefix: list[str], separate_fields: bool
) -> None:
    hops, expected = chain
    entries = [*prefix, *hops]
    values = [", ".join(prefix), *hops] if separate_fields else [", ".join(entries)]
    origin = resolver("10.0.0.0/8, fd00::/8").resolve(xff(*values))
    assert origin is not None
    assert origin.client_host == str(ipaddress.ip_address(expected))
    assert origin.malformed == ()


@given(chains(), client_prefix, st.booleans(), st.sampled_from(["http", "https"]))
def test_forwarded_client_cannot_choose_beyond_the_first_untrusted_hop(
    chain: tuple[list[str], str], prefix: list[str], separate_fields: bool, proto: str
) -> None:
    hops, expected = chain
    elements = [f"for={_fwd_node(h)};proto={proto if h == expected else 'http'}" for h in hops]
    written = ", ".join(prefix)
    values = [written, *elements] if separate_fields else [", ".join([written, *elements])]
    origin = resolver("10.0.0.0/8, fd00::/8", FORWARDED).resolve(fwd(*values))
    assert origin is not None
    assert origin.client_host == str(ipaddress.ip_address(expected))
    assert origin.scheme == proto  # from the client's element, not a client-written one
    assert origin.malformed == ()


@given(client_text, st.sampled_from(["http", "https"]))
def test_client_sent_proto_loses_to_the_proxy_appended_one(sent: str, real: str) -> None:
    origin = resolver().resolve(xff(proto=f"{sent}, {real}"))
    assert origin is not None and origin.scheme == real


header_values = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
names = st.sampled_from(
    [
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"forwarded",
        b"host",
    ]
)


@given(
    st.lists(st.tuples(names, header_values), max_size=8), st.sampled_from([X_FORWARDED, FORWARDED])
)
def test_garbage_never_raises_and_stays_well_formed(headers: Headers, source: str) -> None:
    origin = resolver(TRUST, source).resolve(headers)
    if origin is None:
        return
    if origin.client_host:
        ipaddress.ip_address(origin.client_host)
        assert 0 <= origin.client_port <= 65535
    assert origin.scheme in (None, "http", "https")
    if origin.prefix:
        assert origin.prefix.startswith("/") and not origin.prefix.endswith("/")
        assert "/../" not in origin.prefix + "/" and "\x00" not in origin.prefix
    if origin.host is not None:
        assert origin.host.isascii() and " " not in origin.host
    for note in origin.malformed:
        assert note.isascii()  # our words, never the client's bytes
