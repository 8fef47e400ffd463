"""Test helpers shared by the suites: an inline task queue, storage-config factories, the
seed's import manifest and an API client with a workspace's key."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crypto.secretbox import SecretBox
from devstack import sample
from importer import drafts, service
from importer.service import ImportContext
from metadata.models import Dataset, StorageConfig, Workspace
from metadata.queries import workspaces
from scheduler import service as schedules

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from bootstrap import Container


def seed_manifest(
    *,
    dataset: str = "Cats",
    segment: str = "default",
    config_name: str = "user-bucket",
    labels: bool = True,
    source: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The seed's import (devstack.sample's: `config_name`'s `data/images/` with their
    classification labels in `data/labels/`, into `dataset`'s `segment`) as a request
    body, with `options`. `labels=False` leaves the labels out; `source` adds or replaces
    source fields. Callers wanting the model pass it to `ImportManifest.model_validate`."""
    manifest = sample.seed_manifest(**options)
    manifest["dataset"], manifest["segment"] = dataset, segment
    seed_source: dict[str, Any] = manifest["source"]
    seed_source["config_name"] = config_name
    if not labels:
        del seed_source["label_prefix"], seed_source["label_type"]
    seed_source.update(source or {})
    return manifest


class InlineQueue:
    """The Enqueuer port as a list: tests run the queued tasks themselves, in any order.
    (A fake of our own port, not of Celery: end-to-end tests use a real worker.)"""

    def __init__(self) -> None:
        self.tasks: deque[tuple[str, str]] = deque()

    def plan_import(self, job_id: str) -> None:
        self.tasks.append(("plan", job_id))

    def copy_shard(
        self, shard_id: str, *, job_id: str | None = None, seq: int | None = None
    ) -> None:
        self.tasks.append(("copy", shard_id))

    def run_schedule(self, run_id: str) -> None:
        self.tasks.append(("schedule", run_id))

    def gather_draft(self, batch: str, *, delay: float = 0.0) -> None:
        self.tasks.append(("gather", batch))

    def drain(
        self,
        ctx: ImportContext,
        *,
        rng: random.Random | None = None,
        only: set[str] | None = None,
    ) -> int:
        """Run the queued tasks (and those they queue) until none is left; with `only`, run
        just the tasks of those kinds ("plan", "copy", "schedule") and keep the others."""
        ran = 0
        kept: deque[tuple[str, str]] = deque()
        while self.tasks:
            if rng is not None:
                self.tasks.rotate(rng.randrange(len(self.tasks)))
            kind, ident = self.tasks.popleft()
            if only is not None and kind not in only:
                kept.append((kind, ident))
                continue
            if kind == "plan":
                service.plan_import(ctx, ident)
            elif kind == "schedule":
                schedules.run_schedule(ctx, ident)
            elif kind == "gather":
                drafts.gather(ctx, ident)
            else:
                service.copy_shard(ctx, ident)
            ran += 1
        self.tasks.extend(kept)
        return ran


def add_config(
    ctx: ImportContext,
    box: SecretBox,
    *,
    workspace_id: str,
    name: str,
    provider: str = "memory",
    bucket: str,
    file_path: str = "",
    endpoint: str | None = None,
    credentials: dict[str, str] | None = None,
) -> StorageConfig:
    config = StorageConfig(
        workspace_id=workspace_id,
        name=name,
        provider=provider,
        bucket_name=bucket,
        file_path=file_path,
        endpoint=endpoint,
        credentials_encrypted=box.seal(credentials or {}),
        credentials_hint="",
    )
    with ctx.db.uow() as uow:
        uow.session.add(config)
        uow.commit()
    return config


def add_seed_configs(
    ctx: ImportContext, box: SecretBox, *, workspace_id: str, datasets_bucket: str = "datasets"
) -> StorageConfig:
    """The seed's two memory storage configs: `user-bucket` on bucket `user` (where the
    seed's images are) and `datasets` (the dataset storage); returns `datasets`."""
    add_config(ctx, box, workspace_id=workspace_id, name="user-bucket", bucket="user")
    return add_config(ctx, box, workspace_id=workspace_id, name="datasets", bucket=datasets_bucket)


def new_workspace(container: Container, name: str = "w") -> tuple[Workspace, str]:
    """A workspace made and committed: it and its access key."""
    with container.db.uow() as uow:
        workspace, key = workspaces.create_workspace(uow.session, name=name)
        uow.commit()
    return workspace, key


def api_client(container: Container, key: str) -> TestClient:
    """The API of `container` in process, authenticated with a workspace's access `key`."""
    from fastapi.testclient import TestClient  # only where a test asks: it warns on import

    from api.app import create_app

    client = TestClient(create_app(container))
    client.headers["Authorization"] = f"Bearer {key}"
    return client


def add_dataset(
    ctx: ImportContext,
    *,
    workspace_id: str,
    name: str,
    config: StorageConfig | None,
    path: str = "",
) -> Dataset:
    dataset = Dataset(
        workspace_id=workspace_id, name=name, config_id=config.id if config else None, path=path
    )
    if config is None:
        dataset.path = f"{workspace_id}/{dataset.id}/{path}"
    with ctx.db.uow() as uow:
        uow.session.add(dataset)
        uow.commit()
    return dataset


def wait_until(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    interval: float = 0.1,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """`check()`'s first truthy answer, asked every `interval` s (an error of a type in
    `ignoring` counts as "not yet"); AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except ignoring:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def register_s3_pair(
    client: Any,
    s3: dict[str, Any],
    *,
    dataset: str = "Cats",
    dataset_config: str = "datasets",
    path: str = "",
) -> None:
    """Through the API (a cli.client.BayportClient): the configs "user-bucket" and
    "datasets" on the two buckets `s3` names (as the s3_buckets fixture does:
    source_bucket, dest_bucket, endpoint and keys), and `dataset` on `dataset_config`."""
    for name, bucket in (("user-bucket", s3["source_bucket"]), ("datasets", s3["dest_bucket"])):
        client.create_storage_config(
            name=name,
            provider="s3",
            endpoint=s3["endpoint"],
            bucket_name=bucket,
            accesskey_id=s3["access_key"],
            accesskey_secret=s3["secret_key"],
        )
    client.create_dataset(dataset, config_name=dataset_config, path=path)
