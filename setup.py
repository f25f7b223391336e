"""Build script: compiles Portico's per-request path with mypyc when it can.

The modules below are ``mypy --strict`` typed Python; mypyc turns them into C extensions, which
roughly halves the CPU Portico spends per request (see README, "Performance"). Everything works
uncompiled too: set ``PORTICO_COMPILE=0`` (useful while editing them, since an editable install
would otherwise run the compiled copy), or build where mypyc or a C compiler is missing.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

HOT_PATH = [
    "src/portico/protocols/headers.py",
    "src/portico/protocols/exchange.py",
    "src/portico/protocols/request_line.py",
    "src/portico/protocols/http11.py",
    "src/portico/gateways/stream.py",
    "src/portico/gateways/asgi.py",
    "src/portico/runtime/context.py",
    "src/portico/runtime/access.py",
    "src/portico/runtime/metrics.py",
    "src/portico/runtime/request_id.py",
    "src/portico/config/observability.py",
    "src/portico/runtime/http1.py",
    "src/portico/runtime/http1_stream.py",
    "src/portico/runtime/router.py",
    "src/portico/runtime/tls_transport.py",
    "src/portico/protocols/websocket.py",
    "src/portico/runtime/ws_engine.py",
    "src/portico/protocols/hpack.py",
    "src/portico/protocols/h2_frames.py",
    "src/portico/protocols/h2_stream.py",
    "src/portico/protocols/h2_request.py",
    "src/portico/protocols/h2_response.py",
    "src/portico/protocols/h2_flow.py",
    "src/portico/protocols/h2_send.py",
    "src/portico/protocols/http2.py",
    "src/portico/runtime/http2.py",
    "src/portico/runtime/http2_stream.py",
    "src/portico/protocols/proxy_header.py",
    "src/portico/protocols/forwarded.py",
    "src/portico/protocols/forwarded_syntax.py",
    "src/portico/protocols/conditional.py",
    "src/portico/protocols/ranges.py",
    "src/portico/protocols/codings.py",
    "src/portico/gateways/static_fs.py",
    "src/portico/gateways/static.py",
    "src/portico/protocols/cgi_vars.py",
    "src/portico/protocols/cgi_response.py",
    "src/portico/protocols/uwsgi.py",
    "src/portico/protocols/fastcgi_records.py",
    "src/portico/protocols/fastcgi.py",
    "src/portico/runtime/file_reads.py",
    "src/portico/runtime/cgi_driver.py",
    "src/portico/runtime/uwsgi.py",
    "src/portico/runtime/fastcgi.py",
    # WSGI: the environ, start_response and the hand-off run in the pool's threads, per request
    "src/portico/gateways/wsgi_environ.py",
    "src/portico/gateways/wsgi.py",
    "src/portico/runtime/wsgi_pool.py",
]


def extensions() -> list[object]:
    if os.environ.get("PORTICO_COMPILE", "1") == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("portico: mypyc not available, installing pure Python", file=sys.stderr)
        return []
    return list(mypycify(["--config-file", "pyproject.toml", *HOT_PATH], opt_level="3"))


setup(ext_modules=extensions())
