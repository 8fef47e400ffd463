"""ASGI middleware every API answer passes: each request is one log secret scope (the
storage configs it uses mask their secrets in its records only), and no answer is
content-sniffed by a browser (`X-Content-Type-Options: nosniff`)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bayport.logs import secret_scope


class RequestHygiene:
    """Wraps the whole application (the TensorBay API mounted inside it too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() != b"x-content-type-options"
                ]
                headers.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = headers
            await send(message)

        with secret_scope():
            await self.app(scope, receive, send_nosniff)
