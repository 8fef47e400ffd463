"""SSRF: a storage config cannot make Bayport call loopback, private or link-local addresses
(the cloud metadata service at 169.254.169.254 above all) unless the operator allows them;
the API refuses such a config without calling it, and workers refuse to open its store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bayport.settings import Settings
from bootstrap import Container, build_container
from devstack.sample import populate
from importer import service
from importer.manifest import ImportManifest
from metadata.db import migrate
from metadata.models import ImportJob
from tests.conftest import make_settings
from tests.probes import RecordingServer
from tests.support import InlineQueue, api_client, new_workspace

ALLOW = "BAYPORT_ALLOWED_PRIVATE_ENDPOINTS"


@pytest.fixture
def internal_service() -> Iterator[RecordingServer]:
    """An internal service on 127.0.0.1 that records the requests it gets (and answers 403)."""
    server = RecordingServer()
    yield server
    server.close()


def _container(settings: Settings, queue: InlineQueue | None = None) -> Container:
    migrate(settings.resolved_database_url)
    return build_container(settings, enqueuer=queue or InlineQueue())


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Container]:
    """An API whose operator allows no private endpoint (the default)."""
    container = _container(make_settings(tmp_path / "bayport", allowed_private_endpoints=[]))
    yield container
    container.db.dispose()


def _client(container: Container) -> TestClient:
    _, key = new_workspace(container)
    client = api_client(container, key)
    return client


def _s3(endpoint: str, name: str = "src") -> dict[str, Any]:
    return {
        "name": name,
        "provider": "s3",
        "endpoint": endpoint,
        "bucket_name": "photos",
        "accesskey_id": "AKIDEXAMPLE",
        "accesskey_secret": "secret-secret",
    }


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("http://169.254.169.254", "169.254.169.254 is a link-local address"),
        ("http://169.254.169.254:80/latest/meta-data/", "link-local"),
        ("http://[::ffff:169.254.169.254]", "link-local"),
        ("http://[fe80::1]", "link-local"),
        ("http://127.0.0.1:9000", "loopback"),
        ("http://localhost:9000", "loopback"),
        ("http://[::1]:9000", "loopback"),
        ("http://10.0.0.5", "private"),
        ("http://192.168.0.1", "private"),
        ("http://[fd00::1]", "private"),
        ("http://0.0.0.0:9000", "unspecified"),
    ],
)
def test_api_refuses_private_endpoints_naming_the_field(
    strict: Container, endpoint: str, why: str
) -> None:
    client = _client(strict)
    for body in (
        _s3(endpoint),
        {**_s3(endpoint), "provider": "oss"},
        {
            "name": "src",
            "provider": "azure",
            "account_name": "acct",
            "account_key": "a2V5",
            "container_name": "photos",
            "endpoint": endpoint + "/acct",  # an emulator-style account URL
        },
    ):
        body.pop("region", None)
        r = client.post("/v1/storage-configs", json=body)  # verify on: it must not call
        assert r.status_code == 422, r.text
        error = r.json()["detail"][0]
        assert error["loc"] == ["body", body["provider"], "endpoint"]
        assert why in error["msg"] and ALLOW in error["msg"]
    assert client.get("/v1/storage-configs").json() == []


def test_refused_config_is_never_called(strict: Container, internal_service: Any) -> None:
    client = _client(strict)
    r = client.post("/v1/storage-configs", json=_s3(internal_service.url))
    assert r.status_code == 422
    assert internal_service.hits == []
    # With the operator's allowlist, the same config is checked (one listing: 403 here).
    allowed = _container(
        make_settings(strict.settings.data_dir, allowed_private_endpoints=["127.0.0.1"])
    )
    try:
        r = _client(allowed).post("/v1/storage-configs", json=_s3(internal_service.url))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "accesskey_secret"
        assert internal_service.hits
    finally:
        allowed.db.dispose()


def test_public_and_derived_endpoints_pass(strict: Container) -> None:
    client = _client(strict)
    no_check = {"verify": "false"}
    s3 = _s3("x")
    del s3["endpoint"]  # AWS's own endpoint
    assert client.post("/v1/storage-configs", params=no_check, json=s3).status_code == 201
    azure = {
        "name": "az",
        "provider": "azure",
        "account_name": "acct",
        "account_key": "a2V5",
        "container_name": "photos",
        "account_type": "China",
    }
    r = client.post("/v1/storage-configs", params=no_check, json=azure)
    assert r.status_code == 201, r.text
    assert r.json()["endpoint"] == "https://acct.blob.core.chinacloudapi.cn"


@pytest.mark.parametrize("account", ["127.0.0.1#", "evil.com/x", "a@b", "ACCT", "ab"])
def test_azure_account_names_cannot_steer_the_derived_url(strict: Container, account: str) -> None:
    body = {
        "name": "az",
        "provider": "azure",
        "account_name": account,
        "account_key": "a2V5",
        "container_name": "photos",
    }
    r = _client(strict).post("/v1/storage-configs", params={"verify": "false"}, json=body)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "account_name"


def test_operator_allowlist_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, internal_service: Any
) -> None:
    """A deployment reads the allowlist from its environment, comma separated or JSON."""
    monkeypatch.setenv(ALLOW, "10.0.0.0/8, 127.0.0.1")
    settings = Settings(data_dir=tmp_path / "b", secret_key=make_settings(tmp_path).secret_key)
    assert settings.allowed_private_endpoints == ["10.0.0.0/8", "127.0.0.1"]
    container = _container(settings)
    try:
        client = _client(container)
        no_check = {"verify": "false"}
        r = client.post("/v1/storage-configs", params=no_check, json=_s3(internal_service.url))
        assert r.status_code == 201, r.text
        r = client.post("/v1/storage-configs", params=no_check, json=_s3("http://[::1]:9", "b"))
        assert r.status_code == 422 and "::1 is a loopback address" in r.text
    finally:
        container.db.dispose()


# --- workers check again when they open a store ---------------------------------------


def _config(s3: dict[str, Any], name: str, bucket: str, host: str = "127.0.0.1") -> dict[str, Any]:
    return {
        **_s3(s3["endpoint"].replace("127.0.0.1", host), name),
        "bucket_name": s3[bucket],
        "accesskey_id": s3["access_key"],
        "accesskey_secret": s3["secret_key"],
    }


def _run_on_worker(
    tmp_path: Path, s3: dict[str, Any], *, api_allows: list[str], worker_allows: list[str]
) -> tuple[ImportJob, Container]:
    """Configs made through an API that allows `api_allows`; the import planned and copied
    by a worker that allows `worker_allows` (the same DB)."""
    queue = InlineQueue()
    api = _container(make_settings(tmp_path / "bayport", allowed_private_endpoints=api_allows))
    worker_settings = api.settings.model_copy(update={"allowed_private_endpoints": worker_allows})
    worker = _container(worker_settings, queue)
    client = _client(api)
    src = _config(s3, "src", "source_bucket", host="localhost")
    assert client.post("/v1/storage-configs", json=src).status_code == 201
    dest = _config(s3, "datasets", "dest_bucket")
    assert client.post("/v1/storage-configs", json=dest).status_code == 201
    r = client.post("/v1/datasets", json={"name": "Cats", "config_name": "datasets"})
    assert r.status_code == 201
    manifest = ImportManifest.model_validate(
        {"dataset": "Cats", "source": {"config_name": "src", "data_prefix": "data/"}}
    )
    job = service.submit_import(worker.ctx, workspace_id=_workspace_of(api), manifest=manifest)
    queue.drain(worker.ctx)
    api.db.dispose()
    with worker.db.uow() as uow:
        done = uow.session.get(ImportJob, job.id)
    assert done is not None
    return done, worker


def test_worker_refuses_a_source_whose_endpoint_is_no_longer_allowed(
    tmp_path: Path, s3_buckets: dict[str, Any]
) -> None:
    """The configs were made while their endpoint was allowed (or resolved to a public
    address: DNS can change); the worker that opens the source now finds it refused: the job
    fails with the reason, and no object is read or written."""
    populate(s3_buckets["source"], 5)
    job, worker = _run_on_worker(
        tmp_path, s3_buckets, api_allows=["127.0.0.1", "localhost"], worker_allows=[]
    )
    worker.db.dispose()
    assert job.state == "failed"
    assert job.error and "'src': endpoint refused" in job.error and "loopback" in job.error
    assert ALLOW in job.error
    assert (job.listed, job.copied) == (0, 0)
    assert s3_buckets["dest"].list_page("", limit=10).objects == []


def test_worker_refuses_a_dataset_storage_whose_endpoint_is_no_longer_allowed(
    tmp_path: Path, s3_buckets: dict[str, Any]
) -> None:
    populate(s3_buckets["source"], 5)
    job, worker = _run_on_worker(
        tmp_path, s3_buckets, api_allows=["127.0.0.1", "localhost"], worker_allows=["localhost"]
    )
    worker.db.dispose()
    assert job.state == "failed"
    assert job.error and "'datasets': endpoint refused" in job.error
    assert "127.0.0.1 is a loopback address" in job.error
    assert s3_buckets["dest"].list_page("", limit=10).objects == []


def _workspace_of(container: Container) -> str:
    from sqlmodel import select

    from metadata.models import Workspace

    with container.db.uow() as uow:
        workspace = uow.session.exec(select(Workspace)).first()
    assert workspace is not None
    return workspace.id
