"""Flower is for operators: the job page never sends a tenant there (Flower shows every
workspace's tasks and can revoke or apply them). The job's own tasks are Bayport's
/v1/imports/{id}/tasks instead — its planning and each shard's copy, with state, attempts,
the task holding it and when — scoped to the caller's workspace like the job itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from api.app import create_app
from bootstrap import Container, build_container
from devstack.sample import populate
from importer import recovery
from metadata.db import migrate
from metadata.models import Shard
from storage_adapters.base import StorageSpec
from storage_adapters.memory import MemoryBackend
from storage_adapters.registry import open_store
from tests.conftest import make_settings
from tests.support import InlineQueue, add_config, api_client, new_workspace, seed_manifest

N = 20
MANIFEST = seed_manifest(shard_size=8, missing_label="import")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Container, TestClient, TestClient]]:
    settings = make_settings(
        tmp_path / "bayport",
        # An operator's Flower, as a deployment had it set for the job page's links.
        flower_url="http://flower.internal:5555",
        flower_basic_auth="admin:operator-password",
    )
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    clients = []
    for name in ("a", "b"):
        workspace, key = new_workspace(container, name)
        for config, bucket in (("user-bucket", f"user-{name}"), ("datasets", f"ds-{name}")):
            add_config(
                container.ctx, container.box, workspace_id=workspace.id, name=config, bucket=bucket
            )
        client = api_client(container, key)
        clients.append(client)
    populate(open_store(StorageSpec(provider="memory", bucket="user-a")), N)
    yield container, clients[0], clients[1]
    container.db.dispose()
    MemoryBackend.forget_named()


def test_the_job_tasks_are_shown_to_the_job_workspace_only(
    world: tuple[Container, TestClient, TestClient],
) -> None:
    container, a, b = world
    queue = container.ctx.enqueue
    assert isinstance(queue, InlineQueue)
    assert a.post("/v1/datasets", json={"name": "Cats", "config_name": "datasets"}).is_success
    submitted = a.post("/v1/imports", json=MANIFEST)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]

    queued = a.get(f"/v1/imports/{job_id}/tasks")
    assert queued.status_code == 200, queued.text
    assert queued.json()["planning"]["state"] == "queued" and queued.json()["items"] == []

    queue.drain(container.ctx, only={"plan"})  # listed and sharded; nothing copied yet
    with container.db.uow() as uow:
        shard_ids = list(uow.session.exec(select(Shard.id).order_by(col(Shard.seq))))
    assert len(shard_ids) == 3
    # A worker's task takes the first shard (its lease: task id, host and process).
    assert recovery.claim_shard(container.ctx, shard_ids[0], "celery-task-1")

    tasks = a.get(f"/v1/imports/{job_id}/tasks").json()
    assert tasks["job_id"] == job_id and tasks["planning"]["state"] == "done"
    assert tasks["shards_total"] == 3
    assert tasks["counts"] == {"queued": 2, "running": 1, "lost": 0, "done": 0, "stopped": 0}
    first, second, _ = tasks["items"]
    assert (first["seq"], first["kind"], first["state"], first["attempts"]) == (
        0,
        "copy",
        "running",
        1,
    )
    # The task id, not the worker's host and process (the operator's business).
    assert first["task_id"] == "celery-task-1" and first["heartbeat_at"] is not None
    assert (second["state"], second["attempts"], second["task_id"]) == ("queued", 0, None)
    assert first["objects"] == 8 and first["sent_at"] is not None
    paged = a.get(f"/v1/imports/{job_id}/tasks", params={"limit": 1, "offset": 1}).json()
    assert [t["seq"] for t in paged["items"]] == [1] and paged["next_offset"] == 2

    # Another workspace learns nothing of the job, not even that it exists.
    for path in (f"/v1/imports/{job_id}/tasks", f"/v1/imports/{job_id}"):
        refused = b.get(path)
        assert refused.status_code == 404, refused.text
        assert "celery-task-1" not in refused.text
    assert TestClient(create_app(container)).get(f"/v1/imports/{job_id}/tasks").status_code == 401

    recovery.release_shard(container.ctx, shard_ids[0], "celery-task-1")
    queue.drain(container.ctx)
    ended = a.get(f"/v1/imports/{job_id}/tasks").json()
    assert ended["counts"]["done"] == 3 and all(t["state"] == "done" for t in ended["items"])
    assert all(t["finished_at"] for t in ended["items"])


def test_the_job_page_does_not_send_tenants_to_flower(
    world: tuple[Container, TestClient, TestClient],
) -> None:
    container, _, _ = world
    anyone = TestClient(create_app(container))
    page = anyone.get("/jobs/0123456789abcdef0123456789abcdef")
    assert page.status_code == 200
    script = anyone.get("/jobs/static/job.js").text
    for text in (page.text, script):
        assert "flower" not in text.lower() and "5555" not in text
    # It shows the job's own tasks, read from the API with the tenant's key.
    assert 'id="tasks"' in page.text and "/tasks?limit=" in script


DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_deployments_keep_flower_for_operators() -> None:
    import yaml

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    flower = compose["services"]["flower"]
    assert flower["environment"]["BAYPORT_FLOWER_BASIC_AUTH"].startswith(
        "${BAYPORT_FLOWER_BASIC_AUTH:?"
    )  # required: compose refuses to start without a login
    assert "FLOWER_UNAUTHENTICATED_API" not in str(compose)
    # Published on the host's loopback only: not on every interface the host has.
    assert flower["ports"] and all(str(p).startswith("127.0.0.1:") for p in flower["ports"])
    values = yaml.safe_load((DEPLOY / "helm/bayport/values.yaml").read_text())
    assert values["flower"]["service"]["type"] == "ClusterIP"
    assert "BAYPORT_FLOWER_URL" not in (DEPLOY / "helm/bayport/values.yaml").read_text()
    templates = DEPLOY / "helm/bayport/templates"
    assert not any("flower" in t.read_text().lower() for t in templates.glob("*ingress*"))
