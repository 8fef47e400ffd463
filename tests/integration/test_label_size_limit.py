"""A 2 GiB "label" file is refused by its size, not read: that object fails alone with a
reason naming the size and the limit, the job goes on, and memory stays flat."""

from __future__ import annotations

import resource
import secrets
import time
from pathlib import Path

from sqlmodel import select

from bootstrap import build_container
from devstack.sample import label_key, make_label, populate
from devstack.services import start_rclone_s3
from importer import service
from importer.manifest import ImportManifest
from metadata.db import migrate
from metadata.models import ImportJob, LedgerEntry
from storage_adapters.local import LocalStore
from tests.conftest import make_settings, unavailable
from tests.servers import s3_store
from tests.support import InlineQueue, add_config, add_dataset, new_workspace, seed_manifest

N = 12
BIG = 2 * 1024**3  # 2 GiB
HUGE_LABEL = 5


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def test_a_2_gib_label_fails_its_object_alone_without_being_read(tmp_path: Path) -> None:
    # The buckets are written on disk first, then served: rclone's directory cache then
    # sees the 2 GiB file as it is (a sparse file: no disk used).
    root = tmp_path / "s3"
    populate(LocalStore(root / "src", create=True), N)
    (root / "datasets").mkdir()
    huge = root / "src" / label_key(HUGE_LABEL)
    with huge.open("r+b") as f:
        f.truncate(BIG)
    ak, sk = "test" + secrets.token_hex(4), secrets.token_hex(16)
    try:
        server = start_rclone_s3(root, access_key=ak, secret_key=sk)
    except Exception as exc:
        unavailable(f"rclone serve s3 would not start: {exc}")
    with server:
        s3 = {"endpoint": server.url, "access_key": ak, "secret_key": sk}
        _import_and_check(tmp_path, s3)


def _import_and_check(tmp_path: Path, s3: dict[str, str]) -> None:
    source, dest = s3_store(s3, "src"), s3_store(s3, "datasets")
    assert source.head(label_key(HUGE_LABEL)).size == BIG
    settings = make_settings(tmp_path / "bayport")
    migrate(settings.resolved_database_url)
    queue = InlineQueue()
    container = build_container(settings, enqueuer=queue)
    ctx = container.ctx
    workspace, _ = new_workspace(ctx)
    creds = {"accesskey_id": s3["access_key"], "accesskey_secret": s3["secret_key"]}
    for name in ("src", "datasets"):
        config = add_config(
            ctx,
            container.box,
            workspace_id=workspace.id,
            name=name,
            provider="s3",
            bucket=name,
            endpoint=s3["endpoint"],
            credentials=creds,
        )
    add_dataset(ctx, workspace_id=workspace.id, name="Cats", config=config)
    manifest = ImportManifest.model_validate(
        seed_manifest(config_name="src", shard_size=4, concurrency=4)
    )
    rss_before = _max_rss_mib()
    started = time.monotonic()
    job = service.submit_import(ctx, workspace_id=workspace.id, manifest=manifest)
    queue.drain(ctx)
    seconds = time.monotonic() - started
    rss_growth = _max_rss_mib() - rss_before

    with ctx.db.uow() as uow:
        done = uow.session.get(ImportJob, job.id)
        rows = {r.remote_path: r for r in uow.session.exec(select(LedgerEntry)).all()}
    container.db.dispose()
    assert done is not None
    assert done.state == "partially_failed", done.error
    assert (done.copied, done.failed) == (N - 1, 1)
    failed = rows[f"{HUGE_LABEL:05d}.png"]
    assert failed.outcome == "failed"
    assert failed.error_code == "precondition_failed"
    message = failed.error_message or ""
    assert str(BIG) in message and str(settings.max_label_size) in message, message
    assert dest.list_page(f"{HUGE_LABEL:05d}", limit=1).objects == []
    for i in range(1, N + 1):
        if i != HUGE_LABEL:
            row = rows[f"{i:05d}.png"]
            assert row.outcome == "copied" and row.label == {"CLASSIFICATION": make_label(i)}
    print(f"\n2 GiB label refused in {seconds:.1f} s; peak memory grew {rss_growth:.0f} MiB")
    # Refused by its size: memory does not grow by anything like the file (a read would
    # take 2 GiB; the label limit itself is 16 MiB).
    assert rss_growth < 200, f"memory grew {rss_growth:.0f} MiB"
