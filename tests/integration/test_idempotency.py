"""POST /v1/imports with an Idempotency-Key: a repeated submission (a client retrying after
a timeout, an API restart, concurrent duplicates) makes one job, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from api.app import create_app
from bayport.settings import Settings
from bootstrap import Container, build_container
from metadata.db import migrate
from metadata.models import ImportJob
from tests.conftest import make_settings
from tests.support import InlineQueue, api_client, new_workspace, seed_manifest

MANIFEST: dict[str, Any] = seed_manifest(labels=False, shard_size=100)
CONFIG = {
    "name": "user-bucket",
    "provider": "s3",
    "endpoint": "http://127.0.0.1:9",
    "bucket_name": "photos",
    "accesskey_id": "AKIDEXAMPLE",
    "accesskey_secret": "secret-secret",
}


@pytest.fixture(params=["sqlite", "postgres"])
def settings_for_db(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    overrides: dict[str, Any] = {"api_rate_limit": ""}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_database")
    settings = make_settings(tmp_path / "bayport", **overrides)
    migrate(settings.resolved_database_url)
    return settings


@pytest.fixture
def world(settings_for_db: Settings) -> Iterator[tuple[Container, str]]:
    """A container (an API "process") and an access key with a config and a dataset."""
    container = build_container(settings_for_db, enqueuer=InlineQueue())
    _, key = new_workspace(container)
    client = _client(container, key)
    assert client.post("/v1/storage-configs", params={"verify": "false"}, json=CONFIG).is_success
    assert client.post("/v1/datasets", json={"name": "Cats"}).status_code == 201
    yield container, key
    container.db.dispose()


def _client(container: Container, key: str) -> TestClient:
    client = api_client(container, key)
    return client


def _jobs(container: Container) -> int:
    with container.db.uow() as uow:
        return int(uow.session.exec(select(func.count()).select_from(ImportJob)).one())


def test_same_key_same_manifest_is_one_job(world: tuple[Container, str]) -> None:
    container, key = world
    client = _client(container, key)
    first = client.post("/v1/imports", json=MANIFEST, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    # The same manifest, spelled differently (key order, spacing): the same request.
    respelled = json.dumps(dict(reversed(list(MANIFEST.items()))), indent=3)
    again = client.post(
        "/v1/imports",
        content=respelled,
        headers={"Idempotency-Key": "order-42", "Content-Type": "application/json"},
    )
    assert again.status_code == 202, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == f"/v1/imports/{first.json()['id']}"
    assert _jobs(container) == 1
    queue = container.ctx.enqueue
    assert isinstance(queue, InlineQueue)
    assert [t for t in queue.tasks if t[0] == "plan"] == [("plan", first.json()["id"])]


def test_same_key_other_manifest_is_refused_naming_the_key(world: tuple[Container, str]) -> None:
    container, key = world
    client = _client(container, key)
    headers = {"Idempotency-Key": "order-43"}
    first = client.post("/v1/imports", json=MANIFEST, headers=headers)
    assert first.status_code == 202
    other = {**MANIFEST, "segment": "other"}
    r = client.post("/v1/imports", json=other, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "Idempotency-Key"
    assert "order-43" in r.json()["detail"] and first.json()["id"] in r.json()["detail"]
    assert _jobs(container) == 1


@pytest.mark.parametrize("value", [b"", b"x" * 256, "caf\u00e9".encode("latin-1"), b"a\xffb"])
def test_malformed_keys_are_refused_naming_the_header(
    world: tuple[Container, str], value: bytes
) -> None:
    container, key = world
    r = _client(container, key).post(
        "/v1/imports", json=MANIFEST, headers=[(b"Idempotency-Key", value)]
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert _jobs(container) == 0


def test_keys_are_per_workspace_and_optional(world: tuple[Container, str]) -> None:
    container, key = world
    _, other_key = new_workspace(container, "other")
    other = _client(container, other_key)
    assert other.post("/v1/storage-configs", params={"verify": "false"}, json=CONFIG).is_success
    assert other.post("/v1/datasets", json={"name": "Cats"}).status_code == 201
    headers = {"Idempotency-Key": "shared-key ~!@#$%^&*()"}
    mine = _client(container, key).post("/v1/imports", json=MANIFEST, headers=headers)
    theirs = other.post("/v1/imports", json=MANIFEST, headers=headers)
    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json()["id"] != theirs.json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers
    # Without a key, nothing changes: a second submission meets the running job.
    plain = other.post("/v1/imports", json={**MANIFEST, "segment": "s2"})
    assert plain.status_code == 202 and "Idempotent-Replayed" not in plain.headers
    assert other.post("/v1/imports", json={**MANIFEST, "segment": "s2"}).status_code == 409
    assert _jobs(container) == 3


def test_concurrent_duplicates_make_one_job(world: tuple[Container, str]) -> None:
    """Eight clients post the same key at once, each through its own API app (as separate
    API processes on one DB would): one job; every answer names it."""
    container, key = world
    n = 8
    apps = [build_container(container.settings, enqueuer=InlineQueue()) for _ in range(n)]
    barrier = threading.Barrier(n)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def post(c: Container) -> None:
        client = _client(c, key)
        barrier.wait()
        r = client.post(
            "/v1/imports",
            json={**MANIFEST, "segment": "race"},
            headers={"Idempotency-Key": "race-1"},
        )
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=post, args=(c,)) for c in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for c in apps:
        c.db.dispose()
    assert [r.status_code for r in answers] == [202] * n, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in answers) == 1
    assert _jobs(container) == 1
    planned = sum(
        1
        for c in apps
        for t in c.ctx.enqueue.tasks
        if t[0] == "plan"  # type: ignore[attr-defined]
    )
    assert planned == 1


def test_a_restarted_api_replays_the_job(world: tuple[Container, str]) -> None:
    """The API dies after the job was recorded (the client never saw the answer); the
    client retries against the restarted API, with the same key: the same job."""
    container, key = world
    first = _client(container, key).post(
        "/v1/imports", json=MANIFEST, headers={"Idempotency-Key": "restart-1"}
    )
    assert first.status_code == 202
    container.db.dispose()  # the old process is gone
    restarted = build_container(container.settings, enqueuer=InlineQueue())
    try:
        again = _client(restarted, key).post(
            "/v1/imports", json=MANIFEST, headers={"Idempotency-Key": "restart-1"}
        )
        assert again.status_code == 202
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert _jobs(restarted) == 1
    finally:
        restarted.db.dispose()


class _LostAnswers(TestClient):
    """An API whose first `lose` answers to POST /v1/imports never reach the client: the
    request was made (the job exists), the connection dropped on the way back."""

    def __init__(self, app: Any, lose: int) -> None:
        super().__init__(app)
        self.lose = lose
        self.posts = 0

    def post(self, url: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        response = super().post(url, **kwargs)
        self.posts += 1
        if self.lose:
            self.lose -= 1
            raise httpx.ReadError("connection reset by peer")
        return response


def test_the_cli_client_resends_a_lost_submission_and_gets_one_job(
    world: tuple[Container, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli import client as cli_client

    container, key = world
    bayport = cli_client.BayportClient("http://testserver", key)
    api = _LostAnswers(create_app(container), lose=2)
    api.headers["Authorization"] = f"Bearer {key}"
    bayport.http = api
    monkeypatch.setattr(cli_client.time, "sleep", lambda _seconds: None)
    job = bayport.submit(MANIFEST)
    assert api.posts == 3
    assert _jobs(container) == 1
    assert job["id"] == _client(container, key).get("/v1/imports").json()["items"][0]["id"]
