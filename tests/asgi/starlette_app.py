"""A real framework, unmodified, on our server: Starlette with HTTP routes, a streaming
response, a WebSocket route and a lifespan that fills ``request.state``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
    yield {"started_by": "lifespan", "visits": []}


async def homepage(request: Request) -> Response:
    return PlainTextResponse("Hello from Starlette\n")


async def items(request: Request) -> Response:
    body = await request.json() if request.method == "POST" else None
    return JSONResponse(
        {"path": request.url.path, "query": dict(request.query_params), "body": body}
    )


async def state(request: Request) -> Response:
    request.state.visits.append(1)
    return JSONResponse(
        {"started_by": request.state.started_by, "visits": len(request.state.visits)}
    )


async def numbers(request: Request) -> Response:
    async def lines() -> AsyncIterator[bytes]:
        for i in range(1, 4):
            yield f"line {i}\n".encode()
            await asyncio.sleep(0.01)

    return StreamingResponse(lines(), media_type="text/plain")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"starlette heard: {text}")
    except WebSocketDisconnect:
        pass


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/items/{item_id}", items, methods=["GET", "POST"]),
        Route("/state", state),
        Route("/numbers", numbers),
        WebSocketRoute("/ws", echo),
    ],
    lifespan=lifespan,
)
