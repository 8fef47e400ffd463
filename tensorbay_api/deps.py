"""Request dependencies: the caller's workspace (from `X-Token`), paging; the container's is
the main API's (the sub-application holds the same container in its state)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from edge.auth import authentication_of, refusal_message, role_message
from edge.container import ContainerDep
from tensorbay_api.errors import TensorBayError, invalid


def current_workspace(
    request: Request,
    container: ContainerDep,
    x_token: Annotated[str | None, Header(description="ACCESSKEY-<Bayport access key>")] = None,
) -> str:
    """The workspace of the X-Token's key (edge/auth.py: `ACCESSKEY-<key>` first, then the
    token as it is), when the key is good and allowed this method (a "read" key: GET and
    HEAD only). Its id and role are on request.state (key_id, key_role)."""
    if not x_token:
        raise TensorBayError(401, "an access key is required: X-Token: ACCESSKEY-<key>")
    settings = container.settings
    auth = authentication_of(request, container.db, settings.api_key_cache_seconds)
    if auth.grant is None:
        raise TensorBayError(401, refusal_message(auth.refusal))
    if not auth.grant.may(request.method):
        raise TensorBayError(403, role_message(auth.grant, request.method))
    return auth.grant.workspace_id


WorkspaceDep = Annotated[str, Depends(current_workspace)]

PAGE_LIMIT = 1000


def page_bounds(
    offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1)] = 128
) -> tuple[int, int]:
    if limit > PAGE_LIMIT:
        raise invalid(f"limit must be at most {PAGE_LIMIT}")
    return offset, limit


PageDep = Annotated[tuple[int, int], Depends(page_bounds)]
