"""Issue 20, item 8: access keys expire, are revoked (by the API and by the operator's
`bayport keys`), have roles ("read" may only read, on both API faces), are managed per
workspace (/v1/keys), and show at most 4 of their characters in a hint; a bootstrap key too
short is refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import select

from api.app import create_app
from bayport.settings import Settings, SettingsError
from bootstrap import Container, build_container
from metadata import access_keys
from metadata.db import Database, alembic_config, migrate
from metadata.models import AccessKey, utcnow
from metadata.queries import workspaces as workspaces_q
from tests.conftest import make_settings
from tests.support import InlineQueue

TB = "/gatewayv2/tensorbay-open-api/v1"
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[Container, str, str]]:
    """A container (keys trusted for 0.3 s), two workspaces and their admin keys."""
    settings = make_settings(tmp_path / "bayport", api_key_cache_seconds=0.3)
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    with container.db.uow() as uow:
        _, alice = workspaces_q.create_workspace(uow.session, name="alice")
        _, bob = workspaces_q.create_workspace(uow.session, name="bob")
        uow.commit()
    yield container, alice, bob
    container.db.dispose()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _x_token(key: str) -> dict[str, str]:
    return {"X-Token": "ACCESSKEY-" + key}


def _add_key(container: Container, workspace_of: str, **fields: object) -> tuple[str, str]:
    with container.db.uow() as uow:
        workspace_id = workspaces_q.workspace_id_for_key(uow.session, key=workspace_of)
        assert workspace_id is not None
        row, key = access_keys.create_key(uow.session, workspace_id=workspace_id, **fields)  # type: ignore[arg-type]
        uow.commit()
    return row.id, key


def test_revoked_and_expired_keys_are_401_on_both_faces(keyed: tuple[Container, str, str]) -> None:
    container, alice, _ = keyed
    client = TestClient(create_app(container))
    key_id, key = _add_key(container, alice, role="write")
    assert client.get("/v1/datasets", headers=_bearer(key)).status_code == 200
    assert client.get(f"{TB}/datasets", headers=_x_token(key)).status_code == 200
    # Revoked through the API: refused at once, on both faces.
    r = client.delete(f"/v1/keys/{key_id}", headers=_bearer(alice))
    assert r.status_code == 200 and r.json()["revoked_at"]
    r = client.get("/v1/datasets", headers=_bearer(key))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    r = client.get(f"{TB}/datasets", headers=_x_token(key))
    assert r.status_code == 401 and r.json()["code"] == "Unauthorized"
    assert "revoked" in r.json()["message"]
    # Expired: a key whose time has passed.
    _, old = _add_key(container, alice, role="write", expires_at=utcnow() - timedelta(seconds=1))
    r = client.get("/v1/datasets", headers=_bearer(old))
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    r = client.get(f"{TB}/datasets", headers=_x_token(old))
    assert r.status_code == 401 and "expired" in r.json()["message"]
    # A key that expires while cached stops at its expiry, not at the cache's.
    _, brief = _add_key(container, alice, role="write", expires_at=utcnow() + timedelta(seconds=1))
    assert client.get("/v1/datasets", headers=_bearer(brief)).status_code == 200
    time.sleep(1.1)
    assert client.get("/v1/datasets", headers=_bearer(brief)).status_code == 401


def test_a_key_revoked_elsewhere_stops_within_the_cache_time(
    keyed: tuple[Container, str, str],
) -> None:
    """Another process (the operator's `bayport keys revoke`, another API process) revokes
    it in the DB: this process refuses it within BAYPORT_API_KEY_CACHE_SECONDS."""
    container, alice, _ = keyed
    client = TestClient(create_app(container))
    key_id, key = _add_key(container, alice)
    assert client.get("/v1/datasets", headers=_bearer(key)).status_code == 200
    other = Database(container.settings.resolved_database_url)
    try:
        with other.uow() as uow:
            assert access_keys.revoke_key(uow.session, key_id=key_id) is not None
            uow.commit()
    finally:
        other.dispose()
    time.sleep(0.35)
    assert client.get("/v1/datasets", headers=_bearer(key)).status_code == 401


def test_a_read_key_may_only_read_on_both_faces(keyed: tuple[Container, str, str]) -> None:
    container, alice, _ = keyed
    client = TestClient(create_app(container))
    _, reader = _add_key(container, alice, role="read", name="dashboard")
    assert client.get("/v1/datasets", headers=_bearer(reader)).status_code == 200
    r = client.post("/v1/datasets", json={"name": "Cats"}, headers=_bearer(reader))
    assert r.status_code == 403 and "'read'" in r.json()["detail"]
    assert client.get(f"{TB}/datasets", headers=_x_token(reader)).status_code == 200
    r = client.post(f"{TB}/datasets", json={"name": "Cats"}, headers=_x_token(reader))
    assert r.status_code == 403 and r.json()["code"] == "Forbidden"
    assert "'read'" in r.json()["message"]
    r = client.delete("/v1/storage-configs/x", headers=_bearer(reader))
    assert r.status_code == 403
    # Nothing was made; the admin key may.
    assert client.get("/v1/datasets", headers=_bearer(alice)).json() == []
    assert (
        client.post("/v1/datasets", json={"name": "Cats"}, headers=_bearer(alice)).status_code
        == 201
    )


def test_keys_api_is_admin_only_and_scoped_to_the_workspace(
    keyed: tuple[Container, str, str],
) -> None:
    container, alice, bob = keyed
    client = TestClient(create_app(container))
    r = client.post(
        "/v1/keys",
        json={"name": "ci", "role": "write", "expires_in": "30d"},
        headers=_bearer(alice),
    )
    assert r.status_code == 201, r.text
    made = r.json()
    key = made["key"]
    assert made["role"] == "write" and made["name"] == "ci" and made["expires_at"]
    assert made["hint"] == "bp_…" + key[-4:]
    assert client.get("/v1/datasets", headers=_bearer(key)).status_code == 200
    listed = client.get("/v1/keys", headers=_bearer(alice))
    assert listed.status_code == 200 and key not in listed.text
    assert made["id"] in {k["id"] for k in listed.json()} and len(listed.json()) == 2
    # A write key cannot manage keys, nor make itself an admin.
    for method, path, body in (
        ("POST", "/v1/keys", {"role": "admin"}),
        ("GET", "/v1/keys", None),
        ("DELETE", f"/v1/keys/{made['id']}", None),
    ):
        r = client.request(method, path, json=body, headers=_bearer(key))
        assert r.status_code == 403 and "admin" in r.json()["detail"], (method, r.text)
    # Bob's admin key sees none of alice's keys and cannot revoke one (404: not his).
    assert made["id"] not in client.get("/v1/keys", headers=_bearer(bob)).text
    r = client.delete(f"/v1/keys/{made['id']}", headers=_bearer(bob))
    assert r.status_code == 404
    assert client.get("/v1/datasets", headers=_bearer(key)).status_code == 200
    # Bad input is a 4xx naming the field.
    r = client.post("/v1/keys", json={"role": "owner"}, headers=_bearer(alice))
    assert r.status_code == 422 and "role" in r.text
    r = client.post("/v1/keys", json={"expires_in": "soon"}, headers=_bearer(alice))
    assert r.status_code == 422 and r.json()["field"] == "expires_in"


def test_a_bootstrap_key_too_short_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "b", bootstrap_access_key="bp_short-key-1234")
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    try:
        with pytest.raises(SettingsError, match="BAYPORT_BOOTSTRAP_ACCESS_KEY") as refused:
            create_app(container)
        assert "bp_short-key-1234" not in str(refused.value)
        with container.db.uow() as uow:
            assert workspaces_q.workspace_for_key(uow.session, key="bp_short-key-1234") is None
    finally:
        container.db.dispose()


def test_a_hint_shows_at_most_4_characters_of_the_key(tmp_path: Path) -> None:
    bootstrap = "s3cr3t-" + "0123456789abcdefghijklmnopqrstuv"  # no bp_ prefix
    settings = make_settings(tmp_path / "b", bootstrap_access_key=bootstrap)
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    try:
        create_app(container)
        with container.db.uow() as uow:
            _, made = workspaces_q.create_workspace(uow.session, name="w")
            uow.commit()
            hints = {r.key_sha256: r.hint for r in access_keys.list_keys(uow.session)}
        for key in (bootstrap, made):
            hint = hints[access_keys.hash_key(key)]
            shown = hint.removeprefix("bp_").replace("…", "")
            assert len(shown) <= 4 and key.endswith(shown), hint
        assert hints[access_keys.hash_key(bootstrap)] == "…stuv"
    finally:
        container.db.dispose()


def test_migrated_keys_become_admin_and_keep_at_most_4_characters(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'm.db'}"
    command.upgrade(alembic_config(url), "0009")
    db = Database(url)
    try:
        with db.uow() as uow:
            uow.session.execute(
                text(
                    "INSERT INTO workspace (id, name, created_at) VALUES ('w', 'w', :t);"
                ).bindparams(t=utcnow())
            )
            for i, hint in enumerate(("bp_AbCd", "s3cr3t-")):
                uow.session.execute(
                    text(
                        "INSERT INTO access_key (id, workspace_id, key_sha256, hint, created_at) "
                        "VALUES (:id, 'w', :sha, :hint, :t)"
                    ).bindparams(id=f"k{i}", sha=f"{i:064d}", hint=hint, t=utcnow())
                )
            uow.commit()
        migrate(url)
        with db.uow() as uow:
            rows = {r.id: r for r in uow.session.exec(select(AccessKey)).all()}
        assert {r.role for r in rows.values()} == {"admin"}
        assert rows["k0"].hint == "bp_AbCd" and rows["k1"].hint == "s3cr…"
        assert rows["k0"].revoked_at is None and rows["k0"].expires_at is None
    finally:
        db.dispose()


def _bayport(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_keys_create_list_revoke(tmp_path: Path) -> None:
    """The operator's tool, through the real `bayport` entry point, on the metadata DB."""
    data_dir = tmp_path / "bayport"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAYPORT_")} | {
        "BAYPORT_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(Path.cwd()),
    }
    assert _bayport(env, "migrate").returncode == 0
    made = _bayport(
        env, "keys", "create", "--role", "read", "--expires-in", "30d", "--name", "dashboard"
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("bp_") and len(key) >= 43 and "shown once" in made.stderr
    listed = _bayport(env, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout and "bp_…" + key[-4:] in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if "dashboard" in line)
    assert " read " in row and len(STAMP.findall(row)) == 2  # created, expires
    key_id = re.findall(r"\b[0-9a-f]{32}\b", row)[0]  # the first column

    settings: Settings = make_settings(data_dir, api_key_cache_seconds=0)
    container = build_container(settings, enqueuer=InlineQueue())
    try:
        client = TestClient(create_app(container))
        assert client.get("/v1/datasets", headers=_bearer(key)).status_code == 200
        assert (
            client.post("/v1/datasets", json={"name": "C"}, headers=_bearer(key)).status_code == 403
        )
        revoked = _bayport(env, "keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        r = client.get("/v1/datasets", headers=_bearer(key))
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
        listed = _bayport(env, "keys", "list")
        row = next(line for line in listed.stdout.splitlines() if "dashboard" in line)
        assert len(STAMP.findall(row)) == 4  # created, expires, revoked, last used
        # Mistakes are named.
        bad = _bayport(env, "keys", "create", "--role", "root")
        assert bad.returncode == 2 and "role" in bad.stderr
        bad = _bayport(env, "keys", "revoke", "nope")
        assert bad.returncode == 2 and "nope" in bad.stderr
    finally:
        container.db.dispose()
