"""Workspaces and the access keys that open them: found by key, made, bootstrapped.
Helpers take a session and keyword arguments; none commits."""

from __future__ import annotations

from sqlmodel import Session

from metadata import access_keys
from metadata.models import Workspace


def workspace_for_key(session: Session, *, key: str) -> Workspace | None:
    workspace_id = workspace_id_for_key(session, key=key)
    return session.get(Workspace, workspace_id) if workspace_id else None


def workspace_id_for_key(session: Session, *, key: str) -> str | None:
    """The id of the key's workspace while the key is good (neither revoked nor expired)."""
    grant = access_keys.grant_for_key(session, key=key)
    return grant.workspace_id if grant is not None and grant.refusal() is None else None


def add_access_key(
    session: Session, *, workspace_id: str, key: str | None = None, role: str = "admin"
) -> str:
    """Store a key's hash; returns the key (a new random one unless given). A workspace's
    first key (create_workspace, the bootstrap key) is its admin key."""
    return access_keys.create_key(session, workspace_id=workspace_id, key=key, role=role)[1]


def create_workspace(session: Session, *, name: str) -> tuple[Workspace, str]:
    workspace = Workspace(name=name)
    session.add(workspace)
    session.flush()
    return workspace, add_access_key(session, workspace_id=workspace.id)


def ensure_bootstrap_key(session: Session, *, key: str) -> Workspace:
    """The workspace of `key`, creating a workspace for it on first use. A bootstrap key
    revoked (or expired) stays so: it is not made again at the next start."""
    grant = access_keys.grant_for_key(session, key=key)
    found = session.get(Workspace, grant.workspace_id) if grant else None
    if found:
        return found
    workspace = Workspace(name="default")
    session.add(workspace)
    session.flush()
    add_access_key(session, workspace_id=workspace.id, key=key)
    return workspace
