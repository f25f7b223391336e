"""The WSGI environ: its CGI variables, ``wsgi.input``, ``wsgi.errors`` and ``wsgi.file_wrapper``.

PEP 3333 §"environ Variables". Written against the runtime's ``BlockingStream`` seam
(``portico.gateways.blocking``), with no I/O of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any, Final, Protocol
from urllib.parse import unquote_to_bytes

from portico.gateways.blocking import BlockingStream
from portico.logs import error_log as log

#: Bytes asked of the runtime per read when the app does not say how many (``read()``,
#: ``readline()``): large enough to make few hand-offs, small enough to keep memory flat.
READ_CHUNK = 64 * 1024


class WSGIContext(Protocol):
    """What the bridge needs from the server."""

    root_path: str
    #: ``True`` when several worker processes serve the app (``wsgi.multiprocess``)
    multiprocess: bool


# --- environ ----------------------------------------------------------------------------------


class ErrorStream:
    """``wsgi.errors``: text written by the app goes to the ``portico.error`` log, one record per
    line (a partial line waits for its end or for ``flush``)."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = ""

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"wsgi.errors takes str, not {type(text).__name__}")
        pending = self._pending + text
        if "\n" in pending:
            *lines, pending = pending.split("\n")
            for line in lines:
                log.error("%s", line)
        self._pending = pending
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            log.error("%s", self._pending)
            self._pending = ""


class InputStream:
    """``wsgi.input``: the request body, streamed from the runtime as the app reads it.

    Holds at most one piece the runtime handed over (a line's worth more for ``readline``); reads
    never go past the end of the body, and ``read(n)`` waits until ``n`` bytes or the end.
    """

    __slots__ = ("_buf", "_eof", "_stream")

    def __init__(self, stream: BlockingStream, body: bytes = b"", eof: bool = False) -> None:
        self._stream = stream
        self._buf = body
        self._eof = eof  # nothing beyond ``body`` (``_fill`` hands out the buffer first)

    def _fill(self, want: int) -> bytes:
        """Return buffered bytes, fetching up to ``want`` more when none are buffered."""
        buf = self._buf
        if buf:
            return buf
        if self._eof:
            return b""
        buf = self._stream.read_body(max(want, 1))
        if not buf:
            self._eof = True
        self._buf = buf
        return buf

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self._fill(READ_CHUNK):
                parts.append(chunk)
                self._buf = b""
            return b"".join(parts)
        parts = []
        need = size
        while need > 0:
            chunk = self._fill(need)
            if not chunk:
                break
            if len(chunk) > need:
                parts.append(chunk[:need])
                self._buf = chunk[need:]
                break
            parts.append(chunk)
            self._buf = b""
            need -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None or size < 0 else size
        parts = []
        got = 0
        while limit < 0 or got < limit:
            chunk = self._fill(READ_CHUNK if limit < 0 else limit - got)
            if not chunk:
                break
            end = len(chunk) if limit < 0 else min(len(chunk), limit - got)
            newline = chunk.find(b"\n", 0, end)
            if newline >= 0:
                end = newline + 1
            parts.append(chunk[:end])
            self._buf = chunk[end:]
            got += end
            if newline >= 0:
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class FileWrapper:
    """``wsgi.file_wrapper``: the runtime sends the file in large blocks (PEP 3333's optional
    platform-specific file handling); any other use iterates it in ``block_size`` pieces."""

    __slots__ = ("block_size", "filelike")

    def __init__(self, filelike: IO[bytes], block_size: int = 8192) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while data := read(self.block_size):
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


# Keys every request sets (build_environ gives each its value; REMOTE_PORT is removed for a Unix
# socket's peer, which has no port)
_PER_REQUEST: Final = (
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "RAW_URI",
    "REQUEST_URI",
    "SERVER_PROTOCOL",
    "wsgi.url_scheme",
    "wsgi.input",
    "wsgi.errors",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_NAME",
    "SERVER_PORT",
)


def base_environ(context: WSGIContext) -> dict[str, Any]:
    """The keys that are the same for every request of a server, built once, in a table with
    room for the request's own: each request's environ is a copy of it.

    CPython's ``dict.copy`` copies the table as it is (while at most a third of its entries are
    deleted), so the copy takes the per-request keys as replacements and a request's header
    fields into free slots. Grown key by key from the seven constant ones, the table was
    rebuilt twice per request.
    """
    base: dict[str, Any] = {
        "SCRIPT_NAME": context.root_path,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": context.multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }
    base.update(dict.fromkeys(_PER_REQUEST, ""))
    # Two short-lived keys push the table to its next size (64 slots, 42 usable), which the
    # copies keep: about 20 header fields fit before a copy grows.
    for filler in ("\0a", "\0b"):
        base[filler] = None
    for filler in ("\0a", "\0b"):
        del base[filler]
    return base


def _server_address(host: str | None, stream: BlockingStream, scheme: str) -> tuple[str, str]:
    default_port = "443" if scheme == "https" else "80"
    if host:
        addresses = _addresses if scheme == "http" else _tls_addresses
        address = addresses.get(host)
        if address is None:
            if host.startswith("["):  # [IPv6]:port
                name, _, rest = host.partition("]")
                port = rest[1:] if rest.startswith(":") else ""
                address = (name + "]", port or default_port)
            else:
                name, _, port = host.partition(":")
                address = (name, port or default_port)
            if len(host) <= _CACHED_KEY_LIMIT and scheme in ("http", "https"):
                if len(addresses) >= _CACHE_LIMIT:
                    addresses.clear()
                addresses[host] = address
        return address
    server = stream.server
    if server is None:
        return "localhost", default_port
    port_number = server[1]
    return server[0], default_port if port_number is None else str(port_number)


# Clients send the same few paths and header names over and over: their environ forms are
# remembered (bounded, like the protocol's caches) instead of recomputed per request.
_CACHE_LIMIT = 4096
#: Client-chosen keys longer than this are not remembered
_CACHED_KEY_LIMIT = 256
_path_infos: dict[bytes, str] = {}
#: Host -> (SERVER_NAME, SERVER_PORT), for http and for https (their default ports differ)
_addresses: dict[str, tuple[str, str]] = {}
_tls_addresses: dict[str, tuple[str, str]] = {}
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "2": "HTTP/2"}
#: header name -> environ key; "" for names that never become HTTP_* keys
_environ_keys: dict[bytes, str] = {
    b"content-type": "CONTENT_TYPE",
    b"content-length": "CONTENT_LENGTH",
}


def _path_info(raw_path: bytes) -> str:
    # PATH_INFO holds the decoded bytes as latin-1 ("bytes in a str", PEP 3333 §"Unicode
    # issues"); frameworks re-encode it to latin-1 and decode UTF-8 themselves.
    path = _path_infos.get(raw_path)
    if path is None:
        path = unquote_to_bytes(raw_path).decode("latin-1")
        if len(raw_path) <= _CACHED_KEY_LIMIT:  # a client must not fill the cache with long keys
            if len(_path_infos) >= _CACHE_LIMIT:
                _path_infos.clear()
            _path_infos[raw_path] = path
    return path


def _environ_key(raw_name: bytes) -> str:
    name = raw_name.decode("latin-1")
    # X-Forwarded_For would otherwise become HTTP_X_FORWARDED_FOR and pass for the header a
    # proxy vouches for; nginx, Apache and gunicorn drop such names too.
    key = "" if "_" in name else "HTTP_" + name.upper().replace("-", "_")
    if len(raw_name) > _CACHED_KEY_LIMIT:
        return key
    if len(_environ_keys) >= _CACHE_LIMIT:
        _environ_keys.clear()
        _environ_keys[b"content-type"] = "CONTENT_TYPE"
        _environ_keys[b"content-length"] = "CONTENT_LENGTH"
    _environ_keys[raw_name] = key
    return key


def build_environ(
    stream: BlockingStream,
    base: dict[str, Any],
    root_path: str,
    wsgi_input: InputStream,
    mount_path: str = "",
) -> dict[str, Any]:
    """The environ of one request: every variable PEP 3333 names, plus REQUEST_URI/RAW_URI."""
    request = stream.request
    raw_path = request.raw_path
    # "OPTIONS *" names the server as a whole: no path (PEP 3333 wants PATH_INFO empty or
    # starting with "/"); RAW_URI still shows the asterisk.
    path = _path_info(raw_path) if raw_path != b"*" else ""
    # SCRIPT_NAME is root_path: a proxy's prefix (absent from the path when the proxy strips
    # it) followed by the --mount prefix (always in the path)
    if root_path and (path == root_path or path.startswith(root_path + "/")):
        path = path[len(root_path) :]
    elif mount_path and (path == mount_path or path.startswith(mount_path + "/")):
        path = path[len(mount_path) :]
    raw_uri = raw_path.decode("latin-1")
    if request.query_string:
        query = request.query_string.decode("latin-1")
        raw_uri += "?" + query
    else:
        query = ""
    scheme = request.scheme or stream.scheme
    environ = base.copy()
    if root_path != environ["SCRIPT_NAME"]:
        environ["SCRIPT_NAME"] = root_path  # a trusted proxy's X-Forwarded-Prefix
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = query
    environ["RAW_URI"] = environ["REQUEST_URI"] = raw_uri
    version = request.http_version
    environ["SERVER_PROTOCOL"] = _PROTOCOLS.get(version) or "HTTP/" + version
    environ["wsgi.url_scheme"] = scheme
    if scheme == "https":
        environ["HTTPS"] = "on"  # the CGI variable frameworks and mod_wsgi-era code look at
    tls = stream.tls
    if tls is not None and tls["client_cert_chain"]:
        # mod_ssl's names for the client certificate (RFC 3875 leaves TLS to the server), so
        # that apps doing mutual-TLS authentication behind Apache or nginx work unchanged
        environ["SSL_CLIENT_CERT"] = tls["client_cert_chain"][0]
        environ["SSL_CLIENT_S_DN"] = tls["client_cert_name"] or ""
        environ["SSL_CLIENT_VERIFY"] = "SUCCESS"
    environ["wsgi.input"] = wsgi_input
    environ["wsgi.errors"] = ErrorStream()
    client = stream.client
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    else:  # a Unix socket has no peer address
        environ["REMOTE_ADDR"] = ""
        environ.pop("REMOTE_PORT", None)
    keys = _environ_keys
    for raw_name, raw_value in request.headers:
        key = keys.get(raw_name)
        if key is None:
            key = _environ_key(raw_name)
        if not key:
            continue
        value = raw_value.decode("latin-1")
        previous = environ.get(key)
        if previous is None:
            environ[key] = value
        else:  # RFC 9110 §5.3: repeated fields combine with commas (cookies with "; ")
            environ[key] = previous + ("; " if key == "HTTP_COOKIE" else ",") + value
    host = environ.get("HTTP_HOST")
    environ["SERVER_NAME"], environ["SERVER_PORT"] = _server_address(host, stream, scheme)
    return environ
