"""Request dependencies: the container, the caller's key and workspace (from the Bearer key:
api/auth.py), paging."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import authentication_of
from bayport.wiring import Container
from metadata.access_keys import KeyGrant

_bearer = HTTPBearer(auto_error=False, description="An access key: `Bearer bp_…`")


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


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


def refusal_message(refusal: str | None) -> str:
    return {
        "expired": "this access key has expired",
        "revoked": "this access key has been revoked",
    }.get(refusal or "", "unknown access key")


def role_message(grant: KeyGrant, method: str) -> str:
    return (
        f"this access key's role is {grant.role!r}: it may only read (GET, HEAD), "
        f"not {method.upper()}"
    )


def page_bounds(offset: int = 0, limit: int = 100) -> tuple[int, int]:
    if offset < 0:
        raise HTTPException(422, "offset must be >= 0")
    if not 1 <= limit <= 1000:
        raise HTTPException(422, "limit must be between 1 and 1000")
    return offset, limit


PageDep = Annotated[tuple[int, int], Depends(page_bounds)]
