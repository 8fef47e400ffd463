"""Local storage (issue 20, item 4): a workspace's `local` configs reach only its own folders
(`<root>/<workspace id>/` of BAYPORT_LOCAL_ROOTS), never Bayport's own files, and no symlink
planted in a folder is followed. Two workspaces drive the HTTP API (Bayport's and the
TensorBay one); a secret file outside every root stands for what an attacker is after."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from bayport.settings import SettingsError
from bootstrap import Container, build_container
from metadata.db import migrate
from metadata.models import StorageConfig
from metadata.queries import storage_configs
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.local import LocalStore
from tests.conftest import make_settings
from tests.support import InlineQueue, new_workspace

TB = "/gatewayv2/tensorbay-open-api/v1"
NO_CHECK = {"verify": "false"}
SECRET = b"TOP SECRET: not for any workspace"
ALICE_DATA = b"alice's own photo"


@dataclass
class Tenant:
    id: str
    api: TestClient  # Bayport's API, as this workspace
    tb: TestClient  # the TensorBay API, as this workspace
    folder: Path  # <root>/<workspace id>: where its local configs may lie


@dataclass
class World:
    tmp: Path
    container: Container
    queue: InlineQueue
    alice: Tenant
    bob: Tenant
    secret: Path  # outside every root


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = make_settings(tmp_path / "bayport", local_roots=[str(tmp_path / "roots")])
    migrate(settings.resolved_database_url)
    queue = InlineQueue()
    container = build_container(settings, enqueuer=queue)
    app = create_app(container)
    tenants = []
    for name in ("alice", "bob"):
        workspace, key = new_workspace(container, name)
        api = TestClient(app)
        api.headers["Authorization"] = f"Bearer {key}"
        tb = TestClient(app, base_url="https://testserver")
        tb.headers["X-Token"] = f"ACCESSKEY-{key}"
        folder = tmp_path / "roots" / workspace.id
        tenants.append(Tenant(workspace.id, api, tb, folder))
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    alice_photos = tenants[0].folder / "photos"
    alice_photos.mkdir(parents=True)
    (alice_photos / "a.png").write_bytes(ALICE_DATA)
    (tenants[1].folder / "mine").mkdir(parents=True)
    (tenants[1].folder / "mine" / "a.png").write_bytes(b"bob's photo")
    yield World(tmp_path, container, queue, tenants[0], tenants[1], secret)
    container.db.dispose()


def _local(name: str, folder: Path | str) -> dict[str, Any]:
    return {"name": name, "provider": "local", "bucket_name": str(folder)}


def _create(tenant: Tenant, name: str, folder: Path) -> None:
    r = tenant.api.post("/v1/storage-configs", json=_local(name, folder))
    assert r.status_code == 201, r.text


def _config(world: World, tenant: Tenant, name: str) -> StorageConfig:
    with world.container.db.uow() as uow:
        config = storage_configs.get_config(uow.session, workspace_id=tenant.id, name=name)
    assert config is not None
    return config


def _repoint(world: World, tenant: Tenant, name: str, folder: Path | str) -> None:
    """The config row changed behind the API's back (by hand, or a restore of old rows)."""
    with world.container.db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE storage_config SET bucket_name = :f WHERE workspace_id = :w AND name = :n"
            ),
            {"f": str(folder), "w": tenant.id, "n": name},
        )


def _file_url(tenant: Tenant, config: str, key: str) -> str:
    r = tenant.tb.get(f"{TB}/cloud/{config}/files/urls", params={"filePath": key})
    assert r.status_code == 200, r.text
    url: str = r.json()["url"]
    return url


# -- one workspace cannot name another's folder (nor anything outside its own) -----------


def test_sec_local_a_config_may_name_only_the_workspaces_own_folder(world: World) -> None:
    alice, bob = world.alice, world.bob
    _create(alice, "photos", alice.folder / "photos")
    assert _config(world, alice, "photos").bucket_name == str(alice.folder / "photos")
    # Bob's attempts at Alice's folder, at the root above both, at anything else.
    attempts: list[Path | str] = [
        alice.folder / "photos",  # exists
        alice.folder / "no-such-folder",  # does not: the same answer
        alice.folder,
        bob.folder / ".." / alice.id / "photos",
        world.tmp / "roots",
        world.tmp / "bayport",  # the data dir: secret.key, the DB
        "/etc",
        "photos",
    ]
    details = set()
    for folder in attempts:
        r = bob.api.post("/v1/storage-configs", params=NO_CHECK, json=_local("x", folder))
        assert r.status_code == 422, (folder, r.text)
        (error,) = r.json()["detail"]
        assert error["loc"] == ["body", "local", "bucket_name"]
        assert "BAYPORT_LOCAL_ROOTS" in error["msg"] and str(bob.folder) in error["msg"]
        assert alice.id not in error["msg"]
        details.add(error["msg"])
    assert len(details) == 1  # whether Alice's folder exists or not: nothing to tell apart
    r = bob.api.post("/v1/storage-configs", json=_local("x", f"{bob.folder}/a\0b"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "bucket_name"
    # A symlink in Bob's own folder to Alice's (planted by whoever can write there).
    (bob.folder / "escape").symlink_to(alice.folder / "photos")
    r = bob.api.post(
        "/v1/storage-configs", params=NO_CHECK, json=_local("x", bob.folder / "escape")
    )
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] in details
    # The TensorBay API refuses it too, naming the SDK's field (filePath).
    r = bob.tb.post(
        f"{TB}/storage-configs/local",
        json={"name": "x", "filePath": str(alice.folder / "photos"), "endpoint": "10.0.0.1"},
    )
    assert r.status_code == 422 and "filePath" in r.json()["message"], r.text
    assert bob.api.get("/v1/storage-configs").json() == []
    # Bob's own folder is his to use.
    r = bob.api.post("/v1/storage-configs", json=_local("mine", bob.folder / "mine"))
    assert r.status_code == 201, r.text


# -- ... nor read, overwrite or delete its objects through an import or a _files URL ------


def test_sec_local_a_config_moved_onto_another_workspaces_folder_reaches_nothing(
    world: World,
) -> None:
    alice, bob = world.alice, world.bob
    _create(bob, "mine", bob.folder / "mine")
    url = _file_url(bob, "mine", "a.png")  # minted while the config was Bob's own
    assert bob.tb.get(url).content == b"bob's photo"
    _repoint(world, bob, "mine", alice.folder / "photos")
    # The _files URL minted before, and new ones: Alice's bytes never come out.
    r = bob.tb.get(url)
    assert r.status_code == 403 and ALICE_DATA not in r.content, r.text
    r = bob.tb.get(f"{TB}/cloud/mine/files/urls", params={"filePath": "a.png"})
    assert r.status_code == 403, r.text
    r = bob.tb.get(f"{TB}/cloud/mine/files", params={"prefix": ""})
    assert r.status_code >= 400 and "a.png" not in r.text
    # An import with move (which deletes each source object once copied) from it.
    assert bob.api.post("/v1/datasets", json={"name": "Stolen"}).status_code == 201
    r = bob.api.post(
        "/v1/imports",
        json={"dataset": "Stolen", "source": {"config_name": "mine"}, "options": {"move": True}},
    )
    assert r.status_code == 202, r.text
    world.queue.drain(world.container.ctx)
    job = bob.api.get(f"/v1/imports/{r.json()['id']}").json()
    assert job["state"] == "failed" and "folder refused" in str(job), job
    assert (alice.folder / "photos" / "a.png").read_bytes() == ALICE_DATA  # not deleted
    stored = [p for p in (world.tmp / "bayport" / "storage").rglob("*") if p.is_file()]
    assert stored == []  # nothing of Alice's copied into Bob's dataset
    # An import INTO a dataset on it (overwrite always) from Bob's other, good folder.
    (bob.folder / "good").mkdir()
    (bob.folder / "good" / "a.png").write_bytes(b"overwritten by bob")
    _create(bob, "good", bob.folder / "good")
    r = bob.api.post("/v1/datasets", json={"name": "Into", "config_name": "mine", "path": ""})
    assert r.status_code == 201, r.text
    r = bob.api.post(
        "/v1/imports",
        json={
            "dataset": "Into",
            "source": {"config_name": "good"},
            "options": {"overwrite": "always"},
        },
    )
    assert r.status_code == 202, r.text
    world.queue.drain(world.container.ctx)
    job = bob.api.get(f"/v1/imports/{r.json()['id']}").json()
    assert job["state"] in ("failed", "partially_failed"), job
    assert (alice.folder / "photos" / "a.png").read_bytes() == ALICE_DATA  # not overwritten


def test_sec_local_a_config_row_pointing_outside_is_refused_at_open(world: World) -> None:
    alice = world.alice
    _create(alice, "photos", alice.folder / "photos")
    stores = world.container.ctx.stores
    assert stores.for_config(_config(world, alice, "photos")).head("a.png").size  # opened once
    for outside in (world.secret.parent, world.tmp / "bayport", world.tmp / "roots"):
        _repoint(world, alice, "photos", outside)
        config = _config(world, alice, "photos")
        with pytest.raises(StorageError) as caught:  # the cached store too: checked each time
            stores.for_config(config)
        error = caught.value
        assert error.kind is ErrorKind.PERMISSION_DENIED and not error.transient
        assert "'photos'" in str(error) and "folder refused" in str(error)
    # A fresh worker process (an empty cache) refuses it as well.
    fresh = build_container(world.container.settings, enqueuer=InlineQueue())
    try:
        with pytest.raises(StorageError, match="folder refused"):
            fresh.ctx.stores.for_config(config)
    finally:
        fresh.db.dispose()


# -- Bayport's own files: a root that holds them is refused ----------------------------


@pytest.mark.parametrize(
    ("roots", "overrides", "clash"),
    [
        (["."], {}, "data dir"),  # the tmp dir: holds the data dir
        (["bayport"], {}, "data dir"),
        (["bayport/storage/x"], {}, "data dir"),  # inside it
        (["roots"], {"default_storage_dir": "roots/shared-storage"}, "default storage"),
        (["store-parent"], {"default_storage_dir": "store-parent"}, "default storage"),
        (["roots", "roots/x"], {}, "the root"),  # x's folder would hold x's neighbours'
    ],
)
def test_sec_local_a_root_holding_bayports_own_files_is_refused_at_startup(
    tmp_path: Path, roots: list[str], overrides: dict[str, str], clash: str
) -> None:
    values: dict[str, object] = {k: str(tmp_path / v) for k, v in overrides.items()}
    settings = make_settings(
        tmp_path / "bayport", local_roots=[str(tmp_path / r) for r in roots], **values
    )
    migrate(settings.resolved_database_url)
    with pytest.raises(SettingsError, match="BAYPORT_LOCAL_ROOTS") as caught:
        build_container(settings, enqueuer=InlineQueue()).db.dispose()
    assert clash in str(caught.value)


def test_sec_local_a_root_holding_bayports_own_files_is_refused_at_config_create(
    world: World,
) -> None:
    """Settings changed under a running API (its startup check passed): a config in a root
    that now holds the default storage (every workspace's datasets) or the data dir is
    refused all the same, though it lies in the workspace's own folder."""
    bob = world.bob
    settings = world.container.settings
    shared = bob.folder / "datasets"
    (shared / world.alice.id).mkdir(parents=True)
    settings.default_storage_dir = shared
    for folder in (shared, shared / world.alice.id, bob.folder):
        r = bob.api.post("/v1/storage-configs", params=NO_CHECK, json=_local("x", folder))
        assert r.status_code == 422, (folder, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "local", "bucket_name"]
    settings.default_storage_dir = None
    settings.local_roots = [world.tmp]  # the data dir is below it
    (world.tmp / bob.id).mkdir()
    (world.tmp / bob.id / "data").symlink_to(world.tmp / "bayport")
    for folder in (world.tmp / bob.id / "data", world.tmp / bob.id):
        r = bob.api.post("/v1/storage-configs", params=NO_CHECK, json=_local("x", folder))
        assert r.status_code == 422, (folder, r.text)


# -- symlinks planted in a folder are neither listed, read nor written through -----------


@pytest.fixture
def planted(world: World) -> Path:
    """Alice's folder, where someone with access to it planted symlinks to outside."""
    photos = world.alice.folder / "photos"
    outside = world.secret.parent
    (outside / "dir").mkdir()
    (outside / "dir" / "inner.png").write_bytes(SECRET)
    (photos / "link.png").symlink_to(world.secret)
    (photos / "linkdir").symlink_to(outside / "dir")
    (photos / "sub").mkdir()
    (photos / "sub" / "link.png").symlink_to(world.secret)
    return photos


def _outside_files(world: World) -> dict[str, bytes]:
    root = world.secret.parent
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_sec_local_symlinks_are_not_listed_read_or_followed_through_the_api(
    world: World, planted: Path
) -> None:
    alice = world.alice
    _create(alice, "photos", planted)
    r = alice.tb.get(f"{TB}/cloud/photos/files", params={"prefix": ""})
    assert r.status_code == 200 and r.json()["cloudFiles"] == ["a.png"], r.text
    for key in ("link.png", "linkdir/inner.png", "sub/link.png"):
        r = alice.tb.get(_file_url(alice, "photos", key))
        assert r.status_code == 403 and SECRET not in r.content, (key, r.text)
    # An import of the whole folder copies its one real file.
    assert alice.api.post("/v1/datasets", json={"name": "D"}).status_code == 201
    r = alice.api.post("/v1/imports", json={"dataset": "D", "source": {"config_name": "photos"}})
    world.queue.drain(world.container.ctx)
    job = alice.api.get(f"/v1/imports/{r.json()['id']}").json()
    assert job["state"] == "succeeded", job
    stored = [p for p in (world.tmp / "bayport" / "storage").rglob("*") if p.is_file()]
    assert [p.name for p in stored] == ["a.png"]
    assert all(SECRET not in p.read_bytes() for p in stored)


def _denied(call: Callable[[], object], key: str) -> None:
    with pytest.raises(StorageError) as caught:
        call()
    assert caught.value.kind is ErrorKind.PERMISSION_DENIED, caught.value
    assert key in str(caught.value) and "symbolic link" in str(caught.value)


def test_sec_local_the_adapter_never_follows_a_symlink(world: World, planted: Path) -> None:
    before = _outside_files(world)
    store = LocalStore(planted)
    assert [o.key for o in store.list_page("").objects] == ["a.png"]
    assert store.list_page("sub/").objects == []
    calls: list[Callable[[str], object]] = [
        store.head,
        lambda key: store.read(key, max_size=1 << 20),
        lambda key: store.get_bytes(key, max_size=1 << 20),
        lambda key: b"".join(store.open(key)),
        lambda key: store.copy_from(store, key, "copied.png"),
        lambda key: store.put(key, b"overwritten"),
        store.delete,
    ]
    for key in ("link.png", "linkdir/inner.png", "sub/link.png"):
        for call in calls:
            _denied(lambda: call(key), key)  # noqa: B023 - called at once
    _denied(lambda: store.put("linkdir/new.png", b"planted"), "linkdir/new.png")
    _denied(lambda: store.put("linkdir/deeper/new.png", b"planted"), "linkdir/deeper/new.png")
    _denied(lambda: store.put("linkdir/", b""), "linkdir/")
    _denied(lambda: store.copy_from(store, "a.png", "linkdir/a.png"), "linkdir/a.png")
    upload = store.create_multipart("linkdir/big.bin")
    store.upload_part("linkdir/big.bin", upload, 1, b"x" * 10)
    part = store.upload_part("linkdir/big.bin", upload, 1, b"x" * 10)
    _denied(lambda: store.complete_multipart("linkdir/big.bin", upload, [part]), "linkdir/big")
    assert not (planted / "copied.png").exists()
    assert _outside_files(world) == before  # nothing outside read into, written or deleted
    assert (planted / "link.png").is_symlink() and (planted / "linkdir").is_symlink()


def test_sec_local_a_folder_swapped_for_a_symlink_after_opening_is_not_followed(
    world: World, planted: Path
) -> None:
    before = _outside_files(world)
    store = LocalStore(planted)
    (planted / "real").mkdir()
    store.put("real/x.png", b"x")
    # Someone with access to the folder swaps `real` for a link to outside.
    os.rename(planted / "real", planted / "was-real")
    (planted / "real").symlink_to(world.secret.parent / "dir")
    _denied(lambda: store.put("real/y.png", b"y"), "real/y.png")
    _denied(lambda: store.head("real/inner.png"), "real/inner.png")
    assert "real/inner.png" not in [o.key for o in store.list_page("").objects]
    # A multipart upload's own folder, planted as a link.
    (planted / ".bayport-uploads").symlink_to(world.secret.parent / "dir")
    with pytest.raises(StorageError) as caught:
        store.create_multipart("big.bin")
    assert caught.value.kind is ErrorKind.PERMISSION_DENIED
    # The store's sub-folder (a config's file_path), and the folder itself.
    _denied(lambda: LocalStore(planted, subpath="linkdir").list_page(""), "")
    _denied(lambda: LocalStore(planted, subpath="linkdir").put("n.png", b"n"), "n.png")
    os.rename(planted, planted.with_name("photos-was"))
    planted.symlink_to(world.secret.parent)
    with pytest.raises(StorageError) as caught:
        store.head("secret.txt")
    assert caught.value.kind is ErrorKind.PERMISSION_DENIED
    assert _outside_files(world) == before


# -- a workspace is told where its folders are -----------------------------------------------


def test_sec_local_a_workspace_is_told_its_own_folders_only(world: World) -> None:
    """GET /v1/workspace names the caller's workspace and its own `<root>/<id>/` folders:
    never another workspace's. A config on the folder it names is accepted."""
    for me, other in ((world.alice, world.bob), (world.bob, world.alice)):
        r = me.api.get("/v1/workspace")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["id"] == me.id and body["role"] == "admin"
        assert body["local_folders"] == [str(me.folder)]
        assert other.id not in r.text
    told = world.bob.api.get("/v1/workspace").json()["local_folders"][0]
    made = world.bob.api.post("/v1/storage-configs", json=_local("mine", told))
    assert made.status_code == 201, made.text
    stranger = world.alice.api.get("/v1/workspace", headers={"Authorization": "Bearer nope"})
    assert stranger.status_code == 401
