"""API limits: requests per API key (the `limits` library, counted in Redis so every API
process shares the count) and the largest request body."""

from __future__ import annotations

import hashlib
import logging
import math
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import SlidingWindowCounterRateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.text_checks import TextChecksMiddleware
from bayport.settings import Settings, SettingsError

log = logging.getLogger("bayport.api")

# Load balancers' probes are not callers.
_EXEMPT = frozenset({"/healthz", "/readyz"})


def rate_limit_item(settings: Settings) -> RateLimitItem | None:
    """BAYPORT_API_RATE_LIMIT parsed ("1200/minute"); None when it is empty (no limit)."""
    text = settings.api_rate_limit.strip()
    if not text:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise SettingsError(
            f"BAYPORT_API_RATE_LIMIT must be a rate such as '1200/minute', not {text!r}"
        ) from exc


def rate_limit_storage(settings: Settings) -> Storage:
    """Redis (the broker's, unless BAYPORT_THROTTLE_REDIS_URL names another) so that every
    API process counts together; this process's memory without Redis."""
    url = settings.resolved_throttle_redis_url
    if url is None:
        return MemoryStorage()
    # A slow or absent Redis must not hold requests up: one second, then let them through.
    return RedisStorage(
        url,
        key_prefix=f"{settings.metrics_namespace}:api-rate",
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
    )


class RateLimitMiddleware:
    """At most `item` requests per API key (per client address without one): beyond it,
    429 with Retry-After. Keys are counted by their SHA-256, never stored as they are.
    If the counter's store is unreachable, requests go through (availability first)."""

    def __init__(self, app: ASGIApp, *, item: RateLimitItem, storage: Storage) -> None:
        self.app = app
        self.item = item
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self._warned_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _EXEMPT:
            await self.app(scope, receive, send)
            return
        caller = _caller(Request(scope))
        retry_after = await run_in_threadpool(self._hit, caller)
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {
                "detail": f"too many requests: at most {self.item} per API key "
                f"(BAYPORT_API_RATE_LIMIT); retry after {retry_after} s"
            },
            status_code=429,
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)

    def _hit(self, caller: str) -> int | None:
        """None when the request may go on; else the seconds until it may."""
        try:
            if self.limiter.hit(self.item, caller):
                return None
            reset_at = self.limiter.get_window_stats(self.item, caller).reset_time
        except Exception as exc:  # the store is down: do not turn that into an outage
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("API rate limit not enforced: its store failed: %s", exc)
            return None
        return max(1, math.ceil(reset_at - time.time()))


def _caller(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    return f"ip:{request.client.host if request.client else 'unknown'}"


class BodyTooLarge(StarletteHTTPException):
    """Raised from `receive` as the body goes past the limit. An HTTPException, so the
    route's body parsing lets it through (any other error there becomes a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"the request body is larger than the {limit} bytes allowed "
            "(BAYPORT_MAX_REQUEST_BYTES)",
        )


class BodyLimitMiddleware:
    """Refuse a request body over `limit` bytes with 413: at once when its Content-Length
    says so, else as it arrives (a chunked body declares no length), before it is all
    read or parsed."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Request(scope).headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            exc = BodyTooLarge(self.limit)
            await JSONResponse({"detail": exc.detail}, status_code=413)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except BodyTooLarge as exc:  # read by a middleware, outside the routes' handlers
            if started:
                raise
            await JSONResponse({"detail": exc.detail}, status_code=413)(scope, receive, send)


def install_limits(app: FastAPI, settings: Settings) -> None:
    """The body limit, and the rate limit when one is set; within them, the text checks.
    (The middleware added last runs first.)"""
    app.add_middleware(TextChecksMiddleware)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    item = rate_limit_item(settings)
    if item is not None:  # added last: runs first, before a body is read
        app.add_middleware(RateLimitMiddleware, item=item, storage=rate_limit_storage(settings))
