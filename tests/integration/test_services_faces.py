"""Both HTTP faces over the one service layer (services/): what one face sets, the other reads
back the same, on a real SQLite DB and PostgreSQL; the queue runs inline."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from bootstrap import Container
from metadata.models import Dataset
from metadata.queries import drafts as drafts_q
from metadata.queries import workspaces
from services import drafts
from tests.integration import test_tensorbay_api as tensorbay_tests
from tests.support import InlineQueue

TB = "/gatewayv2/tensorbay-open-api/v1"

# A catalog as a client may send it: explicit nulls (which mean what an absent member does)
# and a subcatalog whose optional categories are absent.
SENT: dict[str, Any] = {
    "CLASSIFICATION": {
        "description": None,
        "categories": [{"name": "cat", "description": None}, {"name": "dog"}],
        "attributes": [{"name": "color", "enum": ["red", None], "parentCategories": None}],
    },
    "BOX2D": {"categories": [{"name": "cat"}], "attributes": None, "isTracking": False},
    "INSTANCE_MASK": {"description": "instances"},
}
# The one form it is stored in and read back in through either face: TensorBay's catalog
# JSON, no null members (the SDK's Catalog.loads fails on `"attributes": null`), the default
# categories of INSTANCE_MASK spelt out; nulls inside an enum are values and stay.
STORED: dict[str, Any] = {
    "CLASSIFICATION": {
        "categories": [{"name": "cat"}, {"name": "dog"}],
        "attributes": [{"name": "color", "enum": ["red", None]}],
    },
    "BOX2D": {"categories": [{"name": "cat"}], "isTracking": False},
    "INSTANCE_MASK": {"description": "instances", "categories": []},
}


# The TensorBay face's fixtures: its settings on SQLite and on PostgreSQL, its container.
settings = tensorbay_tests.settings
container = tensorbay_tests.container


@pytest.fixture
def clients(container: Container) -> tuple[TestClient, TestClient]:
    """Bayport's API and the TensorBay face, as one workspace's key."""
    with container.db.uow() as uow:
        _, key = workspaces.create_workspace(uow.session, name="alice")
        uow.commit()
    api = TestClient(create_app(container), base_url="https://testserver")
    api.headers["Authorization"] = f"Bearer {key}"
    tb = TestClient(create_app(container), base_url="https://testserver")
    tb.headers["X-Token"] = f"ACCESSKEY-{key}"
    return api, tb


def _ok(response: Any) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


def _dataset(api: TestClient, tb: TestClient, name: str) -> tuple[str, int]:
    """A dataset made through Bayport's API, its id and an open draft from the TensorBay face."""
    _ok(api.post("/v1/datasets", json={"name": name}))
    found = _ok(tb.get(f"{TB}/datasets", params={"name": name}))["datasets"]
    dataset_id = found[0]["id"]
    number = _ok(tb.post(f"{TB}/datasets/{dataset_id}/drafts", json={"title": "d"}))
    return dataset_id, number["draftNumber"]


def _read_both(api: TestClient, tb: TestClient, name: str, dataset_id: str) -> tuple[Any, Any]:
    through_api = _ok(api.get(f"/v1/datasets/{name}/catalog"))
    through_tb = _ok(tb.get(f"{TB}/datasets/{dataset_id}/labels/catalogs"))["catalog"]
    return through_api, through_tb


def test_a_catalog_set_through_one_face_reads_back_identically_through_the_other(
    clients: tuple[TestClient, TestClient],
) -> None:
    api, tb = clients
    a_id, _ = _dataset(api, tb, "ViaApi")
    b_id, b_draft = _dataset(api, tb, "ViaTensorBay")

    answered = _ok(api.put("/v1/datasets/ViaApi/catalog", json=SENT))
    _ok(
        tb.put(
            f"{TB}/datasets/{b_id}/labels/catalogs",
            json={"catalog": SENT, "draftNumber": b_draft},
        )
    )

    set_via_api = _read_both(api, tb, "ViaApi", a_id)
    set_via_tb = _read_both(api, tb, "ViaTensorBay", b_id)
    assert answered == set_via_api[0]  # the PUT answers the catalog as stored
    assert set_via_api[0] == set_via_api[1] == set_via_tb[0] == set_via_tb[1] == STORED


def test_both_faces_list_and_get_the_same_datasets(
    clients: tuple[TestClient, TestClient],
) -> None:
    api, tb = clients
    _ok(tb.post(f"{TB}/datasets", json={"name": "Made-by-TensorBay"}))
    _ok(api.post("/v1/datasets", json={"name": "Made-by-Bayport"}))
    listed_api = [d["name"] for d in _ok(api.get("/v1/datasets"))]
    page = _ok(tb.get(f"{TB}/datasets"))
    assert listed_api == [d["name"] for d in page["datasets"]]
    assert page["totalCount"] == 2 and sorted(listed_api) == listed_api
    second = _ok(tb.get(f"{TB}/datasets", params={"offset": 1, "limit": 1}))
    assert [d["name"] for d in second["datasets"]] == [listed_api[1]]
    assert (second["totalCount"], second["recordSize"]) == (2, 1)
    for entry in page["datasets"]:
        got = _ok(tb.get(f"{TB}/datasets/{entry['id']}"))
        assert got == entry
        assert _ok(api.get(f"/v1/datasets/{entry['name']}"))["name"] == entry["name"]


def _registered_draft(
    tb: TestClient, container: Container, tmp_path: Path, objects: int
) -> tuple[str, str, int]:
    """The workspace id, a dataset on a local folder and an open draft into which `objects`
    files of that folder are registered (not imported yet: the queue runs when drained)."""
    key = tb.headers["X-Token"].removeprefix("ACCESSKEY-")
    with container.db.uow() as uow:
        workspace_id = str(workspaces.workspace_id_for_key(uow.session, key=key))
    folder = tmp_path / "allowed" / workspace_id / "bucket"
    folder.mkdir(parents=True)
    for i in range(objects):
        (folder / f"{i}.png").write_bytes(b"png%d" % i)
    config = {"name": "disk", "filePath": str(folder), "endpoint": "10.0.0.1"}
    _ok(tb.post(f"{TB}/storage-configs/local", json=config))
    dataset_id = _ok(tb.post(f"{TB}/datasets", json={"name": "Cats", "configName": "disk"}))["id"]
    ds = f"{TB}/datasets/{dataset_id}"
    number = _ok(tb.post(f"{ds}/drafts", json={"title": "d"}))["draftNumber"]
    _ok(tb.post(f"{ds}/segments", json={"name": "train", "draftNumber": number}))
    for i in range(objects):
        body = {
            "segmentName": "train",
            "objects": [{"cloudPath": f"{i}.png", "remotePath": f"{i}.png"}],
            "draftNumber": number,
        }
        _ok(tb.put(f"{ds}/multi/cloud-callback", json=body))
    return workspace_id, dataset_id, number


def _commit(
    container: Container, workspace_id: str, dataset_id: str, number: int, wait: float
) -> drafts.Committed:
    return asyncio.run(
        drafts.commit_draft(
            container.ctx,
            workspace_id=workspace_id,
            dataset_id=dataset_id,
            draft_number=number,
            title="first",
            wait_seconds=wait,
        )
    )


def test_a_commit_waits_for_its_draft_to_be_imported_then_commits(
    clients: tuple[TestClient, TestClient], container: Container, tmp_path: Path
) -> None:
    _, tb = clients
    workspace_id, dataset_id, number = _registered_draft(tb, container, tmp_path, 3)
    queue = container.ctx.enqueue
    assert isinstance(queue, InlineQueue)

    def import_later() -> None:  # the workers, a moment after the commit began to wait
        time.sleep(0.5)
        queue.drain(container.ctx)

    worker = threading.Thread(target=import_later)
    began = time.monotonic()
    worker.start()
    committed = _commit(container, workspace_id, dataset_id, number, wait=20)
    took = time.monotonic() - began
    worker.join()

    assert 0.5 <= took < 10, took  # it waited for the import, not for the whole deadline
    assert (committed.jobs, committed.failed_objects) == (1, 0)
    with container.db.uow() as uow:
        dataset = uow.session.get(Dataset, dataset_id)
        draft = drafts_q.get_draft(uow.session, dataset_id=dataset_id, number=number)
        assert dataset is not None and dataset.head_commit_id == committed.commit_id
        assert draft is not None and draft.status == "COMMITTED"


def test_a_commit_whose_draft_is_still_importing_at_the_deadline_is_refused(
    clients: tuple[TestClient, TestClient], container: Container, tmp_path: Path
) -> None:
    _, tb = clients
    workspace_id, dataset_id, number = _registered_draft(tb, container, tmp_path, 2)
    began = time.monotonic()
    with pytest.raises(drafts.DraftImporting) as refused:
        _commit(container, workspace_id, dataset_id, number, wait=0.6)
    took = time.monotonic() - began
    assert 0.6 <= took < 3, took  # the deadline, and the last look made at it
    assert refused.value.retry_after == drafts.RETRY_AFTER_WAIT
    assert "2 objects waiting" in refused.value.message
