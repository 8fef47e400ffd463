"""The TensorBay-compatible API over HTTP, request by request as the tensorbay SDK sends them
(docs/tensorbay-open-api.md), on a real SQLite DB and a local folder config; the queue runs
inline. The SDK itself runs against a served Bayport in tests/e2e/test_tensorbay_sdk.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from bayport.settings import Settings
from bootstrap import Container, build_container
from metadata.db import migrate
from metadata.models import DraftObject, ImportJob, LedgerEntry
from metadata.queries import workspaces
from tests.conftest import make_settings
from tests.support import InlineQueue

BASE = "/gatewayv2/tensorbay-open-api/v1"
ROOT = "0" * 32
CATALOG = {"CLASSIFICATION": {"categories": [{"name": "cat"}, {"name": "dog"}]}}


@pytest.fixture
def folder(tmp_path: Path, tb: TestClient, container: Container) -> Path:
    """A folder of tb's workspace: inside its own sub-folder of BAYPORT_LOCAL_ROOTS."""
    key = tb.headers["X-Token"].removeprefix("ACCESSKEY-")
    with container.db.uow() as uow:
        workspace_id = workspaces.workspace_id_for_key(uow.session, key=key)
    root = tmp_path / "allowed" / str(workspace_id) / "bucket"
    for i in range(5):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / f"{i:05d}.png").write_bytes(b"png%d" % i * (100 + i))
    return root


@pytest.fixture(params=["sqlite", "postgres"])
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, object] = {
        "local_roots": [str(tmp_path / "allowed")],
        "commit_wait_seconds": 0,
    }
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_database")
    return make_settings(tmp_path / "bayport", **overrides)


@pytest.fixture
def container(settings: Settings) -> Iterator[Container]:
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    yield container
    container.db.dispose()


def _key(container: Container, name: str) -> str:
    with container.db.uow() as uow:
        _, key = workspaces.create_workspace(uow.session, name=name)
        uow.commit()
    return key


@pytest.fixture
def tb(container: Container) -> TestClient:
    c = TestClient(create_app(container), base_url="https://testserver")
    c.headers["X-Token"] = f"ACCESSKEY-{_key(container, 'alice')}"
    return c


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text  # the SDK's test of success
    body: dict[str, Any] = response.json()
    return body


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    message: str = body["message"]
    return message


def _drain(container: Container) -> None:
    queue = container.ctx.enqueue
    assert isinstance(queue, InlineQueue)
    queue.drain(container.ctx)


def _setup_dataset(tb: TestClient, folder: Path) -> str:
    _ok(
        tb.post(
            f"{BASE}/storage-configs/local",
            json={"name": "disk", "filePath": str(folder), "endpoint": "10.0.0.1"},
        )
    )
    dataset_id = _ok(
        tb.post(
            f"{BASE}/datasets",
            json={"name": "Cats", "type": 0, "alias": "", "isPublic": False, "configName": "disk"},
        )
    )["id"]
    return str(dataset_id)


def test_errors_are_tensorbay_codes(tb: TestClient, container: Container) -> None:
    anonymous = TestClient(create_app(container))
    _error(anonymous.get(f"{BASE}/datasets"), 401, "Unauthorized")
    _error(
        anonymous.get(f"{BASE}/datasets", headers={"X-Token": "ACCESSKEY-nope"}),
        401,
        "Unauthorized",
    )
    _error(tb.get(f"{BASE}/datasets/nope"), 404, "ResourceNotExist")
    # What the SDK can ask that Bayport does not serve is said so, in TensorBay's shape.
    for method, path, status, code in (
        ("DELETE", "/datasets/nope", 405, "InvalidParamsValue"),  # gas.delete_dataset
        ("GET", "/no/such/thing", 404, "ResourceNotExist"),
    ):
        message = _error(tb.request(method, BASE + path), status, code)
        assert message.startswith(f"Bayport does not serve {method} {BASE}{path}")
    _error(
        tb.post(f"{BASE}/datasets", json={"name": "X", "configName": "nope"}),
        404,
        "ResourceNotExist",
    )
    message = _error(tb.post(f"{BASE}/datasets", json={"type": 0}), 400, "RequestParamsMissing")
    assert "name" in message
    secret = "very-secret-value-123"
    s3 = {
        "name": "s3",
        "filePath": "",
        "endpoint": "http://127.0.0.1:9",
        "accesskeyId": "AKID",
        "accesskeySecret": secret,
    }
    message = _error(tb.post(f"{BASE}/storage-configs/s3", json=s3), 400, "RequestParamsMissing")
    assert "bucketName" in message and secret not in message
    message = _error(
        tb.post(f"{BASE}/storage-configs/s3", json={**s3, "bucketName": "x"}),
        400,
        "InvalidParamsValue",
    )
    assert "bucketName" in message and secret not in message  # too short: 3 to 63
    _error(tb.post(f"{BASE}/storage-configs/ftp", json={"name": "f"}), 400, "InvalidParamsValue")


def test_storage_configs_and_cloud_files(
    tb: TestClient, folder: Path, container: Container
) -> None:
    _ok(
        tb.post(
            f"{BASE}/storage-configs/local",
            json={"name": "disk", "filePath": str(folder), "endpoint": "10.0.0.1"},
        )
    )
    _ok(
        tb.post(
            f"{BASE}/storage-configs/local",
            json={"name": "disk2", "filePath": str(folder), "endpoint": "10.0.0.1"},
        )
    )
    _error(
        tb.post(
            f"{BASE}/storage-configs/local",
            json={"name": "disk", "filePath": str(folder), "endpoint": "x"},
        ),
        409,
        "NameConflict",
    )
    listed = _ok(tb.get(f"{BASE}/storage-configs", params={"offset": 0, "limit": 128}))
    assert listed["totalCount"] == 2
    assert {c["name"] for c in listed["configs"]} == {"disk", "disk2"}
    assert all(
        {"name", "filePath", "type", "isGravitiStorage"} <= set(c) for c in listed["configs"]
    )
    one = _ok(tb.get(f"{BASE}/storage-configs", params={"offset": 0, "limit": 128, "name": "disk"}))
    assert [c["name"] for c in one["configs"]] == ["disk"] and one["totalCount"] == 1
    _ok(tb.delete(f"{BASE}/storage-configs/disk2"))
    _error(tb.delete(f"{BASE}/storage-configs/disk2"), 404, "ResourceNotExist")

    # The listing, page by page as list_auth_data walks it.
    files: list[str] = []
    marker = None
    pages = 0
    while True:
        params = {"prefix": "images/", "limit": 2, **({"marker": marker} if marker else {})}
        page = _ok(tb.get(f"{BASE}/cloud/disk/files", params=params))
        files += page["cloudFiles"]
        pages += 1
        if not page["truncated"]:
            break
        marker = page["nextMarker"]
    assert files == [f"images/{i:05d}.png" for i in range(5)] and pages == 3

    url = _ok(tb.get(f"{BASE}/cloud/disk/files/urls", params={"filePath": "images/00003.png"}))[
        "url"
    ]
    assert url.startswith("https://testserver/gatewayv2/tensorbay-open-api/v1/_files/")
    fetched = TestClient(create_app(container)).get(url)  # no X-Token: the URL is the permission
    assert (
        fetched.status_code == 200 and fetched.content == (folder / "images/00003.png").read_bytes()
    )
    tampered = url[:-6] + ("AAAAAA" if not url.endswith("AAAAAA") else "BBBBBB")
    _error(TestClient(create_app(container)).get(tampered), 403, "AccessDenied")


def _upload(tb: TestClient, dataset_id: str, objects: list[dict[str, Any]]) -> int:
    """upload_dataset's requests for one segment "train"; returns the draft number."""
    ds = f"{BASE}/datasets/{dataset_id}"
    drafts = _ok(
        tb.get(
            f"{ds}/drafts",
            params={"offset": 0, "limit": 128, "status": "OPEN", "branchName": "main"},
        )
    )
    assert drafts == {"drafts": [], "offset": 0, "recordSize": 0, "totalCount": 0}
    number = _ok(
        tb.post(
            f"{ds}/drafts",
            json={"branchName": "main", "title": 'Draft autogenerated by "GAS.upload_dataset"'},
        )
    )["draftNumber"]
    assert number == 1
    _ok(tb.put(f"{ds}/labels/catalogs", json={"catalog": CATALOG, "draftNumber": number}))
    _ok(
        tb.patch(
            f"{ds}/notes",
            json={"isContinuous": False, "binPointCloudFields": None, "draftNumber": number},
        )
    )
    segments = _ok(
        tb.get(f"{ds}/segments", params={"draftNumber": number, "offset": 0, "limit": 128})
    )
    assert segments["segments"] == []
    _ok(tb.post(f"{ds}/segments", json={"name": "train", "draftNumber": number}))
    for obj in objects:  # one call per AuthData, as the SDK makes them
        body = {
            "segmentName": "train",
            "objects": [obj],
            "deleteSource": False,
            "draftNumber": number,
        }
        _ok(tb.put(f"{ds}/multi/cloud-callback", json=body))
    return int(number)


def _label(category: str) -> dict[str, Any]:
    return {"CLASSIFICATION": {"category": category}}


def test_upload_commit_and_read_back(tb: TestClient, folder: Path, container: Container) -> None:
    dataset_id = _setup_dataset(tb, folder)
    ds = f"{BASE}/datasets/{dataset_id}"
    detail = _ok(tb.get(ds))
    assert detail["commitId"] == ROOT and detail["defaultBranch"] == "main" and detail["type"] == 0
    assert (
        _ok(tb.get(f"{BASE}/datasets", params={"offset": 0, "limit": 128, "name": "Cats"}))[
            "datasets"
        ][0]["id"]
        == dataset_id
    )

    objects = [
        {
            "cloudPath": f"images/{i:05d}.png",
            "remotePath": f"{i:05d}.png",
            "label": _label("cat" if i % 2 else "dog"),
        }
        for i in range(4)
    ]
    objects.append({"cloudPath": "images/00004.png", "remotePath": "renamed/four.png"})  # no label
    objects.append(
        {"cloudPath": "images/missing.png", "remotePath": "missing.png", "label": _label("cat")}
    )
    objects.append(
        {"cloudPath": "images/00001.png", "remotePath": "bird.png", "label": _label("bird")}
    )
    # A retried call (the SDK retries a PUT on 5xx) registers the object once.
    objects.append(objects[0])
    number = _upload(tb, dataset_id, objects)

    with container.db.uow() as uow:
        waiting = uow.session.exec(select(DraftObject)).all()
    assert len(waiting) == 7 and all(o.job_id is None for o in waiting)  # stored, not yet imported

    # Nothing imported yet: the commit waits (here 0 s) and asks to be retried.
    response = tb.post(
        f"{ds}/commits", json={"title": "first", "draftNumber": number, "description": "d"}
    )
    _error(response, 503, "DraftImporting")
    assert response.headers["Retry-After"] == "5"

    _drain(container)
    with container.db.uow() as uow:
        jobs = uow.session.exec(select(ImportJob)).all()
        entries = {e.remote_path: e for e in uow.session.exec(select(LedgerEntry)).all()}
    # One job for all the calls of the segment (they came before a worker gathered them).
    assert len(jobs) == 1 and jobs[0].in_place and jobs[0].state == "partially_failed"
    assert jobs[0].manifest["source"]["draft"] == number
    assert jobs[0].registered == 5 and jobs[0].failed == 2 and jobs[0].copied == 0
    assert entries["renamed/four.png"].source_key == "images/00004.png"
    assert entries["renamed/four.png"].dest_key == "images/00004.png"  # in place: not moved
    assert (
        entries["missing.png"].outcome == "failed"
        and entries["missing.png"].error_code == "not_found"
    )
    assert entries["bird.png"].outcome == "failed" and "bird" in (
        entries["bird.png"].error_message or ""
    )
    assert (
        entries["00001.png"].label == _label("cat")
        and entries["00001.png"].size == (folder / "images/00001.png").stat().st_size
    )

    commit = _ok(
        tb.post(f"{ds}/commits", json={"title": "first", "draftNumber": number, "description": "d"})
    )
    commit_id = commit["commitId"]
    assert len(commit_id) == 32 and commit_id != ROOT and commit["failedObjects"] == 2
    assert _ok(tb.get(ds))["commitId"] == commit_id
    assert (
        _ok(tb.get(f"{ds}/drafts", params={"status": "OPEN", "branchName": "main"}))["totalCount"]
        == 0
    )
    committed = _ok(tb.get(f"{ds}/drafts", params={"status": "COMMITTED"}))["drafts"][0]
    assert committed["number"] == number and committed["status"] == "COMMITTED"
    _error(
        tb.post(f"{ds}/commits", json={"title": "again", "draftNumber": number}),
        400,
        "InvalidParamsValue",
    )
    history = _ok(tb.get(f"{ds}/commits", params={"offset": 0, "limit": 128}))
    assert [c["commitId"] for c in history["commits"]] == [commit_id]
    assert history["commits"][0]["title"] == "first"

    # Read back, as iterating a Dataset does: segments, then data/details page by page.
    at = {"commit": commit_id}
    segments = _ok(tb.get(f"{ds}/segments", params={**at, "offset": 0, "limit": 128}))
    assert segments["segments"] == [{"name": "train", "description": ""}]
    details: list[dict[str, Any]] = []
    for offset in (0, 2, 4):
        page = _ok(
            tb.get(
                f"{ds}/data/details",
                params={"segmentName": "train", "offset": offset, "limit": 2, **at},
            )
        )
        assert page["totalCount"] == 5
        assert len(page["dataDetails"]) == (
            2 if offset < 4 else 1
        )  # exact pages: the SDK indexes by them
        details += page["dataDetails"]
    assert [d["remotePath"] for d in details] == [
        "00000.png",
        "00001.png",
        "00002.png",
        "00003.png",
        "renamed/four.png",
    ]
    assert details[1]["label"] == _label("cat") and details[4]["label"] == {}
    raw = TestClient(create_app(container)).get(details[4]["url"])
    assert raw.status_code == 200 and raw.content == (folder / "images/00004.png").read_bytes()
    one = _ok(
        tb.get(
            f"{ds}/data/details", params={"segmentName": "train", "remotePath": "00002.png", **at}
        )
    )
    assert [d["remotePath"] for d in one["dataDetails"]] == ["00002.png"]
    paths = _ok(
        tb.get(f"{ds}/data", params={"segmentName": "train", "offset": 0, "limit": 128, **at})
    )
    assert len(paths["data"]) == 5 and paths["totalCount"] == 5
    urls = _ok(
        tb.get(f"{ds}/data/urls", params={"segmentName": "train", "offset": 0, "limit": 128, **at})
    )
    assert len(urls["urls"]) == 5
    assert _ok(tb.get(f"{ds}/labels/catalogs", params=at))["catalog"] == CATALOG
    assert _ok(tb.get(f"{ds}/notes", params=at))["isContinuous"] is False
    stats = _ok(tb.get(f"{ds}/labels/statistics", params=at))["labelStatistics"]
    assert stats == {
        "CLASSIFICATION": {
            "quantity": 4,
            "categories": [{"name": "cat", "quantity": 2}, {"name": "dog", "quantity": 2}],
        }
    }

    # A second draft, committed: the first commit is no longer the latest.
    number2 = _ok(tb.post(f"{ds}/drafts", json={"branchName": "main", "title": "more"}))[
        "draftNumber"
    ]
    assert number2 == 2
    body = {
        "segmentName": "train",
        "objects": [{"cloudPath": "images/00003.png", "remotePath": "again.png"}],
        "deleteSource": False,
        "draftNumber": number2,
    }
    _ok(tb.put(f"{ds}/multi/cloud-callback", json=body))
    _drain(container)
    second = _ok(tb.post(f"{ds}/commits", json={"title": "second", "draftNumber": number2}))[
        "commitId"
    ]
    assert (
        _ok(tb.get(f"{ds}/data", params={"segmentName": "train", "commit": second}))["totalCount"]
        == 6
    )
    message = _error(
        tb.get(f"{ds}/data", params={"segmentName": "train", "commit": commit_id}),
        400,
        "InvalidParamsValue",
    )
    assert "latest" in message
    _error(
        tb.get(f"{ds}/data", params={"segmentName": "train", "commit": "f" * 32}),
        404,
        "ResourceNotExist",
    )
    history = _ok(tb.get(f"{ds}/commits"))["commits"]
    assert [c["commitId"] for c in history] == [second, commit_id] and history[0][
        "parentCommitId"
    ] == commit_id


def test_registration_is_refused_where_it_cannot_be_imported(tb: TestClient, folder: Path) -> None:
    dataset_id = _setup_dataset(tb, folder)
    ds = f"{BASE}/datasets/{dataset_id}"
    body: dict[str, Any] = {
        "segmentName": "train",
        "objects": [{"cloudPath": "images/00000.png", "remotePath": "a.png"}],
        "deleteSource": False,
        "draftNumber": 1,
    }
    _error(tb.put(f"{ds}/multi/cloud-callback", json=body), 404, "ResourceNotExist")  # no draft 1
    _ok(tb.post(f"{ds}/drafts", json={"branchName": "main", "title": "t"}))
    _error(tb.put(f"{ds}/multi/cloud-callback", json=body), 404, "ResourceNotExist")  # no segment
    _ok(tb.post(f"{ds}/segments", json={"name": "train", "draftNumber": 1}))
    bad = json.loads(json.dumps(body))
    bad["objects"][0]["remotePath"] = "../escape.png"
    assert "remotePath" in _error(
        tb.put(f"{ds}/multi/cloud-callback", json=bad), 400, "InvalidParamsValue"
    )
    twice = {**body, "objects": body["objects"] + [{"cloudPath": "b.png", "remotePath": "a.png"}]}
    assert "objects[1].remotePath 'a.png' is also objects[0]'s" in _error(
        tb.put(f"{ds}/multi/cloud-callback", json=twice), 400, "InvalidParamsValue"
    )
    bad = {**body, "deleteSource": True}
    assert "deleteSource" in _error(
        tb.put(f"{ds}/multi/cloud-callback", json=bad), 400, "InvalidParamsValue"
    )
    _error(
        tb.post(f"{ds}/drafts", json={"branchName": "dev", "title": "t"}), 400, "InvalidParamsValue"
    )
    # A dataset in Bayport's own storage holds no cloud files to register.
    own = _ok(tb.post(f"{BASE}/datasets", json={"name": "Own", "type": 0}))["id"]
    _ok(tb.post(f"{BASE}/datasets/{own}/drafts", json={"branchName": "main", "title": "t"}))
    _ok(tb.post(f"{BASE}/datasets/{own}/segments", json={"name": "train", "draftNumber": 1}))
    assert "configName" in _error(
        tb.put(f"{BASE}/datasets/{own}/multi/cloud-callback", json=body), 400, "InvalidParamsValue"
    )
    _error(
        tb.post(f"{BASE}/datasets", json={"name": "Fusion", "type": 1}), 400, "InvalidParamsValue"
    )


def test_concurrent_registrations_are_each_held_once(
    tb: TestClient, folder: Path, container: Container
) -> None:
    """The SDK's 8 threads: every call stored, one gathering queued, one job for them all."""
    dataset_id = _setup_dataset(tb, folder)
    ds = f"{BASE}/datasets/{dataset_id}"
    _ok(tb.post(f"{ds}/drafts", json={"branchName": "main", "title": "t"}))
    _ok(tb.post(f"{ds}/segments", json={"name": "train", "draftNumber": 1}))
    headers = dict(tb.headers)

    def register(i: int) -> int:
        client = TestClient(create_app(container), base_url="https://testserver")
        client.headers.update(headers)
        body = {
            "segmentName": "train",
            "objects": [{"cloudPath": f"images/{i % 5:05d}.png", "remotePath": f"{i:03d}.png"}],
            "deleteSource": False,
            "draftNumber": 1,
        }
        return client.put(f"{ds}/multi/cloud-callback", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(register, [i % 40 for i in range(60)]))  # 20 sent twice
    assert statuses == [200] * 60
    queue = container.ctx.enqueue
    assert isinstance(queue, InlineQueue)
    assert [kind for kind, _ in queue.tasks] == ["gather"]
    with container.db.uow() as uow:  # a name sent twice waits once, with no lock between
        waiting = uow.session.exec(select(DraftObject)).all()
    assert sorted(o.remote_path for o in waiting) == [f"{i:03d}.png" for i in range(40)]
    _drain(container)
    with container.db.uow() as uow:
        jobs = uow.session.exec(select(ImportJob)).all()
        names = sorted(e.remote_path for e in uow.session.exec(select(LedgerEntry)).all())
    assert len(jobs) == 1 and jobs[0].registered == 40 and jobs[0].failed == 0
    assert names == [f"{i:03d}.png" for i in range(40)]
    assert _ok(tb.post(f"{ds}/commits", json={"title": "c", "draftNumber": 1}))["commitId"]


def _register_one(tb: TestClient, ds: str, number: int, name: str) -> None:
    body = {
        "segmentName": "train",
        "objects": [{"cloudPath": "images/00000.png", "remotePath": name}],
        "deleteSource": False,
        "draftNumber": number,
    }
    _ok(tb.put(f"{ds}/multi/cloud-callback", json=body))


def test_a_closed_draft_drops_what_waits_and_takes_no_more(
    tb: TestClient, folder: Path, container: Container
) -> None:
    dataset_id = _setup_dataset(tb, folder)
    ds = f"{BASE}/datasets/{dataset_id}"
    _ok(tb.post(f"{ds}/drafts", json={"branchName": "main", "title": "t"}))
    _ok(tb.post(f"{ds}/segments", json={"name": "train", "draftNumber": 1}))
    _register_one(tb, ds, 1, "a.png")
    _ok(tb.patch(f"{ds}/drafts/1", json={"title": "renamed", "description": "why"}))
    _ok(tb.patch(f"{ds}/drafts/1", json={"status": "CLOSED"}))
    closed = _ok(tb.get(f"{ds}/drafts", params={"status": "CLOSED"}))["drafts"]
    assert [(d["number"], d["title"], d["description"]) for d in closed] == [(1, "renamed", "why")]
    body = {
        "segmentName": "train",
        "objects": [{"cloudPath": "images/00001.png", "remotePath": "b.png"}],
        "deleteSource": False,
        "draftNumber": 1,
    }
    assert "CLOSED" in _error(
        tb.put(f"{ds}/multi/cloud-callback", json=body), 400, "InvalidParamsValue"
    )
    _error(
        tb.post(f"{ds}/commits", json={"title": "c", "draftNumber": 1}), 400, "InvalidParamsValue"
    )
    _drain(container)  # the queued gathering finds nothing
    with container.db.uow() as uow:
        assert uow.session.exec(select(ImportJob)).all() == []
        assert uow.session.exec(select(DraftObject)).all() == []


def test_a_lost_gathering_is_sent_again_by_the_recovery_sweep(
    tb: TestClient, folder: Path, container: Container
) -> None:
    from datetime import timedelta

    from importer import recovery
    from metadata.models import utcnow

    dataset_id = _setup_dataset(tb, folder)
    ds = f"{BASE}/datasets/{dataset_id}"
    _ok(tb.post(f"{ds}/drafts", json={"branchName": "main", "title": "t"}))
    _ok(tb.post(f"{ds}/segments", json={"name": "train", "draftNumber": 1}))
    _register_one(tb, ds, 1, "a.png")
    queue = container.ctx.enqueue
    assert isinstance(queue, InlineQueue)
    queue.tasks.clear()  # the broker lost the gathering's message
    _register_one(tb, ds, 1, "b.png")
    assert not queue.tasks  # a gathering is (thought to be) queued: none is sent
    assert not recovery.sweep(container.ctx, broker_idle=True)  # not stale yet
    later = utcnow() + timedelta(hours=1)
    report = recovery.sweep(container.ctx, broker_idle=True, now=later)
    assert report.gatherings == 1 and [kind for kind, _ in queue.tasks] == ["gather"]
    assert not recovery.sweep(container.ctx, broker_idle=True, now=later)  # sent once
    _drain(container)
    with container.db.uow() as uow:
        jobs = uow.session.exec(select(ImportJob)).all()
    assert len(jobs) == 1 and jobs[0].registered == 2


def test_a_submitted_manifest_cannot_claim_a_draft(tb: TestClient, container: Container) -> None:
    client = TestClient(create_app(container))
    client.headers["Authorization"] = "Bearer " + str(tb.headers["X-Token"]).removeprefix(
        "ACCESSKEY-"
    )
    manifest = {"dataset": "Cats", "source": {"config_name": "disk", "draft": 1}}
    response = client.post("/v1/imports", json=manifest)
    assert response.status_code == 422 and response.json()["field"] == "source.draft"
