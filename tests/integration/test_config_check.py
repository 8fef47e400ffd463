"""Creating a storage config checks it against the real server: a wrong bucket, key or
endpoint is a 422 naming the field, with the provider's reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bootstrap import build_container
from metadata.db import migrate
from tests.conftest import make_settings
from tests.support import InlineQueue, api_client, new_workspace


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path / "bayport")
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    _, key = new_workspace(container)
    c = api_client(container, key)
    yield c
    container.db.dispose()


def _s3(s3: dict[str, Any], **change: str) -> dict[str, str]:
    body = {
        "name": "b",
        "provider": "s3",
        "endpoint": s3["endpoint"],
        "bucket_name": s3["source_bucket"],
        "accesskey_id": s3["access_key"],
        "accesskey_secret": s3["secret_key"],
    }
    return {**body, **change}


def test_s3_config_is_checked(client: TestClient, s3_buckets: dict[str, Any]) -> None:
    r = client.post("/v1/storage-configs", json=_s3(s3_buckets, bucket_name="no-such-bucket"))
    assert r.status_code == 422, r.text
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "s3", "bucket_name"] and "not_found" in err["msg"]

    r = client.post("/v1/storage-configs", json=_s3(s3_buckets, accesskey_secret="wrong"))
    assert r.status_code == 422
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "s3", "accesskey_secret"]
    assert "permission_denied" in err["msg"] and "wrong" not in err["msg"]

    r = client.post("/v1/storage-configs", json=_s3(s3_buckets, endpoint="http://127.0.0.1:9"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "s3", "endpoint"]

    assert client.post("/v1/storage-configs", json=_s3(s3_buckets)).status_code == 201
    assert [c["name"] for c in client.get("/v1/storage-configs").json()] == ["b"]


def test_oss_config_is_checked(client: TestClient, oss_server: dict[str, Any]) -> None:
    from tests.oss_fixtures import make_oss_bucket

    make_oss_bucket(oss_server, "oss-photos")
    body = {
        "name": "o",
        "provider": "oss",
        "endpoint": oss_server["endpoint"],
        "bucket_name": "oss-photos",
        "accesskey_id": oss_server["access_key"],
        "accesskey_secret": "wrong-secret",
    }
    r = client.post("/v1/storage-configs", json=body)
    assert r.status_code == 422
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "oss", "accesskey_secret"] and "permission_denied" in err["msg"]
    r = client.post(
        "/v1/storage-configs",
        json={**body, "bucket_name": "oss-nope", "accesskey_secret": oss_server["secret_key"]},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "oss", "bucket_name"]
    body["accesskey_secret"] = oss_server["secret_key"]
    assert client.post("/v1/storage-configs", json=body).status_code == 201


def test_azure_config_is_checked(client: TestClient, azurite: dict[str, str]) -> None:
    from tests.azure_fixtures import make_container

    make_container(azurite, "az-photos")
    body = {
        "name": "a",
        "provider": "azure",
        "account_name": azurite["account_name"],
        "account_key": "d3Jvbmcta2V5",
        "container_name": "az-photos",
        "endpoint": azurite["endpoint"],
    }
    r = client.post("/v1/storage-configs", json=body)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "azure", "account_key"]
    r = client.post(
        "/v1/storage-configs",
        json={**body, "container_name": "az-nope", "account_key": azurite["account_key"]},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "azure", "container_name"]
    body["account_key"] = azurite["account_key"]
    r = client.post("/v1/storage-configs", json=body)
    assert r.status_code == 201
    assert azurite["account_key"] not in r.text
