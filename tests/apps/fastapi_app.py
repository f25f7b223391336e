"""A small FastAPI app for the --mount tests (``--mount /fast=fastapi_app:app``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request


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
