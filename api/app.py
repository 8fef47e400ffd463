"""The FastAPI application: routers, error mapping, and the bootstrap access key."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api import (
    routes_datasets,
    routes_health,
    routes_imports,
    routes_keys,
    routes_metrics,
    routes_page,
    routes_reports,
    routes_schedules,
    routes_storage,
    routes_tasks,
    routes_workspace,
)
from api.deps import current_workspace
from bootstrap import Container
from edge.bulkhead import install_bulkheads, request_slot
from edge.limits import install_limits
from edge.middleware import RequestHygiene
from importer.errors import Conflict, ImportServiceError, Invalid, NotFound, TimedOut
from metadata.queries import workspaces
from tensorbay_api.app import PREFIX as TENSORBAY_PREFIX
from tensorbay_api.app import create_tensorbay_app

_STATUS = {NotFound: 404, Conflict: 409, Invalid: 422, TimedOut: 504}


def create_app(container: Container) -> FastAPI:
    app = FastAPI(
        title="Bayport",
        version="0.1.0",
        description="Import cloud buckets (Aliyun OSS, Amazon S3, Azure Blob) into ML datasets.",
    )
    app.state.container = container
    install_limits(app, container.settings, container.db)
    app.add_middleware(RequestHygiene)  # outermost: added last
    # A workspace's routes hold one of its places while they run (edge/bulkhead.py).
    bulkheads = install_bulkheads(app, container.settings)
    slot = [request_slot(current_workspace)]
    app.include_router(routes_storage.router, dependencies=slot)
    app.include_router(routes_datasets.router, dependencies=slot)
    app.include_router(routes_imports.router, dependencies=slot)
    app.include_router(routes_tasks.router, dependencies=slot)
    app.include_router(routes_schedules.router, dependencies=slot)
    app.include_router(routes_reports.router, dependencies=slot)
    app.include_router(routes_metrics.router)
    app.include_router(routes_keys.router, dependencies=slot)
    app.include_router(routes_workspace.router, dependencies=slot)
    app.include_router(routes_page.router)
    app.include_router(routes_health.router)
    app.mount(TENSORBAY_PREFIX, create_tensorbay_app(container, bulkheads=bulkheads))

    @app.exception_handler(ImportServiceError)
    async def _service_error(_request: Request, exc: ImportServiceError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 400)
        body: dict[str, object] = {"detail": exc.message}
        if exc.field:
            body["field"] = exc.field
        return JSONResponse(status_code=status, content=body)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's answer repeats each failing value ("input"): for a storage config, the
        # whole body, secret included. Say what is wrong and where, never what was sent.
        errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})

    bootstrap = container.settings.bootstrap_key()
    if bootstrap is not None:
        with container.db.uow() as uow:
            workspaces.ensure_bootstrap_key(uow.session, key=bootstrap)
            uow.commit()
    return app
