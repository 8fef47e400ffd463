"""/metrics: Prometheus' text format, collected at each scrape (bayport/metrics.py)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.deps import ContainerDep
from bayport.metrics import BayportCollector
from workers.celery_app import TASK_QUEUE

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
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BayportCollector(container.db, container.ctx.metrics, TASK_QUEUE))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
