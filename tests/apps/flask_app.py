"""A small Flask app served by the end-to-end tests (``portico flask_app:app``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from flask import Flask, Response, redirect, request, send_file, stream_with_context, url_for

app = Flask(__name__)


@app.get("/hello/<name>")
def hello(name: str) -> dict[str, str]:
    return {
        "name": name,
        "url": url_for("hello", name=name, _external=True),
        "remote": request.remote_addr or "",
        "agent": request.headers.get("User-Agent", ""),
    }


@app.post("/upload")
def upload() -> dict[str, object]:
    upload = request.files["file"]
    data = upload.read()
    return {"field": request.form["field"], "filename": upload.filename, "size": len(data)}


@app.get("/go")
def go() -> Response:
    response = redirect(url_for("hello", name="x"))
    response.set_cookie("session", "abc")
    return response


@app.post("/json")
def echo_json() -> dict[str, object]:
    return {"got": request.get_json()}


@app.get("/stream")
def stream() -> Response:
    @stream_with_context
    def pieces() -> Iterator[str]:
        for i in range(int(request.args.get("n", "3"))):
            yield f"piece {i}\n"

    return Response(pieces(), mimetype="text/plain")


@app.get("/file")
def file() -> Response:
    return send_file(os.environ["PORTICO_TEST_FILE"], mimetype="application/octet-stream")


@app.get("/fail")
def fail() -> str:
    raise RuntimeError("flask view failed")


# the endpoints every framework app has alike (tests/test_gateways_nginx.py)


@app.get("/probe/<name>")
def probe(name: str) -> dict[str, object]:
    return {
        "name": name,
        "url": request.url,
        "self": url_for("probe", name=name, _external=True),
        "remote": request.remote_addr or "",
        "query": request.args.to_dict(),
        "cookies": request.cookies.to_dict(),
    }


@app.post("/digest")
def digest() -> str:
    sha = hashlib.sha256()
    size = 0
    while piece := request.stream.read(1 << 16):
        sha.update(piece)
        size += len(piece)
    return f"{size} {sha.hexdigest()}"
