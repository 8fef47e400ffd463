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
from tensorbay_api import CALLBACK_SUFFIX, KEY_PREFIXES
from tensorbay_api import PREFIX as TENSORBAY_PREFIX

log = logging.getLogger("bayport.api")

# Load balancers' probes are not callers.
_EXEMPT = frozenset({"/healthz", "/readyz"})


def rate_limit_item(settings: Settings) -> RateLimitItem | None:
    """BAYPORT_API_RATE_LIMIT parsed ("1200/minute"); None when it is empty (no limit)."""
    return _parse_rate("BAYPORT_API_RATE_LIMIT", settings.api_rate_limit)


def callback_rate_limit_item(settings: Settings) -> RateLimitItem | None:
    """BAYPORT_API_CALLBACK_RATE_LIMIT parsed; None when it is empty (no limit)."""
    return _parse_rate("BAYPORT_API_CALLBACK_RATE_LIMIT", settings.api_callback_rate_limit)


def _parse_rate(name: str, text: str) -> RateLimitItem | None:
    text = text.strip()
    if not text:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a rate such as '1200/minute', not {text!r}") from exc


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


def is_callback(path: str) -> bool:
    """The TensorBay API's per-object registration call (`PUT .../multi/cloud-callback`)."""
    return path.startswith(TENSORBAY_PREFIX + "/") and path.endswith(CALLBACK_SUFFIX)


class RateLimitMiddleware:
    """At most `item` requests per API key (per client address without one): beyond it,
    429 with Retry-After. The TensorBay SDK's per-object registration calls are counted
    apart, against `callback_item`: `upload_dataset` makes one per object, so an import of
    10,000 objects is 10,000 of them, each a small insert. Either limit may be None (not
    limited). Keys are counted by their SHA-256, never stored as they are; a key counts the
    same whether it comes as a Bearer token or as the TensorBay API's X-Token. If the
    counter's store is unreachable, requests go through (availability first)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        item: RateLimitItem | None,
        storage: Storage,
        callback_item: RateLimitItem | None = None,
    ) -> None:
        self.app = app
        self.item = item
        self.callback_item = callback_item
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self._warned_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _EXEMPT:
            await self.app(scope, receive, send)
            return
        callback = is_callback(path)
        item, counter = (self.callback_item, "callback") if callback else (self.item, "api")
        if item is None:
            await self.app(scope, receive, send)
            return
        caller = _caller(Request(scope))
        retry_after = await run_in_threadpool(self._hit, item, caller, counter)
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        setting = "BAYPORT_API_CALLBACK_RATE_LIMIT" if callback else "BAYPORT_API_RATE_LIMIT"
        message = (
            f"too many requests: at most {item} per API key ({setting}); "
            f"retry after {retry_after} s"
        )
        # The TensorBay API answers in its own shape (the SDK reads `code`; it retries a
        # 429 after Retry-After by itself).
        body = (
            {"code": "TooManyRequests", "message": message}
            if path.startswith(TENSORBAY_PREFIX + "/")
            else {"detail": message}
        )
        response = JSONResponse(body, status_code=429, headers={"Retry-After": str(retry_after)})
        await response(scope, receive, send)

    def _hit(self, item: RateLimitItem, caller: str, counter: str) -> int | None:
        """None when the request may go on; else the seconds until it may."""
        try:
            if self.limiter.hit(item, caller, counter):
                return None
            reset_at = self.limiter.get_window_stats(item, caller, counter).reset_time
        except Exception as exc:  # the store is down: do not turn that into an outage
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("API rate limit not enforced: its store failed: %s", exc)
            return None
        return max(1, math.ceil(reset_at - time.time()))


def _caller(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else ""
    if not key:
        key = request.headers.get("x-token", "").strip()
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
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
    callback_item = callback_rate_limit_item(settings)
    if item is not None or callback_item is not None:  # added last: runs first
        app.add_middleware(
            RateLimitMiddleware,
            item=item,
            callback_item=callback_item,
            storage=rate_limit_storage(settings),
        )
