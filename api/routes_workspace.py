"""GET /v1/workspace: who the caller is — its workspace (id and name), the key's role, and the
folders its `local` storage configs may name (`<root>/<workspace id>/` of
BAYPORT_LOCAL_ROOTS), so that a user can tell the operator where to put its files."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import ContainerDep, KeyDep
from metadata.models import Workspace
from stores.local_roots import LocalRoots

router = APIRouter(prefix="/v1/workspace", tags=["workspace"])


class WorkspacePublic(BaseModel):
    id: str
    name: str
    key_id: str = Field(description="The access key this request came with")
    role: str = Field(description="Its role: read, write or admin")
    local_folders: list[str] = Field(
        description="Folders this workspace's `local` configs may name (and their sub-folders)"
    )


@router.get("", response_model=WorkspacePublic)
def whoami(grant: KeyDep, container: ContainerDep) -> WorkspacePublic:
    with container.db.uow() as uow:
        workspace = uow.session.get(Workspace, grant.workspace_id)
        name = workspace.name if workspace is not None else ""
    folders = LocalRoots.from_settings(container.settings).folders(grant.workspace_id)
    return WorkspacePublic(
        id=grant.workspace_id,
        name=name,
        key_id=grant.key_id,
        role=grant.role,
        local_folders=[str(f) for f in folders],
    )
