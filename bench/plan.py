"""Planning a 100,000-key listing with flat memory: time and peak RSS of `plan_import`.

The source is a GeneratedListing (keys made page by page, nothing stored), the ledger a real
migrated SQLite DB in a temporary folder, and the task queue a counter of the copy_shard tasks
planning would send. What is timed is `importer.service.plan_import` alone: listing, the ledger
look-up of each page (overwrite=skip_existing), writing shards and the job's cursor.

Each size runs in a fresh Python process, so its peak RSS is its own: the kernel's high-water
mark (VmHWM in /proc/self/status), restarted just before plan_import and checked against a
thread sampling /proc/self/statm. ru_maxrss alone would mislead: Linux hands a child its
parent's maximum across fork and exec, and it includes setup (alembic's migration).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bayport.settings import Settings
from bench.generated import KEY_PREFIX, GeneratedListing
from bench.harness import new_table, peak_rss
from bench.procstat import child_json
from importer import service
from importer.manifest import ImportManifest, ImportOptions, SourceSpec
from metadata.db import Database, migrate
from metadata.models import Dataset, ImportJob, StorageConfig
from metadata.queries import workspaces
from storage_adapters.base import ObjectStore
from storage_adapters.memory import MemoryStore

SIZES = (10_000, 100_000)
BIG = 1_000_000
SHARD_SIZE = 1000
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class PlanResult:
    keys: int
    seconds: float
    shards: int
    listed: int
    rss_before: int
    rss_after: int
    peak_rss: int  # VmHWM reset just before plan_import (or the sampler's peak if higher)
    ru_maxrss: int  # for the record: inherited from the parent, setup included


class _CountingQueue:
    """The Enqueuer port, counting what planning sends instead of sending it."""

    def __init__(self) -> None:
        self.plans = 0
        self.shards = 0

    def plan_import(self, job_id: str) -> None:
        self.plans += 1

    def copy_shard(
        self, shard_id: str, *, job_id: str | None = None, seq: int | None = None
    ) -> None:
        self.shards += 1

    def run_schedule(self, run_id: str) -> None:
        pass


@contextlib.contextmanager
def generated_import(
    keys: int, enqueue: Any, *, in_place: bool = False, prefix: str = "bayport-bench-plan-"
) -> Iterator[tuple[service.ImportContext, str]]:
    """An import of a generated `keys`-object listing into dataset Bench, submitted on a
    migrated SQLite ledger in a temporary folder, its tasks sent to `enqueue`: the context
    and the job's id. The dataset lies on a memory store, or with `in_place` in the
    listing's own storage (path data/: the import registers the objects where they are)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        url = f"sqlite:///{tmp}/bayport.db"
        settings = Settings(data_dir=Path(tmp), database_url=url)
        migrate(url)
        db = Database(url)
        with db.uow() as uow:
            workspace, _key = workspaces.create_workspace(uow.session, name="bench")
            source = _config(workspace.id, "generated")
            dest = source if in_place else _config(workspace.id, "datasets")
            uow.session.add_all([source, dest])
            uow.session.flush()
            uow.session.add(
                Dataset(
                    workspace_id=workspace.id,
                    name="Bench",
                    config_id=dest.id,
                    path="data/" if in_place else "",
                )
            )
            uow.commit()
        listing = GeneratedListing(keys)
        dataset_store: ObjectStore = listing if in_place else MemoryStore()

        class Stores:
            def for_config(self, config: StorageConfig, **_: object) -> ObjectStore:
                return listing if config.id == source.id else dataset_store

            def default_storage(self) -> ObjectStore:
                return dataset_store

        ctx = service.ImportContext(db=db, stores=Stores(), enqueue=enqueue, settings=settings)
        manifest = ImportManifest(
            dataset="Bench",
            source=SourceSpec(config_name="generated", data_prefix=KEY_PREFIX),
            options=ImportOptions(shard_size=SHARD_SIZE),
        )
        job = service.submit_import(ctx, workspace_id=workspace.id, manifest=manifest)
        try:
            yield ctx, job.id
        finally:
            db.dispose()


def plan_once(keys: int) -> PlanResult:
    """Submit and plan one import of a `keys`-object listing; meant for a fresh process."""
    queue = _CountingQueue()
    with generated_import(keys, queue) as (ctx, job_id):
        with peak_rss() as memory:
            service.plan_import(ctx, job_id)
        with ctx.db.uow() as uow:
            planned = uow.session.get(ImportJob, job_id)
            listed = planned.listed if planned else -1
    return PlanResult(
        keys=keys,
        seconds=memory.seconds,
        shards=queue.shards,
        listed=listed,
        rss_before=memory.rss_before,
        rss_after=memory.rss_after,
        peak_rss=memory.peak_rss,
        ru_maxrss=memory.ru_maxrss,
    )


def _config(workspace_id: str, name: str) -> StorageConfig:
    return StorageConfig(
        workspace_id=workspace_id,
        name=name,
        provider="memory",
        bucket_name=name,
        credentials_encrypted=b"",  # the bench's resolver never opens credentials
    )


def measure(keys: int) -> PlanResult:
    """plan_once(keys) in a fresh interpreter."""
    return PlanResult(
        **child_json("bench.plan", "--child", str(keys), what=f"planning {keys} keys")
    )


def render(results: list[PlanResult], console: Console) -> None:
    table = new_table(
        "plan_import of a generated listing (shard_size 1000, SQLite ledger)",
        ("keys", "seconds", "keys/s", "shards written", "RSS before (MiB)", "RSS after (MiB)",
         "peak RSS (MiB)", "growth (MiB)"),
    )  # fmt: skip
    for r in results:
        table.add_row(
            f"{r.keys:,}",
            f"{r.seconds:.2f}",
            f"{r.keys / r.seconds:,.0f}",
            f"{r.shards:,}",
            _mib(r.rss_before),
            _mib(r.rss_after),
            _mib(r.peak_rss),
            _mib(r.peak_rss - r.rss_before),
        )
    console.print(table)
    for r in results:
        if r.listed != r.keys or r.shards != -(-r.keys // SHARD_SIZE):
            console.print(f"[red]warning: {r.keys:,} keys: listed {r.listed:,}, {r.shards} shards")
    console.print(
        "peak RSS = the kernel's high-water mark (VmHWM) reset just before plan_import; "
        "growth = peak - before. Flat memory: growth about the same at every size."
    )


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--big", action="store_true", help=f"also plan {BIG:,} keys")


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    results = []
    for keys in (*SIZES, BIG) if args.big else SIZES:
        console.print(f"planning {keys:,} keys in a fresh process ...")
        results.append(measure(keys))
    render(results, console)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.plan", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child is not None:
        print(json.dumps(asdict(plan_once(arguments.child))))
    else:
        sys.exit(run(arguments))
