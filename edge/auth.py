"""Who is calling: the access key a request carries (`Authorization: Bearer <key>` on the main
API, `X-Token: ACCESSKEY-<key>` on the TensorBay one), looked up once per request and cached
per process for BAYPORT_API_KEY_CACHE_SECONDS. The outermost middleware (edge/limits.py)
authenticates, so that it can count a request against the key that authenticated; the
route dependencies (api/deps.py, tensorbay_api/deps.py) read what it found from
`request.state`: `key_grant` (the KeyGrant, or None), `key_refusal` (why not), and, for a
good key, `key_id` and `key_role`."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection

from edge.faces import KEY_PREFIXES, TENSORBAY_PREFIX
from metadata import access_keys
from metadata.access_keys import KeyGrant, hash_key
from metadata.db import Database
from metadata.models import utcnow

log = logging.getLogger("bayport.api")

# How often one process writes a key's last_used_at (a write per request would be a write
# per read).
TOUCH_SECONDS = 60.0
_CACHE_SIZE = 10_000

MISSING = "missing"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Authentication:
    """A request's key: `grant` when it is good; else `refusal` says why ("missing",
    "unknown", "revoked", "expired")."""

    grant: KeyGrant | None
    refusal: str | None

    @property
    def presented(self) -> bool:
        return self.refusal != MISSING


def candidate_keys(path: str, headers: Headers) -> list[str]:
    """The keys a request presents, in the order they are tried. The main API's: the Bearer
    token. The TensorBay API's: the X-Token with its `ACCESSKEY-` prefix taken off, then as
    it is (a bootstrap key that starts so)."""
    if not is_tensorbay(path):
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return [token.strip()] if scheme.lower() == "bearer" and token.strip() else []
    x_token = headers.get("x-token", "")
    if not x_token:
        return []
    found = [x_token[len(p) :] for p in KEY_PREFIXES if x_token.startswith(p)]
    return [k for k in [*found, x_token] if k]


def is_tensorbay(path: str) -> bool:
    return path.startswith(TENSORBAY_PREFIX + "/")


class Authenticator:
    """Keys' grants by their SHA-256, each trusted for `ttl` seconds (unknown keys are not
    cached: a key made a moment ago works at once)."""

    def __init__(self, db: Database, ttl: float) -> None:
        self.db = db
        self.ttl = ttl
        self._grants: dict[str, tuple[float, KeyGrant]] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def authenticate(self, candidates: list[str]) -> Authentication:
        """Blocking (a DB query on a cache miss): call it from a thread."""
        if not candidates:
            return Authentication(None, MISSING)
        for key in candidates:
            grant = self._grant(hash_key(key), key)
            if grant is None:
                continue
            refusal = grant.refusal()
            if refusal is None:
                self._touch(grant)
            return Authentication(grant if refusal is None else None, refusal)
        return Authentication(None, UNKNOWN)

    def forget(self, key_id: str) -> None:
        """Drop a key from this process's cache at once (it was just revoked here)."""
        with self._lock:
            for digest in [d for d, (_, g) in self._grants.items() if g.key_id == key_id]:
                del self._grants[digest]

    def _grant(self, digest: str, key: str) -> KeyGrant | None:
        now = time.monotonic()
        with self._lock:
            cached = self._grants.get(digest)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        with self.db.uow() as uow:
            grant = access_keys.grant_for_key(uow.session, key=key)
        with self._lock:
            if grant is None:
                self._grants.pop(digest, None)
            elif self.ttl > 0:
                if len(self._grants) >= _CACHE_SIZE:
                    self._grants.clear()
                self._grants[digest] = (now, grant)
        return grant

    def _touch(self, grant: KeyGrant) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(grant.key_id, -TOUCH_SECONDS) < TOUCH_SECONDS:
                return
            if len(self._touched) >= _CACHE_SIZE:
                self._touched.clear()
            self._touched[grant.key_id] = now
        at: datetime = utcnow()
        try:
            with self.db.uow() as uow:
                access_keys.touch_key(uow.session, key_id=grant.key_id, at=at)
                uow.commit()
        except Exception as exc:  # a busy DB must not fail the request for a timestamp
            log.warning("access key %s: last_used_at not written: %s", grant.key_id, exc)


_authenticators: weakref.WeakKeyDictionary[Database, Authenticator] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def authenticator_for(db: Database, ttl: float) -> Authenticator:
    """This process's authenticator of `db` (one cache for both API faces)."""
    with _registry_lock:
        found = _authenticators.get(db)
        if found is None:
            found = _authenticators[db] = Authenticator(db, ttl)
        return found


def remember(conn: HTTPConnection, auth: Authentication) -> None:
    """Put what authentication found on the request, for the routes (and other middleware:
    `key_id` names the caller for per-key limits)."""
    conn.state.key_grant = auth.grant
    conn.state.key_refusal = auth.refusal
    conn.state.key_id = auth.grant.key_id if auth.grant else None
    conn.state.key_role = auth.grant.role if auth.grant else None


def authentication_of(conn: HTTPConnection, db: Database, ttl: float) -> Authentication:
    """What the middleware found; found now if it did not run (an app without it)."""
    if hasattr(conn.state, "key_refusal"):
        return Authentication(conn.state.key_grant, conn.state.key_refusal)
    keys = candidate_keys(conn.scope.get("path", ""), conn.headers)
    auth = authenticator_for(db, ttl).authenticate(keys)
    remember(conn, auth)
    return auth


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
