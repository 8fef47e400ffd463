"""Access keys: made, listed, revoked and checked. A key belongs to one workspace and has a
role: "read" (GET and HEAD only), "write" (everything but managing keys) or "admin". Only
its SHA-256 is stored; the key is shown once, when it is made. Helpers take a session and
keyword arguments; none commits."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select, update

from metadata.models import AccessKey, Workspace, utcnow

ACCESS_KEY_PREFIX = "bp_"
ROLES = ("read", "write", "admin")
# Methods a "read" key may use.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class AccessKeyError(ValueError):
    """A request about keys that cannot be done: `field` names what is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class KeyGrant:
    """What a key that authenticated may do (cached by the API: no ORM object)."""

    key_id: str
    workspace_id: str
    role: str
    expires_at: datetime | None
    revoked: bool

    def refusal(self, now: datetime | None = None) -> str | None:
        """None while the key is good; else why not ("revoked", "expired")."""
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and aware(self.expires_at) <= (now or utcnow()):
            return "expired"
        return None

    def may(self, method: str) -> bool:
        return self.role != "read" or method.upper() in READ_METHODS


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def hint_for(key: str) -> str:
    """The prefix and the last 4 characters: enough to tell keys apart, never more than 4
    characters of the secret."""
    prefix = ACCESS_KEY_PREFIX if key.startswith(ACCESS_KEY_PREFIX) else ""
    return f"{prefix}…{key[-4:]}" if len(key) >= len(prefix) + 12 else f"{prefix}…"


def role_rank(role: str) -> int:
    return ROLES.index(role)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccessKeyError(f"role must be one of {', '.join(ROLES)}, not {role!r}", field="role")
    return role


def parse_duration(text: str) -> timedelta:
    """'90m', '12h', '30d', '8w' -> a timedelta (for --expires-in / expires_in)."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise AccessKeyError(
            f"expires_in must be a positive number of m, h, d or w (e.g. '30d'), not {text!r}",
            field="expires_in",
        )
    duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if duration > timedelta(days=3660):
        raise AccessKeyError("expires_in must be at most 10 years", field="expires_in")
    return duration


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def grant_for_key(session: Session, *, key: str) -> KeyGrant | None:
    """The key's grant, revoked or expired ones too (the caller says why it refuses); None
    for an unknown key. One query on the unique index of key_sha256: every API call asks."""
    row = session.exec(select(AccessKey).where(AccessKey.key_sha256 == hash_key(key))).first()
    if row is None:
        return None
    return KeyGrant(row.id, row.workspace_id, row.role, row.expires_at, row.revoked_at is not None)


def create_key(
    session: Session,
    *,
    workspace_id: str,
    role: str = "write",
    name: str = "",
    expires_at: datetime | None = None,
    key: str | None = None,
) -> tuple[AccessKey, str]:
    """Store a key's hash; returns the row and the key (a new random one unless given)."""
    check_role(role)
    if len(name) > 200:
        raise AccessKeyError("name must be at most 200 characters", field="name")
    key = key or ACCESS_KEY_PREFIX + secrets.token_urlsafe(32)  # 256 random bits
    row = AccessKey(
        workspace_id=workspace_id,
        key_sha256=hash_key(key),
        hint=hint_for(key),
        name=name,
        role=role,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, key


def list_keys(session: Session, *, workspace_id: str | None = None) -> Sequence[AccessKey]:
    """A workspace's keys (every workspace's without one), oldest first."""
    query = select(AccessKey)
    if workspace_id is not None:
        query = query.where(AccessKey.workspace_id == workspace_id)
    return session.exec(query.order_by(col(AccessKey.created_at), col(AccessKey.id))).all()


def revoke_key(
    session: Session, *, key_id: str, workspace_id: str | None = None
) -> AccessKey | None:
    """Revoke a key (a second revocation keeps the first time); None when there is no such
    key in `workspace_id` (in any workspace without one)."""
    row = session.get(AccessKey, key_id)
    if row is None or (workspace_id is not None and row.workspace_id != workspace_id):
        return None
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
    return row


def touch_key(session: Session, *, key_id: str, at: datetime) -> None:
    session.exec(update(AccessKey).where(col(AccessKey.id) == key_id).values(last_used_at=at))


def find_workspace(session: Session, *, ref: str) -> Workspace | None:
    """A workspace by id, else by its name when that is unique."""
    found = session.get(Workspace, ref)
    if found is not None:
        return found
    named = session.exec(select(Workspace).where(Workspace.name == ref).limit(2)).all()
    if len(named) > 1:
        raise AccessKeyError(
            f"more than one workspace is named {ref!r}: give its id", field="workspace"
        )
    return named[0] if named else None
