"""Request dependencies: the container and the caller's workspace (from the Bearer key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bayport.wiring import Container
from metadata import repository as repo

_bearer = HTTPBearer(auto_error=False, description="An access key: `Bearer bp_…`")


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def current_workspace(
    container: ContainerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "an access key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    with container.db.uow() as uow:
        workspace_id = repo.workspace_id_for_key(uow.session, key=credentials.credentials)
    if workspace_id is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown access key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return workspace_id


WorkspaceDep = Annotated[str, Depends(current_workspace)]


def page_bounds(offset: int = 0, limit: int = 100) -> tuple[int, int]:
    if offset < 0:
        raise HTTPException(422, "offset must be >= 0")
    if not 1 <= limit <= 1000:
        raise HTTPException(422, "limit must be between 1 and 1000")
    return offset, limit


PageDep = Annotated[tuple[int, int], Depends(page_bounds)]
