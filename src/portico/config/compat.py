"""gunicorn's and uvicorn's options that are not plain aliases: translated, noted, or refused.

A flag that means exactly a Portico setting is declared with the setting (``peers=`` in the
settings table). Everything else a gunicorn 27 or uvicorn 0.54 command line (or a
``gunicorn.conf.py``) may say is listed here, once, with what Portico does about it:

* **translated**: the same meaning reached another way (``--host``/``--port`` make a ``bind``,
  ``-k sync`` means one thread per worker, ``--limit-request-line`` is ``max_request_line``
  but gunicorn's 0 means "unlimited", which Portico refuses);
* **noted**: meaningless for Portico (``--http httptools``: Portico has its own parser), accepted
  with one info line saying what Portico does instead;
* **refused**: a feature Portico does not have, or one that would change the app's concurrency
  model (``-k gevent``), stops the server with a message naming the alternative.

The README's table of peer flags is generated from this module and the settings table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from portico.config.compat_notes import NOTED, REFUSED, Takes

__all__ = [
    "OPTIONS",
    "PSEUDO_KEYS",
    "VALUE_MAPS",
    "Outcome",
    "PeerOption",
    "by_flag",
    "by_name",
    "finish",
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one peer option does: setting values (raw, for the setting's kind; for list settings,
    items added) and a line to log."""

    values: tuple[tuple[str, object], ...] = ()
    note: str = ""
    #: values that apply only where nothing else set the setting
    defaults: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class PeerOption:
    """One option of gunicorn or uvicorn that Portico handles here (see the module docstring)."""

    peer: str  # "gunicorn" or "uvicorn"
    flags: tuple[str, ...]
    #: the gunicorn config-file name ("" for uvicorn's options and flag-only ones)
    name: str
    takes: Takes
    #: ``handle(value)``: ``value`` is the flag's string (``None`` for a switch), or the Python
    #: value of a config file; raises ``ValueError`` with the reason to refuse it
    handle: Callable[[object], Outcome]
    #: what Portico does, for the README's table
    summary: str
    #: the README's Portico column (a setting name, or what happens)
    target: str = field(default="")


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _noted(note: str) -> Callable[[object], Outcome]:
    return lambda value: Outcome(note=note)


def _refused(reason: str) -> Callable[[object], Outcome]:
    def handle(value: object) -> Outcome:
        raise ValueError(reason)

    return handle


def _note(
    peer: str, flags: tuple[str, ...], name: str, note: str, takes: Takes = "value"
) -> PeerOption:
    return PeerOption(peer, flags, name, takes, _noted(note), note, "accepted, no effect")


def _refuse(
    peer: str, flags: tuple[str, ...], name: str, reason: str, takes: Takes = "value"
) -> PeerOption:
    return PeerOption(peer, flags, name, takes, _refused(reason), reason, "refused")


# --- the translations ---------------------------------------------------------------------


def _limit(setting: str, what: str) -> Callable[[object], Outcome]:
    """gunicorn's request limits, where 0 means "unlimited": Portico always bounds them."""

    def handle(value: object) -> Outcome:
        if _text(value).strip() == "0":
            raise ValueError(
                f"gunicorn's 0 means no limit; Portico always bounds the {what}: give the "
                f"bound (see {setting})"
            )
        return Outcome(((setting, value),))

    return handle


def _field_size(value: object) -> Outcome:
    return Outcome(
        note="Portico bounds the whole header block (max_header_bytes) instead of each field; "
        "no field can be larger than that"
    )


_SYNC_CLASSES = frozenset(
    {"sync", "gthread", "gunicorn.workers.sync.SyncWorker", "gunicorn.workers.gthread.ThreadWorker"}
)
_ASGI_CLASSES = frozenset(
    {
        "asgi",
        "gunicorn.workers.gasgi.ASGIWorker",
        "uvicorn.workers.UvicornWorker",
        "uvicorn.workers.UvicornH11Worker",
        "uvicorn_worker.UvicornWorker",
        "uvicorn_worker.UvicornH11Worker",
    }
)
_GREEN_CLASSES = frozenset(
    {
        "gevent",
        "gevent_wsgi",
        "gevent_pywsgi",
        "eventlet",
        "tornado",
        "gunicorn.workers.ggevent.GeventWorker",
        "gunicorn.workers.ggevent.GeventPyWSGIWorker",
        "gunicorn.workers.geventlet.EventletWorker",
        "gunicorn.workers.gtornado.TornadoWorker",
    }
)


def _worker_class(value: object) -> Outcome:
    name = _text(value).strip().removeprefix("egg:gunicorn#")
    if name in _SYNC_CLASSES:
        # gunicorn's sync and gthread workers run one request at a time per worker unless
        # --threads says more; an app written for that may not be thread-safe, so keep it
        return Outcome(
            defaults=(("threads", "1"),),
            note=f"-k {name}: Portico runs WSGI apps in a pool of --threads threads beside its "
            "event loop, as gthread does; one thread per worker unless --threads says more",
        )
    if name in _ASGI_CLASSES:
        return Outcome(note=f"-k {name}: Portico serves ASGI apps itself (no worker class needed)")
    if name in _GREEN_CLASSES:
        raise ValueError(
            f"{name} workers patch the standard library to run the app on greenlets; Portico "
            "does not, as that changes the app's concurrency model: serve an async app over "
            "ASGI, or a WSGI app with --threads N"
        )
    raise ValueError(
        f"unknown worker class {name!r}: Portico has one worker, serving WSGI and ASGI"
    )


def _gunicorn_umask(value: object) -> Outcome:
    # gunicorn reads -m with int(x, 0), a leading 0 meaning octal; the setting's kind reads
    # octal and refuses the ambiguous plain numbers, so hand it the octal form
    if isinstance(value, int) and not isinstance(value, bool):
        return Outcome((("umask", value),))
    text = _text(value).strip()
    if len(text) > 1 and text[0] == "0" and text[1].isdigit():
        text = "0o" + text[1:]
    try:
        number = int(text, 0)
    except ValueError:
        raise ValueError(f"expected a number such as 0o117, got {text!r}") from None
    return Outcome((("umask", number),))


def _address(key: str) -> Callable[[object], Outcome]:
    return lambda value: Outcome(((key, _text(value)),))


def _ssl_version(value: object) -> Outcome:
    text = _text(value).strip().upper().replace("PROTOCOL_", "")
    if text in ("3", "4", "TLSV1", "TLSV1_1"):
        raise ValueError("TLS 1.0 and 1.1 are deprecated (RFC 8996); Portico serves 1.2 and 1.3")
    return Outcome(
        note="Portico negotiates TLS 1.2 or 1.3 with each client; --tls-min-version 1.3 refuses 1.2"
    )


def _proxy_protocol(value: object) -> Outcome:
    if value is None or value is True:
        return Outcome((("proxy_protocol", "true"),))
    mode = _text(value).strip().lower()
    if mode in ("off", "false"):
        return Outcome((("proxy_protocol", "false"),))
    if mode in ("auto", "true"):
        return Outcome((("proxy_protocol", "true"),))
    if mode in ("v1", "v2"):
        return Outcome(
            (("proxy_protocol", "true"),),
            f"--proxy-protocol {mode}: Portico reads both versions of the PROXY header",
        )
    raise ValueError(f"expected off, v1, v2 or auto, got {mode!r}")


def _http2_cleartext(value: object) -> Outcome:
    mode = _text(value).strip().lower()
    if mode not in ("off", "prior-knowledge", "upgrade", "both"):
        raise ValueError(f"expected prior-knowledge, upgrade, both or off, got {mode!r}")
    return Outcome(
        note=f"--http2-cleartext {mode}: Portico serves HTTP/2 with prior knowledge on every plain "
        "bind while --http-protocols has h2 (--http-protocols h1 turns it off); Upgrade: h2c is "
        "not offered (RFC 9113 §3.1 deprecates it), so those clients stay on HTTP/1.1"
    )


def _ws_deflate(value: object) -> Outcome:
    return Outcome((("ws_per_message_deflate", value),))


def _ws_implementation(value: object) -> Outcome:
    if _text(value).strip().lower() == "none":
        raise ValueError(
            "Portico always speaks WebSocket; an app that wants none refuses the handshake "
            "(websocket.close before websocket.accept gives the client a 403)"
        )
    return Outcome(note="Portico has its own WebSocket implementation (--ws ignored)")


def _reload_extra_file(value: object) -> Outcome:
    return Outcome((("reload_extra", os.path.abspath(_text(value))),))


def _header_map(value: object) -> Outcome:
    mode = _text(value).strip().lower()
    if mode == "drop":
        return Outcome(note="Portico drops header names with underscores, as gunicorn's drop")
    raise ValueError(
        f"--header-map {mode}: Portico drops header names with underscores (gunicorn's "
        "default, 'drop'), so that X_Forwarded_For cannot pass for X-Forwarded-For"
    )


def _to(setting: str) -> Callable[[object], Outcome]:
    return lambda value: Outcome(((setting, value),))


_G, _U = "gunicorn", "uvicorn"

#: Every peer option that is not a plain alias of a setting.
OPTIONS: tuple[PeerOption, ...] = (
    # --- uvicorn: where to listen ------------------------------------------------------
    PeerOption(_U, ("--host",), "", "value", _address("host"), "with --port, one bind", "bind"),
    PeerOption(_U, ("--port",), "", "value", _address("port"), "with --host, one bind", "bind"),
    PeerOption(
        _U, ("--uds",), "", "value", _address("uds"), "bind `unix:PATH`, as uvicorn: alone", "bind"
    ),
    PeerOption(
        _U, ("--fd",), "", "value", _address("fd"), "bind `fd://N`, as uvicorn: alone", "bind"
    ),
    # --- translated ---------------------------------------------------------------------
    PeerOption(
        _G,
        ("-k", "--worker-class"),
        "worker_class",
        "value",
        _worker_class,
        "sync/gthread: threads 1 unless --threads; asgi and uvicorn's workers: accepted; "
        "gevent, eventlet, tornado: refused",
        "threads",
    ),
    PeerOption(
        _G,
        ("--limit-request-line",),
        "limit_request_line",
        "value",
        _limit("max_request_line", "request line"),
        "the same bound; gunicorn's 0 (unlimited) is refused",
        "max_request_line",
    ),
    PeerOption(
        _G,
        ("--limit-request-fields",),
        "limit_request_fields",
        "value",
        _limit("max_header_count", "number of header fields"),
        "the same bound; gunicorn's 0 (unlimited) is refused",
        "max_header_count",
    ),
    PeerOption(
        _G,
        ("--limit-request-field_size",),
        "limit_request_field_size",
        "value",
        _field_size,
        "accepted with a note: Portico bounds the header block as a whole",
        "max_header_bytes",
    ),
    PeerOption(
        _G,
        ("-m", "--umask"),
        "umask",
        "value",
        _gunicorn_umask,
        "the same mask; gunicorn's decimal form is read as gunicorn reads it",
        "umask",
    ),
    PeerOption(
        _G,
        ("--proxy-protocol",),
        "proxy_protocol",
        "value",
        _proxy_protocol,
        "off, or on for v1, v2 and auto (both versions are read)",
        "proxy_protocol",
    ),
    PeerOption(
        _G,
        ("--http2-cleartext",),
        "http2_cleartext",
        "value",
        _http2_cleartext,
        "h2c prior knowledge is always served while h2 is on; Upgrade: h2c never",
        "http_protocols",
    ),
    PeerOption(
        _G,
        ("--proxy-allow-from",),
        "proxy_allow_ips",
        "value",
        _address("proxy_allow_from"),
        "Portico trusts one list of proxies for both; a different list is refused",
        "forwarded_allow_ips",
    ),
    PeerOption(
        _G,
        ("--reload-extra-file",),
        "reload_extra_files",
        "value",
        _reload_extra_file,
        "its directory joins reload_dir and its name reload_include",
        "reload_dir, reload_include",
    ),
    PeerOption(
        _U,
        ("--ws-per-message-deflate",),
        "",
        "value",
        _ws_deflate,
        "`--ws-per-message-deflate false` turns it off",
        "ws_per_message_deflate",
    ),
    PeerOption(
        _G,
        ("--header-map",),
        "header_map",
        "value",
        _header_map,
        "drop: Portico's behaviour; refuse and dangerous: refused",
        "(underscores dropped)",
    ),
    PeerOption(
        _G,
        ("--ssl-version",),
        "ssl_version",
        "value",
        _ssl_version,
        "accepted with a note (TLS 1.2 and 1.3 negotiated); TLS 1.0/1.1 refused",
        "tls_min_version",
    ),
    PeerOption(
        _U,
        ("--ssl-version",),
        "",
        "value",
        _ssl_version,
        "accepted with a note (TLS 1.2 and 1.3 negotiated); TLS 1.0/1.1 refused",
        "tls_min_version",
    ),
    PeerOption(
        _U,
        ("--ws",),
        "",
        "value",
        _ws_implementation,
        "accepted with a note; `none` refused",
        "accepted, no effect",
    ),
)

OPTIONS += tuple(
    _note(peer, tuple(flags.split()), name, text, takes) for peer, flags, name, takes, text in NOTED
)
OPTIONS += tuple(
    _refuse(peer, tuple(flags.split()), name, text, takes)
    for peer, flags, name, takes, text in REFUSED
)

#: Peer values a setting's kind does not take, and what they mean: setting -> value -> (value,
#: note).
VALUE_MAPS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "log_level": {"trace": ("debug", "--log-level trace: Portico has no trace level; debug it is")},
}

#: What peer options collect for ``finish`` to make settings of, rather than settings.
PSEUDO_KEYS = frozenset({"host", "port", "uds", "fd", "proxy_allow_from", "reload_extra"})


def by_flag() -> dict[str, PeerOption]:
    """Option string -> option; an option string two peers share maps to gunicorn's."""
    out: dict[str, PeerOption] = {}
    for option in OPTIONS:
        for flag in option.flags:
            out.setdefault(flag, option)
    return out


def by_name() -> dict[str, PeerOption]:
    """gunicorn config-file name -> option."""
    return {option.name: option for option in OPTIONS if option.name}


def finish(
    given: Mapping[str, list[tuple[str, str]]],
    values: Mapping[str, tuple[str, object]],
    convert: Callable[[str, object], object],
) -> tuple[dict[str, tuple[str, object]], list[str]]:
    """Settings made of the pseudo keys that peer options collected (``given``: key -> (origin,
    value) in order), checked against the ``values`` of the same source; ``convert(setting,
    raw)`` is the setting's kind. Returns the settings and notes; ``ValueError`` for a
    combination that is ambiguous (``--bind`` with ``--host``)."""
    out: dict[str, tuple[str, object]] = {}
    notes: list[str] = []
    address = {key: given[key][-1] for key in ("uds", "fd", "host", "port") if key in given}
    if address:
        flags = "/".join(f"--{key}" for key in address)
        if "bind" in values:
            raise ValueError(f"{flags} and --bind both say where to listen: give one of them")
        # uvicorn listens on one socket: the unix socket, else the descriptor, else TCP
        if "uds" in address:
            spec, origin = "unix:" + address["uds"][1], address["uds"][0]
        elif "fd" in address:
            spec, origin = "fd://" + address["fd"][1], address["fd"][0]
        else:
            host = address.get("host", ("", "127.0.0.1"))[1]
            port = address.get("port", ("", "8000"))[1]
            spec = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            origin = "flag " + "/".join(f"--{key}" for key in ("host", "port") if key in address)
        chosen = "uds" if "uds" in address else "fd" if "fd" in address else ""
        ignored = [f"--{key}" for key in address if chosen and key != chosen]
        if ignored:
            notes.append(f"{', '.join(ignored)} ignored: uvicorn listens on {spec} alone")
        out["bind"] = (origin, convert("bind", [spec]))
    if "proxy_allow_from" in given:
        origin, raw = given["proxy_allow_from"][-1]
        allowed = convert("forwarded_allow_ips", raw)
        current = values.get("forwarded_allow_ips")
        if current is not None and _ips(str(current[1])) != _ips(str(allowed)):
            raise ValueError(
                f"--proxy-allow-from {raw} differs from forwarded_allow_ips ({current[0]}): "
                "Portico trusts one list of proxies, for the PROXY protocol and the headers"
            )
        out["forwarded_allow_ips"] = (origin, allowed)
    if "reload_extra" in given:
        # the files' directories are watched beside the ones watched anyway (reload_dir, or
        # the app's directory), for the files' names beside reload_include's patterns
        origin = given["reload_extra"][-1][0]
        paths = [path for _, path in given["reload_extra"]]
        dirs = values.get("reload_dir", ("", ()))[1] or (values.get("app_dir", ("", "."))[1],)
        include = values.get("reload_include", ("", ("*.py",)))[1]
        assert isinstance(dirs, tuple) and isinstance(include, tuple)
        extra_dirs = tuple(os.path.dirname(path) for path in paths)
        out["reload_dir"] = (origin, convert("reload_dir", [*dirs, *extra_dirs]))
        names = tuple(os.path.basename(path) for path in paths)
        out["reload_include"] = (origin, convert("reload_include", [*include, *names]))
    return out, notes


def _ips(text: str) -> set[str]:
    return {part.strip() for part in text.split(",") if part.strip()}
