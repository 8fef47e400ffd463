"""Text no field may hold: NUL characters and lone surrogates (half a UTF-16 pair), refused
with a 422 wherever a request carries them (JSON body, path, query) before any route sees
them. Neither is ever a valid name, key, URL or secret, and the metadata DB cannot store
them (PostgreSQL text has no NUL; no UTF-8 encodes a lone surrogate): let through, they
would surface as 500s."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


def _first_problem(value: Any, loc: list[str | int]) -> tuple[list[str | int], str] | None:
    """Where in a parsed JSON document the first bad string is, and why."""
    if isinstance(value, str):
        problem = text_problem(value)
        return (loc, problem) if problem else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _first_problem(item, [*loc, i])
            if found:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key)
            if problem:
                return [*loc, repr(key)[1:-1]], problem  # shown escaped
            found = _first_problem(item, [*loc, key])
            if found:
                return found
    return None


def _is_json(headers: Headers) -> bool:
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _refusal(loc: list[str | int], problem: str) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"loc": loc, "type": "value_error", "msg": f"Value error, {problem}"}]},
        status_code=422,
    )


class TextChecksMiddleware:
    """Checks the path, the query and a JSON body (read whole: the body limit, outside this
    middleware, caps it) and hands the body on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").lower()
        if "\x00" in scope["path"]:
            await _refusal(["path"], "must not contain NUL characters")(scope, receive, send)
            return
        if b"%00" in query or b"\x00" in query:
            await _refusal(["query"], "must not contain NUL characters")(scope, receive, send)
            return
        if not _is_json(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            document = json.loads(body) if body else None
        except (ValueError, RecursionError):
            document = None  # the route answers for JSON it cannot parse
        found = _first_problem(document, ["body"])
        if found is not None:
            await _refusal(*found)(scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that first hands out `messages` (the body already read)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
