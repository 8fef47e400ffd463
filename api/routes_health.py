"""Health for load balancers and Kubernetes: `/healthz` (the process answers) and `/readyz`
(the metadata DB and the broker answer too). Neither needs a key; neither counts against the
rate limit (edge/limits.py) nor says more than which dependency failed and how."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from bootstrap import Container

router = APIRouter(include_in_schema=False)

# Each check has this long; a probe's own timeout (Kubernetes: 1 s by default, the chart
# sets 5) must be longer than this.
CHECK_TIMEOUT = 2.0

# Checks run here so that one hung on a dead peer (a SYN to a host that never answers)
# costs a thread, not the probe: the probe is answered when the timeout is up.
_checks = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


def database_answers(container: Container) -> None:
    with container.db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def broker_answers(url: str, *, timeout: float = CHECK_TIMEOUT) -> None:
    """Raises when the broker does not answer within `timeout`: a Redis PING, or for another
    transport (RabbitMQ) one connection made and closed."""
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
        return
    from kombu import Connection

    with Connection(url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=0)


def _outcome(check: Callable[[], Any]) -> str:
    """ "ok", or what went wrong by its kind alone: an error's message may quote a URL."""
    future = _checks.submit(check)
    try:
        future.result(timeout=CHECK_TIMEOUT + 0.5)
    except concurrent.futures.TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:
        return f"unreachable ({type(exc).__name__})"
    return "ok"


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the API process serves requests."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 when the metadata DB answers `SELECT 1` and the broker a ping, each
    within CHECK_TIMEOUT; else 503 naming the ones that failed."""
    container: Container = request.app.state.container
    checks = {
        "database": _outcome(lambda: database_answers(container)),
        "broker": _outcome(lambda: broker_answers(container.settings.broker_url)),
    }
    failed = [name for name, outcome in checks.items() if outcome != "ok"]
    if failed:
        return JSONResponse(
            {"status": "unavailable", "failed": failed, "checks": checks}, status_code=503
        )
    return JSONResponse({"status": "ready", "checks": checks})
