"""The HTTP API on a real SQLite DB: auth, workspaces, validation, secrets kept secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from bayport.settings import Settings
from bootstrap import Container, build_container
from metadata.db import migrate
from metadata.queries import workspaces as workspaces_q
from tests.conftest import make_settings
from tests.support import InlineQueue

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYzz"
NO_CHECK = {"verify": "false"}  # the endpoint below is not a server
KEY_ID = "AKIDEXAMPLEKEYID0001"


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "bayport", local_roots=[str(tmp_path / "allowed")])


@pytest.fixture
def api_container(api_settings: Settings) -> Iterator[Container]:
    migrate(api_settings.resolved_database_url)
    container = build_container(api_settings, enqueuer=InlineQueue())
    yield container
    container.db.dispose()


def _key(container: Container, name: str) -> str:
    with container.db.uow() as uow:
        _, key = workspaces_q.create_workspace(uow.session, name=name)
        uow.commit()
    return key


@pytest.fixture
def client(api_container: Container) -> TestClient:
    c = TestClient(create_app(api_container))
    c.headers["Authorization"] = f"Bearer {_key(api_container, 'alice')}"
    return c


@pytest.fixture
def other(api_container: Container) -> TestClient:
    c = TestClient(create_app(api_container))
    c.headers["Authorization"] = f"Bearer {_key(api_container, 'bob')}"
    return c


S3_CONFIG = {
    "name": "user-bucket",
    "provider": "s3",
    "endpoint": "http://127.0.0.1:9",
    "bucket_name": "photos",
    "file_path": "/raw/",
    "accesskey_id": KEY_ID,
    "accesskey_secret": SECRET,
}
MANIFEST = {
    "dataset": "Cats",
    "segment": "default",
    "source": {
        "config_name": "user-bucket",
        "data_prefix": "data/images/",
        "label_prefix": "data/labels/",
        "label_type": "classification",
    },
    "options": {"concurrency": 8, "shard_size": 100, "overwrite": "skip_existing"},
}


def _setup(client: TestClient) -> None:
    assert client.post("/v1/storage-configs", params=NO_CHECK, json=S3_CONFIG).status_code == 201
    assert (
        client.post(
            "/v1/datasets",
            json={"name": "Cats", "config_name": "user-bucket", "path": "datasets/cats"},
        ).status_code
        == 201
    )


def test_requests_without_a_valid_key_are_401(api_container: Container) -> None:
    anonymous = TestClient(create_app(api_container))
    assert anonymous.get("/v1/datasets").status_code == 401
    r = anonymous.get("/v1/datasets", headers={"Authorization": "Bearer bp_nope"})
    assert r.status_code == 401 and "unknown access key" in r.text


BOOTSTRAP = "bp_bootstrap-key-0123456789abcdefghij"  # 32 characters or more


def test_bootstrap_key_creates_the_first_workspace(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "b", bootstrap_access_key=BOOTSTRAP)
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    c = TestClient(create_app(container))
    r = c.get("/v1/datasets", headers={"Authorization": f"Bearer {BOOTSTRAP}"})
    assert (r.status_code, r.json()) == (200, [])
    # A second start with the same key reuses its workspace.
    create_app(container)
    with container.db.uow() as uow:
        assert workspaces_q.workspace_for_key(uow.session, key=BOOTSTRAP) is not None


def test_storage_config_round_trip_never_returns_the_secret(
    client: TestClient, api_settings: Settings
) -> None:
    created = client.post("/v1/storage-configs", params=NO_CHECK, json=S3_CONFIG)
    assert created.status_code == 201
    body = created.json()
    assert body["file_path"] == "raw/"
    assert body["accesskey_id"] == "AKID…0001"
    responses = [
        created,
        client.get("/v1/storage-configs"),
        client.get("/v1/storage-configs/user-bucket"),
    ]
    for r in responses:
        assert SECRET not in r.text and KEY_ID not in r.text
    assert client.post("/v1/storage-configs", params=NO_CHECK, json=S3_CONFIG).status_code == 409
    # Not in the DB file in plain text either (nor its WAL).
    db_files = list(api_settings.data_dir.glob("bayport.db*"))
    assert db_files
    for path in db_files:
        assert SECRET.encode() not in path.read_bytes()


def test_storage_config_validation(
    client: TestClient, api_container: Container, tmp_path: Path
) -> None:
    r = client.post("/v1/storage-configs", params=NO_CHECK, json={**S3_CONFIG, "provider": "ftp"})
    assert r.status_code == 422 and "'provider'" in r.json()["detail"][0]["msg"]
    r = client.post(
        "/v1/storage-configs", params=NO_CHECK, json={**S3_CONFIG, "accesskey_secret": ""}
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "s3", "accesskey_secret"]
    r = client.post("/v1/storage-configs", params=NO_CHECK, json={**S3_CONFIG, "name": "bad name!"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "s3", "name"]
    azure = {"name": "az", "provider": "azure", "account_name": "acct", "account_key": "k"}
    r = client.post("/v1/storage-configs", params=NO_CHECK, json=azure)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "azure", "container_name"]
    r = client.post(
        "/v1/storage-configs",
        params=NO_CHECK,
        json={**azure, "container_name": "photos", "account_type": "China"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["endpoint"] == "https://acct.blob.core.chinacloudapi.cn"
    assert (r.json()["account_name"], r.json()["container_name"]) == ("acct", "photos")
    oss = {
        "name": "o",
        "provider": "oss",
        "bucket_name": "photos",
        "accesskey_id": "LTAIxx",
        "accesskey_secret": "s",
    }
    r = client.post("/v1/storage-configs", params=NO_CHECK, json=oss)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "oss", "endpoint"]
    local = {"name": "disk", "provider": "local", "bucket_name": "/etc"}
    r = client.post("/v1/storage-configs", params=NO_CHECK, json=local)
    assert r.status_code == 422 and "BAYPORT_LOCAL_ROOTS" in r.text
    # Only inside the workspace's own sub-folder of a root, <root>/<workspace id>/.
    r = client.post(
        "/v1/storage-configs",
        params=NO_CHECK,
        json={**local, "bucket_name": str(tmp_path / "allowed" / "photos")},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "local", "bucket_name"]
    key = client.headers["Authorization"].removeprefix("Bearer ")
    with api_container.db.uow() as uow:
        workspace_id = workspaces_q.workspace_id_for_key(uow.session, key=key)
    allowed = tmp_path / "allowed" / str(workspace_id) / "photos"
    r = client.post(
        "/v1/storage-configs", params=NO_CHECK, json={**local, "bucket_name": str(allowed)}
    )
    assert r.status_code == 201


def test_config_in_use_cannot_be_deleted(client: TestClient) -> None:
    _setup(client)
    assert client.delete("/v1/storage-configs/user-bucket").status_code == 409
    client.post("/v1/storage-configs", params=NO_CHECK, json={**S3_CONFIG, "name": "spare"})
    assert client.delete("/v1/storage-configs/spare").status_code == 204
    assert client.get("/v1/storage-configs/spare").status_code == 404


def test_datasets(client: TestClient) -> None:
    _setup(client)
    r = client.get("/v1/datasets/Cats")
    assert r.json()["config_name"] == "user-bucket" and r.json()["path"] == "datasets/cats/"
    assert client.post("/v1/datasets", json={"name": "Cats"}).status_code == 409
    assert (
        client.post("/v1/datasets", json={"name": "Dogs", "config_name": "nope"}).status_code == 404
    )
    r = client.post("/v1/datasets", json={"name": "Default"})
    assert r.status_code == 201 and r.json()["config_name"] is None
    assert [d["name"] for d in client.get("/v1/datasets").json()] == ["Cats", "Default"]


def test_submit_answers_202_with_a_location(client: TestClient, api_container: Container) -> None:
    _setup(client)
    r = client.post("/v1/imports", json=MANIFEST)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/imports/{job['id']}"
    assert (job["state"], job["dataset"], job["segment"]) == ("queued", "Cats", "default")
    assert client.get(f"/v1/imports/{job['id']}").json()["id"] == job["id"]
    assert [j["id"] for j in client.get("/v1/imports").json()["items"]] == [job["id"]]
    queue = api_container.ctx.enqueue
    assert isinstance(queue, InlineQueue) and list(queue.tasks) == [("plan", job["id"])]
    assert SECRET not in r.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"source": {"data_prefix": "x/"}}, ["body", "source", "config_name"]),
        ({"options": {"overwrite": "sometimes"}}, ["body", "options", "overwrite"]),
        ({"options": {"shard_size": 0}}, ["body", "options", "shard_size"]),
        ({"options": {"concurrency": 100000}}, ["body", "options", "concurrency"]),
        ({"options": {"colour": "red"}}, ["body", "options", "colour"]),
        ({"segment": "no/slashes"}, ["body", "segment"]),
        (
            {"source": {"config_name": "user-bucket", "label_type": "hologram"}},
            ["body", "source", "label_type"],
        ),
        (
            {"source": {"config_name": "user-bucket", "data_prefix": "../etc"}},
            ["body", "source", "data_prefix"],
        ),
        (
            {"source": {"config_name": "user-bucket", "include": ["ok/*", ""]}},
            ["body", "source", "include"],
        ),
        (
            {"source": {"config_name": "user-bucket", "modified_since": "2026-01-01"}},
            ["body", "source", "modified_since"],
        ),
        ({"options": {"max_delete_percent": 150}}, ["body", "options", "max_delete_percent"]),
        ({"options": {"max_delete": -1}}, ["body", "options", "max_delete"]),
    ],
)
def test_bad_manifests_are_422_naming_the_field(
    client: TestClient, change: dict[str, object], field: list[str]
) -> None:
    _setup(client)
    body = {**MANIFEST, **change}
    r = client.post("/v1/imports", json=body)
    assert r.status_code == 422, r.text
    assert any(err["loc"] == field for err in r.json()["detail"]), r.json()


def test_delete_with_an_object_list_is_422_saying_why(client: TestClient) -> None:
    _setup(client)
    body = {
        **MANIFEST,
        "source": {**MANIFEST["source"], "object_list": "lists/all.csv"},  # type: ignore[dict-item]
        "options": {"delete": True},
    }
    r = client.post("/v1/imports", json=body)
    assert r.status_code == 422
    assert "options.delete needs a listing of data_prefix" in r.text


def test_missing_dataset_is_a_404(client: TestClient) -> None:
    _setup(client)
    r = client.post("/v1/imports", json={**MANIFEST, "dataset": "Dogs"})
    assert r.status_code == 404 and r.json()["field"] == "dataset"


def test_another_workspaces_resources_are_404(client: TestClient, other: TestClient) -> None:
    _setup(client)
    job = client.post("/v1/imports", json=MANIFEST).json()
    assert other.get("/v1/storage-configs/user-bucket").status_code == 404
    assert other.get("/v1/datasets/Cats").status_code == 404
    assert other.get(f"/v1/imports/{job['id']}").status_code == 404
    assert other.post(f"/v1/imports/{job['id']}/cancel").status_code == 404
    assert other.get(f"/v1/imports/{job['id']}/failures").status_code == 404
    assert other.get(f"/v1/imports/{job['id']}/deletions").status_code == 404
    assert other.get(f"/v1/imports/{job['id']}/rejected").status_code == 404
    mine = client.get(f"/v1/imports/{job['id']}/deletions")
    assert mine.status_code == 200 and mine.json()["items"] == []
    assert other.get("/v1/imports").json()["items"] == []
    # bob's own dataset cannot import from alice's config
    other.post("/v1/datasets", json={"name": "Cats"})
    r = other.post("/v1/imports", json=MANIFEST)
    assert r.status_code == 404 and r.json()["field"] == "source.config_name"


def test_cancel_and_retry_states(client: TestClient) -> None:
    _setup(client)
    job = client.post("/v1/imports", json=MANIFEST).json()
    assert client.post(f"/v1/imports/{job['id']}/retry").status_code == 409  # still running
    r = client.post(f"/v1/imports/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
