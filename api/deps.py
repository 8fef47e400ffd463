"""Request dependencies: the container, the caller's key and workspace (from the Bearer key:
edge/auth.py), paging."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from edge.auth import authentication_of, refusal_message, role_message
from edge.container import ContainerDep, get_container
from metadata.access_keys import KeyGrant

__all__ = ["ContainerDep", "KeyDep", "PageDep", "WorkspaceDep", "get_container"]

_bearer = HTTPBearer(auto_error=False, description="An access key: `Bearer bp_…`")


def current_key(
    request: Request,
    container: ContainerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> KeyGrant:
    """The caller's key, good and allowed this method (a "read" key: GET and HEAD only).
    Its id and role are on request.state (key_id, key_role) for whatever counts per key."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "an access key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    settings = container.settings
    auth = authentication_of(request, container.db, settings.api_key_cache_seconds)
    if auth.grant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            refusal_message(auth.refusal),
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not auth.grant.may(request.method):
        raise HTTPException(status.HTTP_403_FORBIDDEN, role_message(auth.grant, request.method))
    return auth.grant


KeyDep = Annotated[KeyGrant, Depends(current_key)]


def current_workspace(grant: KeyDep) -> str:
    return grant.workspace_id


WorkspaceDep = Annotated[str, Depends(current_workspace)]


def page_bounds(offset: int = 0, limit: int = 100) -> tuple[int, int]:
    if offset < 0:
        raise HTTPException(422, "offset must be >= 0")
    if not 1 <= limit <= 1000:
        raise HTTPException(422, "limit must be between 1 and 1000")
    return offset, limit


PageDep = Annotated[tuple[int, int], Depends(page_bounds)]
