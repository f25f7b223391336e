"""A blocking HTTP/2 test client over a real socket: the ``h2`` library, h2c or TLS with ALPN."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import httpx


@dataclass
class Reply:
    """What came back on one stream."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)
    #: RST_STREAM error code, or None
    reset: int | None = None
    ended: bool = False


@dataclass
class GoAway:
    last_stream_id: int
    error_code: int


def _text(pairs: Any) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in pairs
    }


class H2Client:
    """One HTTP/2 connection to 127.0.0.1:``port``."""

    def __init__(
        self,
        port: int,
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        window: int | None = None,
        settings: dict[int, int] | None = None,
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls is not None:
            raw = tls.wrap_socket(raw, server_hostname="localhost")
            assert raw.selected_alpn_protocol() == "h2"
        self.sock = raw
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            self.conn.increment_flow_control_window(window)
        self.replies: dict[int, Reply] = {}
        #: the last GOAWAY the server sent. GOAWAY frames are kept from the ``h2`` library: it
        #: takes the first one for the end of the connection and refuses every frame after it,
        #: while a graceful drain (RFC 9113 §6.8) sends two, with the last responses between.
        self.goaway: GoAway | None = None
        self._incoming = b""
        self.closed = False
        self.auto_ack = True
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
        trailers: list[tuple[str, str]] | None = None,
        end: bool = True,
        authority: str = "localhost",
    ) -> int:
        """Open a stream; return its id (the body is sent as far as the windows allow)."""
        stream_id = self.conn.get_next_available_stream_id()
        head = [
            (":method", method),
            (":scheme", "https"),
            (":path", path),
            (":authority", authority),
            *(headers or []),
        ]
        no_body = not body and not trailers and end
        self.conn.send_headers(stream_id, head, end_stream=no_body)
        self.replies[stream_id] = Reply()
        if body:
            self.send_body(stream_id, body, end and not trailers)
        if trailers:
            self.conn.send_headers(stream_id, trailers, end_stream=True)
        self.flush()
        return stream_id

    def send_body(self, stream_id: int, body: bytes, end: bool) -> None:
        """Send ``body`` on an open stream in frames the windows allow (reading meanwhile)."""
        view = memoryview(body)
        while view:
            room = min(self.conn.local_flow_control_window(stream_id), 16384)
            if room <= 0:
                self.flush()
                self.read_once()
                if self.replies[stream_id].ended or self.replies[stream_id].reset is not None:
                    return
                continue
            self.conn.send_data(stream_id, bytes(view[:room]))
            view = view[room:]
        if end:
            self.conn.end_stream(stream_id)

    def read_once(self) -> bool:
        """Read and handle one chunk; False when the server closed the connection."""
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(self._without_goaway(data))
        except h2.exceptions.ProtocolError:
            self.closed = True
            return False
        for event in events:
            self._event(event)
        self.flush()
        return True

    def _without_goaway(self, data: bytes) -> bytes:
        buf = self._incoming + data
        kept = []
        pos = 0
        while len(buf) - pos >= 9:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            end = pos + 9 + length
            if end > len(buf):
                break
            if buf[pos + 3] == 0x7:  # GOAWAY
                payload = buf[pos + 9 : end]
                last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                self.goaway = GoAway(last, int.from_bytes(payload[4:8], "big"))
            else:
                kept.append(buf[pos:end])
            pos = end
        self._incoming = buf[pos:]
        return b"".join(kept)

    def _event(self, event: Any) -> None:
        sid = getattr(event, "stream_id", None)
        reply = self.replies.get(sid) if sid is not None else None
        if isinstance(event, h2.events.ResponseReceived) and reply is not None:
            head = _text(event.headers)
            reply.status = int(head.pop(":status"))
            reply.headers = head
        elif isinstance(event, h2.events.TrailersReceived) and reply is not None:
            reply.trailers = _text(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            if reply is not None:
                reply.body += event.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and reply is not None:
            reply.ended = True
        elif isinstance(event, h2.events.StreamReset) and reply is not None:
            reply.reset = event.error_code

    def wait(self, *stream_ids: int) -> list[Reply]:
        """Read until every stream ended or was reset (or the connection closed)."""
        while not self.closed and any(
            not self.replies[s].ended and self.replies[s].reset is None for s in stream_ids
        ):
            self.read_once()
        return [self.replies[s] for s in stream_ids]

    def get(self, path: str = "/", **kwargs: Any) -> Reply:
        """Send a request and wait for its reply (the keywords of :meth:`send`)."""
        return self.wait(self.send(path, **kwargs))[0]

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self.flush()
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def client_tls(ca_pem: str) -> ssl.SSLContext:
    """A client context trusting the test CA and offering ALPN h2 (then http/1.1)."""
    context = ssl.create_default_context(cafile=ca_pem)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


#: the ways a test may reach a server: HTTP/1.1, h2c prior knowledge, h2 by ALPN under TLS
PROTOCOLS = ("h1", "h2c", "h2-tls")


def server_args(protocol: str, certs_pem: str) -> list[str]:
    """The server flags a protocol needs (a certificate for TLS)."""
    return ["--certfile", certs_pem] if protocol == "h2-tls" else []


def httpx_client(protocol: str, port: int, ca_pem: str, **kwargs: Any) -> tuple[httpx.Client, str]:
    """An ``httpx.Client`` speaking ``protocol`` to 127.0.0.1:``port``, and its base URL."""
    scheme = "https" if protocol == "h2-tls" else "http"
    base = f"{scheme}://127.0.0.1:{port}"
    if protocol == "h1":
        return httpx.Client(base_url=base, **kwargs), base
    verify: Any = ssl.create_default_context(cafile=ca_pem) if protocol == "h2-tls" else True
    # http1=False over http:// is prior knowledge (h2c); over https, ALPN offers h2 only
    client = httpx.Client(base_url=base, http1=False, http2=True, verify=verify, **kwargs)
    return client, base
