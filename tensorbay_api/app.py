"""The TensorBay-compatible API as an application of its own, mounted by the main one at
`/gatewayv2/tensorbay-open-api/v1`: its errors are TensorBay's `{"code", "message"}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bootstrap import Container
from edge.bulkhead import REQUEST_RETRY_AFTER, Bulkheads, install_bulkheads, request_slot
from importer.errors import Conflict, ImportServiceError, Invalid, NotFound, TimedOut
from tensorbay_api import (
    PREFIX,
    files,
    routes_cloud_callback,
    routes_commits,
    routes_datasets,
    routes_drafts,
    routes_labels,
    routes_segments,
    routes_storage,
)
from tensorbay_api.deps import current_workspace
from tensorbay_api.errors import STATUS_CODES, TensorBayError

__all__ = ["PREFIX", "create_tensorbay_app"]

log = logging.getLogger("bayport.tensorbay")


def create_tensorbay_app(container: Container, *, bulkheads: Bulkheads | None = None) -> FastAPI:
    """`bulkheads`: those of the application mounting this one (a workspace's requests count
    together whichever API they call)."""
    app = FastAPI(
        title="Bayport: TensorBay open API",
        version="1.24.2",
        description="What the tensorbay Python SDK 1.24.2 uses of TensorBay's open API. "
        "Authenticate with `X-Token: ACCESSKEY-<Bayport access key>`.",
    )
    app.state.container = container
    install_bulkheads(app, container.settings, bulkheads)
    # A workspace's calls hold one of its places while they run; the file downloads are not
    # a workspace's (their signed URL is the permission).
    slot = [request_slot(current_workspace, _too_many_requests)]
    app.include_router(routes_storage.router, dependencies=slot)
    for resource in (
        routes_datasets,
        routes_drafts,
        routes_commits,
        routes_segments,
        routes_labels,
        routes_cloud_callback,
    ):
        app.include_router(resource.router, dependencies=slot)
    app.include_router(files.router)

    @app.exception_handler(TensorBayError)
    async def _tensorbay_error(_request: Request, exc: TensorBayError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)  # FastAPI's and routing's (404, 405)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        unrouted = exc.status_code == 404 and request.scope.get("route") is None
        if exc.status_code == 405 or unrouted:
            # A request the SDK makes that Bayport does not serve (docs/tensorbay-compat.md).
            return TensorBayError(
                exc.status_code,
                f"Bayport does not serve {request.method} {request.url.path} of TensorBay's "
                "open API (see docs/tensorbay-compat.md)",
                code="InvalidParamsValue" if exc.status_code == 405 else None,
            ).response()
        return TensorBayError(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(ImportServiceError)
    async def _service_error(_request: Request, exc: ImportServiceError) -> JSONResponse:
        status = {NotFound: 404, Conflict: 409, Invalid: 400, TimedOut: 504}.get(type(exc), 400)
        return TensorBayError(status, exc.message).response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the problem, never the value sent (a secret, maybe).
        errors = exc.errors()
        missing = all(e.get("type") == "missing" for e in errors)
        said = "; ".join(
            ".".join(str(p) for p in e.get("loc", ()) if p != "body") + f": {e.get('msg')}"
            for e in errors
        )
        code = "RequestParamsMissing" if missing else STATUS_CODES[400]
        return TensorBayError(400, said, code=code).response()

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("TensorBay API: unexpected error")
        return TensorBayError(500, f"{type(exc).__name__}: internal error").response()

    return app


def _too_many_requests(message: str) -> Exception:
    # The SDK retries a 429 after its Retry-After by itself.
    return TensorBayError(429, message, code="TooManyRequests", retry_after=REQUEST_RETRY_AFTER)
