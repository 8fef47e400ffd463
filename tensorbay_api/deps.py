"""Request dependencies: the caller's workspace (from `X-Token`), paging; the container's is
the main API's (the sub-application holds the same container in its state)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query

from api.deps import ContainerDep
from metadata import repository as repo
from tensorbay_api import KEY_PREFIXES
from tensorbay_api.errors import TensorBayError, invalid


def current_workspace(
    container: ContainerDep,
    x_token: Annotated[str | None, Header(description="ACCESSKEY-<Bayport access key>")] = None,
) -> str:
    if not x_token:
        raise TensorBayError(401, "an access key is required: X-Token: ACCESSKEY-<key>")
    # `ACCESSKEY-<key>` first (the common case), then the token as it is (a bootstrap key
    # that starts so).
    candidates = [x_token[len(p) :] for p in KEY_PREFIXES if x_token.startswith(p)]
    candidates.append(x_token)
    with container.db.uow() as uow:
        for key in candidates:
            workspace_id = repo.workspace_id_for_key(uow.session, key=key)
            if workspace_id is not None:
                return workspace_id
    raise TensorBayError(401, "unknown access key")


WorkspaceDep = Annotated[str, Depends(current_workspace)]

PAGE_LIMIT = 1000


def page_bounds(
    offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1)] = 128
) -> tuple[int, int]:
    if limit > PAGE_LIMIT:
        raise invalid(f"limit must be at most {PAGE_LIMIT}")
    return offset, limit


PageDep = Annotated[tuple[int, int], Depends(page_bounds)]
