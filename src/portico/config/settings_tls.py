"""The TLS rows of the settings table: the certificate, the key, client certificates, versions.

Inherited by ``settings.Config``. The files are loaded once in the master (``portico.runtime.tls``)
so that a file that does not load stops the server before any worker starts, naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass

from portico.config import kinds
from portico.config.setting import gunicorn, setting, uvicorn

__all__ = ["TLSSettings"]


@dataclass(frozen=True)
class TLSSettings:
    """The TLS settings (a base of ``Config``; see the module docstring)."""

    # No slots of its own: several groups are bases of Config, which makes the slots for all.
    __slots__ = ()

    certfile: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "TLS certificate chain (PEM: the server's certificate first, then its intermediates). "
        "Set, every `bind` (TCP or unix) serves TLS; SIGHUP loads it again for new "
        "connections, and a file that does not load is logged and the old one kept.",
        flags=("--certfile",),
        peers=(
            gunicorn("certfile", "--certfile"),
            uvicorn("--ssl-certfile"),
        ),
    )
    keyfile: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "The private key of `certfile` (PEM); unset, the key is read from `certfile` itself.",
        flags=("--keyfile",),
        peers=(
            gunicorn("keyfile", "--keyfile"),
            uvicorn("--ssl-keyfile"),
        ),
    )
    keyfile_password: str | None = setting(
        None,
        kinds.OPTIONAL_STR,
        "Password of an encrypted `keyfile`. Prefer the environment variable or the file: a "
        "command line is visible to every user of the machine in `ps`.",
        flags=("--keyfile-password",),
        secret=True,
        peers=(uvicorn("--ssl-keyfile-password"),),
    )
    ca_certs: str | None = setting(
        None,
        kinds.OPTIONAL_PATH,
        "CA certificates (PEM) that client certificates must chain to; needed when "
        "`cert_reqs` is `optional` or `required` (mutual TLS).",
        flags=("--ca-certs",),
        peers=(
            gunicorn("ca_certs", "--ca-certs"),
            uvicorn("--ssl-ca-certs"),
        ),
    )
    cert_reqs: str = setting(
        "none",
        kinds.CERT_REQS,
        "Client certificates: `none` never asks for one, `optional` asks and verifies one if "
        "the client sends it, `required` refuses clients without a valid one (mutual TLS). "
        "Apps see it in the ASGI `tls` extension and the WSGI `SSL_CLIENT_*` variables.",
        flags=("--cert-reqs",),
        peers=(
            gunicorn("cert_reqs", "--cert-reqs"),
            uvicorn("--ssl-cert-reqs"),
        ),
    )
    ciphers: str | None = setting(
        None,
        kinds.OPTIONAL_STR,
        "OpenSSL cipher list for TLS 1.2 (e.g. `ECDHE+AESGCM:ECDHE+CHACHA20`); unset keeps "
        "Python's default, which excludes weak ciphers. TLS 1.3's suites are all strong and "
        "Python's ssl module does not let them be chosen.",
        flags=("--ciphers",),
        peers=(
            gunicorn("ciphers", "--ciphers"),
            uvicorn("--ssl-ciphers"),
        ),
    )
    tls_min_version: str = setting(
        "1.2",
        kinds.choice("1.2", "1.3"),
        "Oldest TLS version accepted. 1.2 by default (1.0 and 1.1 are deprecated by RFC 8996); "
        "1.3 for clients that all support it.",
        flags=("--tls-min-version",),
    )
