"""/metrics: Prometheus' text format (telemetry/metrics.py), behind BAYPORT_METRICS_TOKEN when it
is set (production requires it), collected at most once per BAYPORT_METRICS_CACHE_SECONDS."""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections.abc import Callable

from fastapi import APIRouter, HTTPException, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.deps import ContainerDep
from bootstrap import Container
from taskqueue.app import TASK_QUEUE
from telemetry.metrics import BayportCollector

router = APIRouter(tags=["monitoring"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, container: ContainerDep) -> Response:
    token = container.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "the metrics token is required: Authorization: Bearer <BAYPORT_METRICS_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )
    cache = _cache_of(request, container.settings.metrics_cache_seconds)
    return Response(cache.get(lambda: _collect(container)), media_type=CONTENT_TYPE_LATEST)


def _collect(container: Container) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BayportCollector(container.db, container.ctx.metrics, TASK_QUEUE))
    return generate_latest(registry)


class ScrapeCache:
    """The last collection, served for `ttl` seconds: each one counts every running job's
    ledger, so N scrapers (or one scraping fast) cost one collection per `ttl`. Scrapes that
    arrive while one collects wait for it rather than collect too."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._body = b""
        self._at = -math.inf

    def get(self, collect: Callable[[], bytes]) -> bytes:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._body = collect()
                self._at = time.monotonic()
            return self._body


_caches_lock = threading.Lock()


def _cache_of(request: Request, ttl: float) -> ScrapeCache:
    state = request.app.state
    with _caches_lock:
        cache: ScrapeCache | None = getattr(state, "metrics_cache", None)
        if cache is None:
            cache = state.metrics_cache = ScrapeCache(ttl)
        return cache
