"""API limits: requests per client address and per API key that authenticated, failed
authentications per client address (the `limits` library, counted in Redis so every API
process shares the count), and the largest request body."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import SlidingWindowCounterRateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bayport.settings import Settings, SettingsError
from edge.auth import Authentication, Authenticator, authenticator_for, candidate_keys, remember
from edge.faces import CALLBACK_SUFFIX, TENSORBAY_PREFIX
from edge.text_checks import TextChecksMiddleware
from metadata.db import Database

log = logging.getLogger("bayport.api")

# Load balancers' probes are not callers.
_EXEMPT = frozenset({"/healthz", "/readyz"})


def rate_limit_item(settings: Settings) -> RateLimitItem | None:
    """BAYPORT_API_RATE_LIMIT parsed ("1200/minute"); None when it is empty (no limit)."""
    return _parse_rate("BAYPORT_API_RATE_LIMIT", settings.api_rate_limit)


def callback_rate_limit_item(settings: Settings) -> RateLimitItem | None:
    """BAYPORT_API_CALLBACK_RATE_LIMIT parsed; None when it is empty (no limit)."""
    return _parse_rate("BAYPORT_API_CALLBACK_RATE_LIMIT", settings.api_callback_rate_limit)


def ip_rate_limit_item(settings: Settings) -> RateLimitItem | None:
    """BAYPORT_API_IP_RATE_LIMIT parsed; None when it is empty (no limit)."""
    return _parse_rate("BAYPORT_API_IP_RATE_LIMIT", settings.api_ip_rate_limit)


def auth_failure_limit_item(settings: Settings) -> RateLimitItem | None:
    """BAYPORT_API_AUTH_FAILURE_LIMIT parsed; None when it is empty (no limit)."""
    return _parse_rate("BAYPORT_API_AUTH_FAILURE_LIMIT", settings.api_auth_failure_limit)


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


@dataclass(frozen=True)
class Limits:
    """The rates RateLimitMiddleware enforces; any may be None (not limited)."""

    item: RateLimitItem | None = None  # per key (BAYPORT_API_RATE_LIMIT)
    callback_item: RateLimitItem | None = None  # per key, the callbacks
    ip_item: RateLimitItem | None = None  # per client address, before the key is checked
    failure_item: RateLimitItem | None = None  # failed authentications per client address


class RateLimitMiddleware:
    """Every request but the health checks, in this order:

    1. counts against its client address (`ip_item`), whatever key it carries;
    2. is authenticated (edge/auth.py: the Bearer key, or the TensorBay API's X-Token), and
       what that found is put on request.state for the routes;
    3. with a good key, counts against that key's id (`item`); without one (no key, an
       unknown, revoked or expired one), against its client address — so a made-up key
       never gets a bucket of its own — and, once that address has failed to authenticate
       more than `failure_item` allows, is refused at once (key guessing);
    4. answered 401, counts as a failed authentication of its address.

    The TensorBay SDK's per-object registration calls are counted apart, against
    `callback_item` (per key, or per address without one) and not against `ip_item`:
    `upload_dataset` makes one per object. Beyond a limit: 429 with Retry-After, in the
    TensorBay API's shape on its paths. Counts live in `storage` (Redis: shared by every API
    process); if it is unreachable, requests go through (availability first)."""

    def __init__(
        self, app: ASGIApp, *, limits: Limits, storage: Storage, authenticator: Authenticator
    ) -> None:
        self.app = app
        self.limits = limits
        self.authenticator = authenticator
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self._warned_at = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _EXEMPT:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        address = f"ip:{request.client.host if request.client else 'unknown'}"
        callback = is_callback(path)
        limits = self.limits
        if not callback and limits.ip_item is not None:
            retry_after = await run_in_threadpool(self._hit, limits.ip_item, address, "ip")
            if retry_after is not None:
                message = f"at most {limits.ip_item} per client address (BAYPORT_API_IP_RATE_LIMIT)"
                await _too_many(path, message, retry_after)(scope, receive, send)
                return
        auth = await run_in_threadpool(self._authenticate, path, request)
        if auth is not None:
            remember(request, auth)
        grant = auth.grant if auth is not None else None
        if grant is None and auth is not None and limits.failure_item is not None:
            retry_after = await run_in_threadpool(self._exhausted, limits.failure_item, address)
            if retry_after is not None:
                message = (
                    f"too many failed authentications from this address: at most "
                    f"{limits.failure_item} (BAYPORT_API_AUTH_FAILURE_LIMIT)"
                )
                await _too_many(path, message, retry_after)(scope, receive, send)
                return
        item, counter = (limits.callback_item, "callback") if callback else (limits.item, "api")
        if item is not None:
            caller = f"key:{grant.key_id}" if grant is not None else address
            retry_after = await run_in_threadpool(self._hit, item, caller, counter)
            if retry_after is not None:
                setting = (
                    "BAYPORT_API_CALLBACK_RATE_LIMIT" if callback else "BAYPORT_API_RATE_LIMIT"
                )
                whose = "API key" if grant is not None else "client address without a good key"
                await _too_many(path, f"at most {item} per {whose} ({setting})", retry_after)(
                    scope, receive, send
                )
                return
        status: list[int] = []

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watched)
        if status == [401] and limits.failure_item is not None:
            await run_in_threadpool(self._hit, limits.failure_item, address, "auth-fail")

    def _authenticate(self, path: str, request: Request) -> Authentication | None:
        """None when the DB could not say (the route's own check answers then)."""
        try:
            return self.authenticator.authenticate(candidate_keys(path, request.headers))
        except Exception as exc:
            log.warning("rate limit: the access key could not be looked up: %s", exc)
            return None

    def _hit(self, item: RateLimitItem, caller: str, counter: str) -> int | None:
        """None when the request may go on; else the seconds until it may."""
        try:
            if self.limiter.hit(item, caller, counter):
                return None
            reset_at = self.limiter.get_window_stats(item, caller, counter).reset_time
        except Exception as exc:  # the store is down: do not turn that into an outage
            self._store_failed(exc)
            return None
        return max(1, math.ceil(reset_at - time.time()))

    def _exhausted(self, item: RateLimitItem, caller: str) -> int | None:
        """The seconds until `caller` may fail to authenticate again; None while it may."""
        try:
            if self.limiter.test(item, caller, "auth-fail"):
                return None
            reset_at = self.limiter.get_window_stats(item, caller, "auth-fail").reset_time
        except Exception as exc:
            self._store_failed(exc)
            return None
        return max(1, math.ceil(reset_at - time.time()))

    def _store_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning("API rate limit not enforced: its store failed: %s", exc)


def _too_many(path: str, limit: str, retry_after: int) -> JSONResponse:
    message = f"too many requests: {limit}; retry after {retry_after} s"
    # The TensorBay API answers in its own shape (the SDK reads `code`; it retries a 429
    # after Retry-After by itself).
    body = (
        {"code": "TooManyRequests", "message": message}
        if path.startswith(TENSORBAY_PREFIX + "/")
        else {"detail": message}
    )
    return JSONResponse(body, status_code=429, headers={"Retry-After": str(retry_after)})


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


def install_limits(app: FastAPI, settings: Settings, db: Database) -> None:
    """The body limit and the rate limits (with authentication: edge/auth.py); within them,
    the text checks. (The middleware added last runs first.)"""
    app.add_middleware(TextChecksMiddleware)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    limits = Limits(
        item=rate_limit_item(settings),
        callback_item=callback_rate_limit_item(settings),
        ip_item=ip_rate_limit_item(settings),
        failure_item=auth_failure_limit_item(settings),
    )
    # Added last, runs first; always, since it also authenticates.
    app.add_middleware(
        RateLimitMiddleware,
        limits=limits,
        storage=rate_limit_storage(settings),
        authenticator=authenticator_for(db, settings.api_key_cache_seconds),
    )
