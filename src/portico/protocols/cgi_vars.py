"""CGI-style request variables (uwsgi vars, FastCGI params) → a ``Request`` and its ``Origin``.

nginx's ``uwsgi_pass`` and ``fastcgi_pass`` describe a request as name/value pairs named after
CGI/1.1 (RFC 3875 §4.1) instead of an HTTP head. Both protocol modules feed the pairs to
:class:`CGIVars`, which checks them and builds the same ``Request`` event HTTP/1.1 produces, so the
gateways serve these requests unchanged. The bind is the trust boundary (nginx is the only peer),
so the values are believed, but each one is still checked: a value that does not parse is an error,
never a guess.

Variables read (Debian's ``uwsgi_params`` sends all but ``DOCUMENT_URI``, ``SCRIPT_NAME``,
``SERVER_ADDR`` and ``REMOTE_USER``; its ``fastcgi_params`` all but ``PATH_INFO``; both send
``HTTPS`` only when it is on):

=================== ======================================================================
``REQUEST_METHOD``  ``Request.method``; required, a token (RFC 9110 §9.1)
``REQUEST_URI``     ``raw_path`` and ``query_string``: the request-target exactly as the client
                    sent it (nginx's ``$request_uri``), split at the first ``?``, a ``#fragment``
                    dropped; origin-form or ``*`` only. Preferred because it is lossless: nginx
                    decodes and normalizes ``$document_uri`` (``/a%2Fb`` becomes ``/a/b``), and
                    the gateways decode ``raw_path`` themselves. An nginx ``rewrite`` does not
                    change it; a config that rewrites sets ``REQUEST_URI`` itself.
``DOCUMENT_URI``    without ``REQUEST_URI``: the path, percent-encoded again (it arrives
``PATH_INFO``       decoded); ``DOCUMENT_URI`` first, else ``SCRIPT_NAME`` + ``PATH_INFO``;
``QUERY_STRING``    then the query is ``QUERY_STRING``
``SERVER_PROTOCOL`` ``http_version``: ``HTTP/1.0`` → ``"1.0"``, ``HTTP/1.1`` → ``"1.1"``,
                    ``HTTP/2.0`` → ``"2"``, ``HTTP/3.0`` → ``"3"``; required; others get 505
``HTTP_*``          ``headers``: ``HTTP_X_FOO`` → ``x-foo``, in the order sent, repeats kept
                    apart; ``HTTP_HOST`` at most once and a valid host, as HTTP/1.1 checks.
                    ``HTTP_CONTENT_LENGTH``, ``HTTP_CONTENT_TYPE`` (duplicates of the two
                    below) and ``HTTP_TRANSFER_ENCODING`` (nginx has already removed the
                    chunked framing it names) are dropped.
``CONTENT_TYPE``    the ``content-type`` header, when not empty
``CONTENT_LENGTH``  the ``content-length`` header and the body length, when not empty: digits
                    only; an empty one means no body (uwsgi) or a body ended by the empty
                    ``FCGI_STDIN`` record (FastCGI)
``HTTPS``           ``on``/``1`` (any case) → ``https``; ``off`` or empty → ``http``
``REQUEST_SCHEME``  ``http``/``https``; ``Request.scheme`` and ``Origin.scheme``; when both are
                    sent they must agree; neither → ``http``
``REMOTE_ADDR``     ``Origin.client`` host: an IPv4/IPv6 address; ``unix:`` or empty → ``None``
``REMOTE_PORT``     ``Origin.client`` port: digits (0 when empty)
``SERVER_NAME``     ``Origin.server_name``: a host name or address, may be empty
``SERVER_PORT``     ``Origin.server_port``: digits (``None`` when empty)
``SERVER_ADDR``     ``Origin.server_addr``: an IPv4/IPv6 address (or ``unix:``)
``SCRIPT_NAME``     ``Origin.script_name``; also ``Origin.root_path`` (the mount prefix) only
``PATH_INFO``       when ``PATH_INFO`` is sent too: that pair splits the path (RFC 3875 §4.1.13).
                    Alone, as ``fastcgi_params`` sends it, ``SCRIPT_NAME`` is the whole path.
``REMOTE_USER``     ``Origin.remote_user`` (nginx ``auth_basic``); empty → ``None``
=================== ======================================================================

Any other variable (``DOCUMENT_ROOT``, ``GATEWAY_INTERFACE``, a config's own ``uwsgi_param``) is
kept in ``Origin.extra`` as sent. A value with CR, LF or NUL, a header name that is not a token, or
a known variable sent twice with different values is an error (400).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, NamedTuple
from urllib.parse import quote_from_bytes

from portico.errors import BadRequest, ContentTooLarge, VersionNotSupported
from portico.protocols.events import Headers, Request
from portico.protocols.headers import is_token
from portico.protocols.request_line import valid_host

__all__ = ["CGIVars", "Origin"]


class Origin(NamedTuple):
    """What the variables say about the client and the server of one request.

    Sent just before the :class:`Request` of the same ``stream_id``. It is what origin resolution
    (DESIGN.md) needs for these binds: the values come from nginx, not from a client header.
    """

    stream_id: int
    #: ``(REMOTE_ADDR, REMOTE_PORT)``; ``None`` when nginx's client is on a Unix socket
    client: tuple[str, int] | None
    scheme: str
    #: ``SERVER_NAME`` as configured in nginx (may be empty or ``_``)
    server_name: str
    server_port: int | None
    #: ``SERVER_ADDR`` (the address nginx accepted on), when sent
    server_addr: str | None
    #: the mount prefix (``SCRIPT_NAME`` when ``PATH_INFO`` splits the path with it), else ""
    root_path: str
    script_name: str | None
    path_info: str | None
    remote_user: str | None
    #: every other variable, as sent
    extra: list[tuple[bytes, bytes]]

    @property
    def server(self) -> tuple[str, int | None]:
        """``(host, port)`` in the shape of ``gateways.Stream.server``."""
        return (self.server_addr or self.server_name, self.server_port)


# The CGI variables read, each with its place in ``CGIVars.values``.
_CGI_NAMES: Final = (
    b"REQUEST_METHOD",
    b"REQUEST_URI",
    b"DOCUMENT_URI",
    b"QUERY_STRING",
    b"SERVER_PROTOCOL",
    b"CONTENT_TYPE",
    b"CONTENT_LENGTH",
    b"HTTPS",
    b"REQUEST_SCHEME",
    b"REMOTE_ADDR",
    b"REMOTE_PORT",
    b"SERVER_NAME",
    b"SERVER_PORT",
    b"SERVER_ADDR",
    b"SCRIPT_NAME",
    b"PATH_INFO",
    b"REMOTE_USER",
)
_REQUEST_METHOD: Final = 0
_REQUEST_URI: Final = 1
_DOCUMENT_URI: Final = 2
_QUERY_STRING: Final = 3
_SERVER_PROTOCOL: Final = 4
_CONTENT_TYPE: Final = 5
_CONTENT_LENGTH: Final = 6
_HTTPS: Final = 7
_REQUEST_SCHEME: Final = 8
_REMOTE_ADDR: Final = 9
_REMOTE_PORT: Final = 10
_SERVER_NAME: Final = 11
_SERVER_PORT: Final = 12
_SERVER_ADDR: Final = 13
_SCRIPT_NAME: Final = 14
_PATH_INFO: Final = 15
_REMOTE_USER: Final = 16
_CGI_COUNT: Final = 17
# What a variable name is, when it is not one of the above: a request header, one dropped, or
# any other variable (kept in Origin.extra).
_HEADER: Final = 17
_DROPPED: Final = 18
_EXTRA: Final = 19

_VERSIONS: Final[dict[bytes, str]] = {
    b"HTTP/1.1": "1.1",
    b"HTTP/1.0": "1.0",
    b"HTTP/2.0": "2",
    b"HTTP/3.0": "3",
}
_SCHEMES: Final[dict[bytes, str]] = {b"http": "http", b"https": "https"}
_HTTPS_VALUES: Final[dict[bytes, str]] = {
    b"on": "https",
    b"1": "https",
    b"off": "http",
    b"": "http",
}
# RFC 9110 §5.5: CR, LF and NUL never appear in a field value; nginx refuses them from clients.
_forbidden_in_value: Final = re.compile(rb"[\x00\r\n]").search
# RFC 9112 §3.2: the request-target has no whitespace or control characters.
_bad_in_target: Final = re.compile(rb"[\x00-\x20\x7f]").search
# What stays unescaped when a decoded path is percent-encoded again (RFC 3986 §3.3 pchar and "/").
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~"
# The most digits a CONTENT_LENGTH may have: more is larger than any body limit (and int()
# of a huge digit string is slow).
_MAX_LENGTH_DIGITS: Final = 18

# Bounded caches, cleared when full: nginx sends the same variable names, values, methods, ports
# and addresses over and over, so each is classified, converted and checked once.
_CACHE_LIMIT: Final = 4096
_FIRST_KINDS: Final[dict[bytes, int]] = {
    b"HTTP_CONTENT_LENGTH": _DROPPED,
    b"HTTP_CONTENT_TYPE": _DROPPED,
    b"HTTP_TRANSFER_ENCODING": _DROPPED,
    **{name: index for index, name in enumerate(_CGI_NAMES)},
}
_kinds: Final[dict[bytes, int]] = dict(_FIRST_KINDS)
#: ``HTTP_X_FOO`` → ``x-foo``
_header_names: Final[dict[bytes, bytes]] = {}
#: values found free of CR, LF and NUL (header values repeat: Accept, User-Agent, Host)
_clean_values: Final[set[bytes]] = set()
_methods: Final[dict[bytes, str]] = {}
_addresses: Final[dict[bytes, str]] = {}
_ports: Final[dict[bytes, int]] = {}
_hosts: Final[set[bytes]] = set()
_texts: Final[dict[bytes, str]] = {}
_new_tuple: Final = tuple.__new__


def _kind(key: bytes) -> int:
    """What the variable ``key`` is (see ``_kinds``), worked out the first time it is seen."""
    if key.startswith(b"HTTP_"):
        name = key[5:].lower().replace(b"_", b"-")
        if not is_token(name):
            raise BadRequest("a header variable name is not a valid field name")
        if len(_header_names) >= _CACHE_LIMIT:
            _header_names.clear()
        _header_names[key] = name
        kind = _HEADER
    elif key:
        kind = _EXTRA
    else:
        raise BadRequest("a request variable has an empty name")
    if len(_kinds) >= _CACHE_LIMIT:
        _kinds.clear()
        _kinds.update(_FIRST_KINDS)
    _kinds[key] = kind
    return kind


def _check_value(value: bytes) -> None:
    if value not in _clean_values:
        if _forbidden_in_value(value):
            raise BadRequest("a request variable has a CR, LF or NUL in its value")
        if len(_clean_values) >= _CACHE_LIMIT:
            _clean_values.clear()
        _clean_values.add(value)


def _method(value: bytes) -> str:
    method = _methods.get(value)
    if method is None:
        if not is_token(value):
            raise BadRequest("REQUEST_METHOD is not a token")
        method = value.decode("ascii")
        if len(_methods) < 64:  # methods are few; a flood of odd ones is not remembered
            _methods[value] = method
    return method


def _address(value: bytes, what: str) -> str:
    address = _addresses.get(value)
    if address is None:
        try:
            address = str(ipaddress.ip_address(value.decode("ascii")))
        except ValueError:  # UnicodeDecodeError is a ValueError too
            raise BadRequest(f"{what} is not an IP address") from None
        if len(_addresses) >= _CACHE_LIMIT:
            _addresses.clear()
        _addresses[value] = address
    return address


def _port(value: bytes, what: str) -> int:
    port = _ports.get(value)
    if port is None:
        if not value.isdigit() or len(value) > 5 or int(value) > 65535:
            raise BadRequest(f"{what} is not a port number")
        port = int(value)
        if len(_ports) >= _CACHE_LIMIT:
            _ports.clear()
        _ports[value] = port
    return port


def _check_host(value: bytes, what: str) -> None:
    if value not in _hosts:
        if not valid_host(value):
            raise BadRequest(f"{what} is not a valid host")
        if len(_hosts) >= _CACHE_LIMIT:
            _hosts.clear()
        _hosts.add(value)


def _text(value: bytes, what: str) -> str:
    text = _texts.get(value)
    if text is None:
        if _forbidden_in_value(value):
            raise BadRequest(f"{what} has a CR, LF or NUL")
        # PEP 3333 §"Unicode issues": bytes carried in a str as latin-1, as for PATH_INFO
        text = value.decode("latin-1")
        if len(_texts) >= _CACHE_LIMIT:
            _texts.clear()
        _texts[value] = text
    return text


class CGIVars:
    """Collects the variables of one request (:meth:`add`), then checks them (:meth:`finish`)
    and builds the events (:meth:`request`, :meth:`origin`).

    Raises :class:`portico.errors.ProtocolError` subclasses; the protocol modules turn them into
    ``StreamError`` events, so nothing raises out of their ``receive_data``.
    """

    def __init__(self) -> None:
        self.headers: Headers = []
        #: the CGI variables read, by their place in _CGI_NAMES (None: not sent)
        self.values: list[bytes | None] = [None] * _CGI_COUNT
        self.extra: list[tuple[bytes, bytes]] = []
        #: the body length from CONTENT_LENGTH, ``None`` when it is empty or absent
        self.content_length: int | None = None
        self.method = ""
        self.raw_path = b""
        self.query_string = b""
        self.http_version = ""
        self.scheme = "http"
        self.host: bytes | None = None

    def add(self, key: bytes, value: bytes) -> None:
        """One variable, in the order received."""
        kind = _kinds.get(key, -1)
        if kind < 0:
            kind = _kind(key)
        if kind < _CGI_COUNT:
            values = self.values
            seen = values[kind]
            if seen is None:
                values[kind] = value
            elif seen != value:  # a repeat that disagrees is ambiguous
                raise BadRequest("a request variable is repeated with another value")
        elif kind == _HEADER:
            _check_value(value)
            name = _header_names.get(key)
            if name is None:  # the cache was cleared between the two lookups
                _kind(key)
                name = _header_names[key]
            if name == b"host":
                if self.host is not None:
                    raise BadRequest("a request must have at most one Host header")
                _check_host(value, "HTTP_HOST")
                self.host = value
            self.headers.append((name, value))
        elif kind == _EXTRA:
            _check_value(value)
            self.extra.append((key, value))

    def finish(self, max_body_size: int) -> None:
        """Check the variables and work out the request; ``max_body_size`` 0 means unlimited."""
        values = self.values
        method = values[_REQUEST_METHOD]
        if method is None:
            raise BadRequest("REQUEST_METHOD is missing")
        self.method = _method(method)
        protocol = values[_SERVER_PROTOCOL]
        if protocol is None:
            raise BadRequest("SERVER_PROTOCOL is missing")
        version = _VERSIONS.get(protocol)
        if version is None:
            raise VersionNotSupported("SERVER_PROTOCOL names an unsupported HTTP version")
        self.http_version = version
        uri = values[_REQUEST_URI]
        if uri is not None:
            self._split_target(uri)
        else:
            self._rebuild_target()
        self._scheme()
        content_type = values[_CONTENT_TYPE]
        length = values[_CONTENT_LENGTH]
        if content_type or length:
            extra: Headers = []
            if content_type:
                if _forbidden_in_value(content_type):
                    raise BadRequest("CONTENT_TYPE has a CR, LF or NUL")
                extra.append((b"content-type", content_type))
            if length:
                if not length.isdigit():
                    raise BadRequest("CONTENT_LENGTH is not a number")
                if len(length) > _MAX_LENGTH_DIGITS or (
                    max_body_size and int(length) > max_body_size
                ):
                    raise ContentTooLarge("request body larger than the limit")
                self.content_length = int(length)
                extra.append((b"content-length", length))
            self.headers[:0] = extra

    def _split_target(self, uri: bytes) -> None:
        if _bad_in_target(uri):
            raise BadRequest("REQUEST_URI has whitespace or control characters")
        if uri.find(b"#") >= 0:  # nginx passes a fragment a client sent; HTTP never carries it
            uri = uri.partition(b"#")[0]
        if uri[:1] != b"/" and uri != b"*":
            raise BadRequest("REQUEST_URI is not an origin-form request-target")
        query_at = uri.find(b"?")
        if query_at < 0:
            self.raw_path = uri
        else:
            self.raw_path = uri[:query_at]
            self.query_string = uri[query_at + 1 :]

    def _rebuild_target(self) -> None:
        values = self.values
        path = values[_DOCUMENT_URI]
        if path is None:
            path = (values[_SCRIPT_NAME] or b"") + (values[_PATH_INFO] or b"")
        if path[:1] != b"/":
            raise BadRequest("no REQUEST_URI, DOCUMENT_URI or PATH_INFO gives the path")
        if _forbidden_in_value(path):
            raise BadRequest("the request path has a CR, LF or NUL")
        self.raw_path = quote_from_bytes(path, _PATH_SAFE).encode("ascii")
        query = values[_QUERY_STRING] or b""
        if _bad_in_target(query):
            raise BadRequest("QUERY_STRING has whitespace or control characters")
        self.query_string = query

    def _scheme(self) -> None:
        values = self.values
        https = values[_HTTPS]
        request_scheme = values[_REQUEST_SCHEME]
        scheme = "http"
        if https is not None:
            found = _HTTPS_VALUES.get(https) or _HTTPS_VALUES.get(https.lower())
            if found is None:
                raise BadRequest("HTTPS is neither on nor off")
            scheme = found
        if request_scheme is not None:
            named = _SCHEMES.get(request_scheme) or _SCHEMES.get(request_scheme.lower())
            if named is None:
                raise BadRequest("REQUEST_SCHEME is neither http nor https")
            # nginx sends HTTPS only when on, so an empty one means "not said"
            if https and named != scheme:
                raise BadRequest("HTTPS and REQUEST_SCHEME disagree")
            scheme = named
        self.scheme = scheme

    def request(self, stream_id: int, has_body: bool) -> Request:
        # tuple.__new__ skips NamedTuple's Python-level __new__, as in http11
        return _new_tuple(
            Request,
            (
                stream_id,
                self.method,
                self.raw_path,
                self.query_string,
                self.http_version,
                self.headers,
                has_body,
                False,  # nginx answers Expect: 100-continue itself before it reads the body
                None,
                self.scheme,
            ),
        )

    def origin(self, stream_id: int) -> Origin:
        values = self.values
        client: tuple[str, int] | None = None
        remote = values[_REMOTE_ADDR]
        if remote and remote != b"unix:":
            port = values[_REMOTE_PORT]
            client = (_address(remote, "REMOTE_ADDR"), _port(port, "REMOTE_PORT") if port else 0)
        name = values[_SERVER_NAME] or b""
        if name:
            _check_host(name, "SERVER_NAME")
        port_value = values[_SERVER_PORT]
        server_port = _port(port_value, "SERVER_PORT") if port_value else None
        addr = values[_SERVER_ADDR]
        server_addr: str | None = None
        if addr:
            server_addr = "unix:" if addr == b"unix:" else _address(addr, "SERVER_ADDR")
        script = values[_SCRIPT_NAME]
        script_name = None if script is None else _text(script, "SCRIPT_NAME")
        path = values[_PATH_INFO]
        path_info = None if path is None else _text(path, "PATH_INFO")
        if path_info and path_info[0] != "/":
            raise BadRequest("PATH_INFO does not start with /")
        root_path = ""
        if script_name and path_info is not None:
            if script_name[0] != "/":
                raise BadRequest("SCRIPT_NAME does not start with /")
            root_path = script_name.rstrip("/")
        user = values[_REMOTE_USER]
        return _new_tuple(
            Origin,
            (
                stream_id,
                client,
                self.scheme,
                _text(name, "SERVER_NAME"),
                server_port,
                server_addr,
                root_path,
                script_name,
                path_info,
                _text(user, "REMOTE_USER") if user else None,  # nginx sends "" for nobody
                self.extra,
            ),
        )
