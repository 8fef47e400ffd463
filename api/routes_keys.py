"""/v1/keys: a workspace's own access keys, managed with an "admin" key: make one (shown
once), list them (never the keys), revoke one. Another workspace's keys do not exist here."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ContainerDep, KeyDep
from edge.auth import authenticator_for
from importer.errors import Invalid
from metadata import access_keys
from metadata.access_keys import AccessKeyError, KeyGrant
from metadata.models import AccessKey, utcnow

router = APIRouter(prefix="/v1/keys", tags=["access keys"])

Role = Literal["read", "write", "admin"]


def admin_key(grant: KeyDep) -> KeyGrant:
    if grant.role != "admin":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"managing access keys needs an 'admin' key; this key's role is {grant.role!r}",
        )
    return grant


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200, description="What the key is for")
    role: Role = Field(
        default="read",
        description="read: GET and HEAD only; write: everything but managing keys; admin: all",
    )
    expires_in: str | None = Field(
        default=None, max_length=16, description="'90m', '12h', '30d', '8w'; none: never"
    )


class KeyPublic(BaseModel):
    id: str
    name: str
    role: str
    hint: str = Field(description="The key's prefix and last 4 characters")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Written at most once a minute")


class KeyCreated(KeyPublic):
    key: str = Field(description="The key itself: shown this once, never again")


def public(row: AccessKey) -> KeyPublic:
    return KeyPublic(
        id=row.id,
        name=row.name,
        role=row.role,
        hint=row.hint,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
def create_key(
    body: KeyCreate, container: ContainerDep, grant: KeyGrant = Depends(admin_key)
) -> KeyCreated:
    """A new key of the caller's workspace, with a role no higher than the caller's."""
    if access_keys.role_rank(body.role) > access_keys.role_rank(grant.role):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"a key cannot make a key of a higher role than its own ({grant.role!r})",
        )
    try:
        expires_at = (
            utcnow() + access_keys.parse_duration(body.expires_in) if body.expires_in else None
        )
        with container.db.uow() as uow:
            row, key = access_keys.create_key(
                uow.session,
                workspace_id=grant.workspace_id,
                role=body.role,
                name=body.name,
                expires_at=expires_at,
            )
            made = public(row)
            uow.commit()
    except AccessKeyError as exc:  # 422 naming the field
        raise Invalid(exc.message, field=exc.field) from None
    return KeyCreated(**made.model_dump(), key=key)


@router.get("")
def list_keys(container: ContainerDep, grant: KeyGrant = Depends(admin_key)) -> list[KeyPublic]:
    with container.db.uow() as uow:
        rows = access_keys.list_keys(uow.session, workspace_id=grant.workspace_id)
        return [public(row) for row in rows]


@router.delete("/{key_id}")
def revoke_key(
    key_id: str, container: ContainerDep, grant: KeyGrant = Depends(admin_key)
) -> KeyPublic:
    """Revoke a key of the caller's workspace: at once in this API process, within
    BAYPORT_API_KEY_CACHE_SECONDS in the others."""
    with container.db.uow() as uow:
        row = access_keys.revoke_key(uow.session, key_id=key_id, workspace_id=grant.workspace_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no access key {key_id!r}")
        revoked = public(row)
        uow.commit()
    settings = container.settings
    authenticator_for(container.db, settings.api_key_cache_seconds).forget(key_id)
    return revoked
