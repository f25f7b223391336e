"""A small FastAPI app for the --mount tests (``--mount /fast=fastapi_app:app``) and the tests
behind nginx (``tests/test_gateways_nginx.py``)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, StreamingResponse


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
    yield {"started": "yes"}  # lifespan state, copied into every request's scope


app = FastAPI(lifespan=lifespan)


@app.get("/items/{item_id}")
async def item(item_id: int, request: Request) -> dict[str, object]:
    return {
        "item": item_id,
        "root_path": request.scope["root_path"],
        "path": request.scope["path"],
        "url": str(request.url_for("item", item_id=item_id)),
        "started": request.state.started,
    }


@app.post("/echo")
async def echo(request: Request) -> dict[str, int]:
    return {"size": len(await request.body())}


# the endpoints every framework app has alike (tests/test_gateways_nginx.py)


@app.get("/hello/{name}")
async def hello(name: str, request: Request) -> dict[str, str]:
    return {"name": name, "path": request.scope["path"]}


@app.get("/probe/{name}")
async def probe(name: str, request: Request) -> dict[str, object]:
    client = request.client
    return {
        "name": name,
        "url": str(request.url),
        "self": str(request.url_for("probe", name=name)),
        "remote": client.host if client else "",
        "query": dict(request.query_params),
        "cookies": request.cookies,
    }


@app.get("/go")
async def go(request: Request) -> RedirectResponse:
    # url_for is absolute: the test compares its path
    response = RedirectResponse(str(request.url_for("hello", name="x")), status_code=302)
    response.set_cookie("session", "abc")
    return response


@app.get("/stream")
async def stream(n: int = 3) -> StreamingResponse:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(n):
            yield b"piece %d\n" % i

    return StreamingResponse(pieces(), media_type="text/plain")


@app.post("/digest")
async def digest(request: Request) -> PlainTextResponse:
    sha = hashlib.sha256()
    size = 0
    async for piece in request.stream():
        sha.update(piece)
        size += len(piece)
    return PlainTextResponse(f"{size} {sha.hexdigest()}")
