"""TLS configuration: the server's ``SSLContext`` from the settings, checked file by file, and the
facts about one connection that apps are told (the ASGI TLS extension).

No event loop here: the CLI checks the files with :func:`check` before the master forks (so a
missing file, a wrong password or a key that does not match its certificate stops the server
with a message naming the file), the master checks them again on SIGHUP before replacing any
worker (so a broken new certificate is logged and the old one kept), and each worker builds its
own context with :func:`load`. The bytes themselves go through ``runtime.tls_transport``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Final

from portico.config import Config
from portico.errors import ConfigError

__all__ = ["ServerTLS", "TLSSettings", "check", "connection_facts", "load", "tls_settings"]

_VERIFY: Final = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
_MIN_VERSION: Final = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
# The ASGI TLS extension gives versions as the protocol's own numbers (RFC 8446 §4.1.2).
_VERSION_NUMBERS: Final = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# RFC 4514 §3: the attribute types with a short name; others keep the name OpenSSL gives them,
# as `openssl x509 -nameopt RFC2253` prints them (emailAddress, serialNumber…).
_SHORT_NAMES: Final = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_PEM_CERT: Final = "-----BEGIN CERTIFICATE-----"
_PEM_CERT_END: Final = "-----END CERTIFICATE-----"


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The TLS settings of a server (see the settings table for what each means)."""

    certfile: str
    keyfile: str | None
    password: str | None
    ca_certs: str | None
    cert_reqs: str
    ciphers: str | None
    min_version: str
    #: ALPN protocol names in our order of preference (RFC 7301)
    alpn: tuple[str, ...]


def tls_settings(config: Config) -> TLSSettings | None:
    """The TLS settings of ``config``, or ``None`` when it serves no TLS."""
    if config.certfile is None:
        return None
    return TLSSettings(
        certfile=config.certfile,
        keyfile=config.keyfile,
        password=config.keyfile_password,
        ca_certs=config.ca_certs,
        cert_reqs=config.cert_reqs,
        ciphers=config.ciphers,
        min_version=config.tls_min_version,
        alpn=tuple(
            name
            for name, protocol in (("h2", "h2"), ("http/1.1", "h1"))
            if protocol in config.http_protocols
        ),
    )


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """A loaded TLS configuration: the context new connections use, and what apps are told."""

    context: ssl.SSLContext
    #: the server's certificate (the first one of ``certfile``), in PEM
    server_cert: str
    #: OpenSSL cipher name -> its IANA number (the ASGI extension's ``cipher_suite``)
    cipher_numbers: dict[str, int]


def check(config: Config) -> None:
    """Load the TLS files of ``config`` once, raising :class:`ConfigError` if they do not work."""
    settings = tls_settings(config)
    if settings is not None:
        load(settings)


def _read(path: str, setting: str) -> str:
    try:
        with open(path, encoding="latin-1") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(f"{setting} {path}: cannot read it: {exc.strerror or exc}") from None


def load(settings: TLSSettings) -> ServerTLS:
    """The server context for ``settings``; :class:`ConfigError` says which file is wrong and
    what to do, since OpenSSL's own errors ("PEM lib") do not."""
    certfile = settings.certfile
    keyfile = settings.keyfile or certfile
    key_setting = "--keyfile" if settings.keyfile else "--certfile"
    cert_text = _read(certfile, "--certfile")
    key_text = cert_text if keyfile == certfile else _read(keyfile, key_setting)
    server_cert = _first_certificate(cert_text, certfile)
    if "PRIVATE KEY-----" not in key_text:
        raise ConfigError(
            f"{key_setting} {keyfile}: no PEM private key in it (-----BEGIN PRIVATE KEY-----); "
            + ("give the key with --keyfile" if key_setting == "--certfile" else "check the path")
        )
    encrypted = (
        "ENCRYPTED" in key_text
    )  # PKCS#8 "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED"
    if encrypted and not settings.password:
        raise ConfigError(
            f"{key_setting} {keyfile} is encrypted: give its password with --keyfile-password "
            "(or PORTICO_KEYFILE_PASSWORD)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSION[settings.min_version]
    # No renegotiation (a client-driven CPU cost, CVE-2011-1473); the server's cipher order.
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    password = (settings.password or "").encode()
    try:
        # a callable, never None: without one OpenSSL would prompt on the terminal
        context.load_cert_chain(certfile, keyfile, password=lambda: password)
    except ssl.SSLError as exc:
        if exc.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"):
            raise ConfigError(
                f"{key_setting} {keyfile}: this key does not belong to the certificate in "
                f"--certfile {certfile}; give the key the certificate was made for"
            ) from None
        if encrypted:
            raise ConfigError(
                f"{key_setting} {keyfile}: the password does not decrypt it; check "
                "--keyfile-password"
            ) from None
        raise ConfigError(
            f"--certfile {certfile} / {key_setting} {keyfile}: OpenSSL cannot load them ({exc})"
        ) from None
    if settings.ciphers:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError:
            raise ConfigError(
                f"--ciphers {settings.ciphers!r}: no cipher of OpenSSL's matches it"
            ) from None
    if settings.cert_reqs != "none":
        assert settings.ca_certs is not None  # the settings table checks the pair
        _first_certificate(_read(settings.ca_certs, "--ca-certs"), settings.ca_certs)
        try:
            context.load_verify_locations(cafile=settings.ca_certs)
        except ssl.SSLError as exc:
            raise ConfigError(f"--ca-certs {settings.ca_certs}: cannot load it ({exc})") from None
        context.verify_mode = _VERIFY[settings.cert_reqs]
    context.set_alpn_protocols(list(settings.alpn))
    numbers = {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}
    return ServerTLS(context, server_cert, numbers)


def _first_certificate(text: str, path: str) -> str:
    start = text.find(_PEM_CERT)
    end = text.find(_PEM_CERT_END, start)
    if start < 0 or end < 0:
        raise ConfigError(
            f"{path}: no PEM certificate in it (-----BEGIN CERTIFICATE-----); give the "
            "certificate chain in PEM form"
        )
    block = text[start : end + len(_PEM_CERT_END)]
    try:
        return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(block))
    except ValueError:
        raise ConfigError(f"{path}: its first certificate is not valid PEM") from None


def connection_facts(tls: ServerTLS, connection: ssl.SSLObject) -> dict[str, Any]:
    """What the ASGI TLS extension tells an app about one connection (WSGI reads it too)."""
    version = connection.version()
    cipher = connection.cipher()
    chain: list[str] = []
    name: str | None = None
    leaf = connection.getpeercert(binary_form=True)
    if leaf:
        verified = getattr(connection, "get_verified_chain", None)  # Python 3.13
        if verified is not None:
            chain = [ssl.DER_cert_to_PEM_cert(cert) for cert in verified()]
        else:
            chain = [ssl.DER_cert_to_PEM_cert(leaf)]
        subject = (connection.getpeercert() or {}).get("subject")
        if subject:
            name = rfc4514_name(subject)
    return {
        "server_cert": tls.server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        # a certificate that fails verification fails the handshake, so one that got here
        # was verified
        "client_cert_error": None,
        "tls_version": _VERSION_NUMBERS.get(version or ""),
        "cipher_suite": tls.cipher_numbers.get(cipher[0]) if cipher else None,
    }


def rfc4514_name(subject: Any) -> str:
    """A certificate subject, as ``SSLObject.getpeercert()`` gives it, in RFC 4514 form: the
    last RDN first, multi-valued RDNs joined with ``+``, special characters escaped (§2.4)."""
    rdns = []
    for rdn in reversed(subject):
        rdns.append(
            "+".join(f"{_SHORT_NAMES.get(kind, kind)}={_escape(value)}" for kind, value in rdn)
        )
    return ",".join(rdns)


def _escape(value: str) -> str:
    out = []
    last = len(value) - 1
    for index, char in enumerate(value):
        edge_space = char == " " and index in (0, last)
        if char in '"+,;<>\\' or edge_space or (char == "#" and index == 0):
            out.append("\\" + char)
        elif char == "\x00":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)
