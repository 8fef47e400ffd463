"""Every endpoint that names a resource, called with another workspace's key, answers 404 and
shows nothing of it — checked over the whole OpenAPI spec, so a new endpoint is covered the
day it is added."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from bootstrap import build_container
from metadata.db import migrate
from metadata.queries import workspaces
from tests.conftest import make_settings
from tests.support import InlineQueue

MANIFEST = {
    "dataset": "Cats",
    "source": {"config_name": "alices-bucket", "data_prefix": "images/"},
}


@pytest.fixture
def clients(tmp_path: Path) -> tuple[TestClient, TestClient, dict[str, str]]:
    settings = make_settings(tmp_path / "bayport")
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    keys = []
    with container.db.uow() as uow:
        for name in ("alice", "bob"):
            _, key = workspaces.create_workspace(uow.session, name=name)
            keys.append(key)
        uow.commit()
    app = create_app(container)
    alice, bob = TestClient(app), TestClient(app)
    alice.headers["Authorization"] = f"Bearer {keys[0]}"
    bob.headers["Authorization"] = f"Bearer {keys[1]}"
    config = {
        "name": "alices-bucket",
        "provider": "s3",
        "endpoint": "http://127.0.0.1:9",
        "bucket_name": "photos",
        "accesskey_id": "AKIDALICE0001",
        "accesskey_secret": "alice-secret-value-123",
    }
    assert alice.post("/v1/storage-configs", params={"verify": "false"}, json=config).is_success
    assert alice.post("/v1/datasets", json={"name": "Cats"}).is_success
    job = alice.post("/v1/imports", json=MANIFEST).json()
    schedule = {"name": "nightly", "manifest": MANIFEST, "cron": "0 2 * * *"}
    assert alice.post("/v1/schedules", json=schedule).is_success
    key = alice.post("/v1/keys", json={"name": "dashboard", "role": "read"})
    assert key.status_code == 201, key.text
    names = {
        "name": "",  # filled per path below
        "segment": "default",
        "job_id": job["id"],
        "key_id": key.json()["id"],
    }
    return alice, bob, names


BODIES: dict[str, Any] = {
    "/v1/datasets/{name}/catalog": {"CLASSIFICATION": {"categories": [{"name": "cat"}]}},
    "/v1/schedules/{name}": {"enabled": False},
}


def _fill(path: str, names: dict[str, str]) -> str:
    if path.startswith("/v1/storage-configs/"):
        name = "alices-bucket"
    elif path.startswith("/v1/schedules/"):
        name = "nightly"
    else:
        name = "Cats"
    values = {**names, "name": name}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def test_another_workspaces_resources_are_404_on_every_endpoint(clients: Any) -> None:
    alice, bob, names = clients
    paths = alice.app.openapi()["paths"]
    tried = 0
    for path, operations in paths.items():
        if "{" not in path:
            continue
        url = _fill(path, names)
        for method in operations:
            kwargs: dict[str, Any] = {}
            if method in ("put", "patch", "post") and path in BODIES:
                kwargs["json"] = BODIES[path]
            theirs = bob.request(method.upper(), url, **kwargs)
            assert theirs.status_code == 404, (method, url, theirs.status_code, theirs.text)
            for secret in ("alice-secret-value-123", "AKIDALICE0001", "photos"):
                assert secret not in theirs.text
            tried += 1
    assert tried >= 20  # the spec's resource endpoints, all of them
    # ...and every listing shows bob nothing of alice's.
    for listing in ("/v1/storage-configs", "/v1/datasets", "/v1/imports", "/v1/schedules"):
        body = bob.get(listing).json()
        assert (body["items"] if isinstance(body, dict) else body) == [], listing
    # The same calls as alice do reach her resources (the 404s above are not a typo).
    assert alice.get(_fill("/v1/imports/{job_id}", names)).status_code == 200
    assert alice.get("/v1/schedules/nightly").status_code == 200
