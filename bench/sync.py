"""A 1%-changed sync of 100,000 small objects: Bayport's import submitted again next to
`rclone sync`, both timed in one run against the same `rclone serve s3` server.

The source bucket's objects (`images/NNN/NNNNNN.bin`, 1–4 KiB of random bytes) are written
straight into the folder the server serves, before it starts. Bayport imports them into a
dataset (a real worker, SQLite or --database-url), `rclone copy` copies them into a second
bucket: both initial states are timed but reported apart from the sync. Then 1% of the source
objects get new content of a new size (PUT through the S3 API) and, one after the other,
Bayport runs the same manifest again (`overwrite: skip_existing` compares the listing with
its ledger and copies only what changed) and `rclone sync` brings its copy up to date, in its
default mode (size and modification time, which rclone's S3 backend reads with a HEAD per
object) and in the three modes rclone's S3 documentation recommends to avoid those HEADs:
`--checksum`, `--size-only` and `--update --use-server-modtime`. Afterwards every destination
is listed with boto3 and compared with the source, key by key, size and ETag.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.harness import (
    S3Server,
    add_broker_argument,
    add_database_argument,
    bayport_stack,
    children_cpu,
    new_table,
    rclone_binary,
    rclone_env,
    register_s3_configs,
    s3_client,
    tail,
    timed,
)
from bench.procstat import process_cpu_seconds, tree_cpu_seconds
from cli.client import BayportClient
from cli.stack import LocalStack
from devstack.services import RunningService, free_port, start_rclone_s3

SOURCE, DATASETS = "source", "datasets"
PREFIX = "images/"
DATASET, SEGMENT = "Sync", "default"
MIN_SIZE, MAX_SIZE = 1024, 4096
SEED = 5  # the same objects, sizes and changed keys in every run
# rclone sync's modes, each into its own destination bucket (all copies of one initial copy).
RCLONE_MODES: dict[str, list[str]] = {
    "rclone-default": [],
    "rclone-checksum": ["--checksum"],
    "rclone-size-only": ["--size-only"],
    "rclone-update": ["--update", "--use-server-modtime"],
}
INITIAL_RCLONE_DEST = "rclone-default"


@dataclass
class Run:
    tool: str
    phase: str
    listed: int
    copied: int
    objects: int  # source objects the run brought up to date (objects/s is these ÷ seconds)
    seconds: float
    cpu: float
    server_cpu: float
    problems: list[str]
    dest: str  # the destination bucket (and prefix) the run filled


@dataclass(frozen=True)
class Changed:
    key: str
    size: int
    md5: str


def key_of(i: int, folder_size: int) -> str:
    return f"{PREFIX}{i // folder_size:03d}/{i:06d}.bin"


def populate_on_disk(root: Path, n: int, folder_size: int) -> int:
    """Writes the source objects as files into the bucket folder `root/source`; returns their
    bytes. Done before the server starts: its VFS caches a folder's listing for
    --dir-cache-time (5 min), so files written into a folder it has already listed would stay
    invisible for that long."""
    rng = random.Random(SEED)
    total = 0
    for i in range(n):
        path = root / SOURCE / key_of(i, folder_size)
        if i % folder_size == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        size = rng.randint(MIN_SIZE, MAX_SIZE)
        path.write_bytes(rng.randbytes(size))
        total += size
    return total


def change(
    client: Any, root: Path, n: int, folder_size: int, percent: float, threads: int
) -> list[Changed]:
    """New random content, of a size other than the old one, for `percent` % of the source
    objects, PUT through the S3 API (the server's VFS sees the change at once and the file's
    modification time moves to now). Nothing is added or deleted."""
    rng = random.Random(SEED + 1)
    picked = sorted(rng.sample(range(n), max(1, round(n * percent / 100))))
    bodies = []
    for i in picked:
        key = key_of(i, folder_size)
        old = (root / SOURCE / key).stat().st_size
        size = old
        while size == old:
            size = rng.randint(MIN_SIZE, MAX_SIZE)
        bodies.append((key, rng.randbytes(size)))

    def put(item: tuple[str, bytes]) -> Changed:
        key, body = item
        client.put_object(Bucket=SOURCE, Key=key, Body=body)
        return Changed(key, len(body), hashlib.md5(body).hexdigest())

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(put, bodies))


def listing(client: Any, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """{key below prefix: (size, ETag without quotes)} from a boto3 listing."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            found[item["Key"][len(prefix) :]] = (item["Size"], item["ETag"].strip('"'))
    return found


# --- the S3 server ----------------------------------------------------------------------


@contextlib.contextmanager
def s3_server(root: Path, access_key: str, secret_key: str, port: int) -> Iterator[S3Server]:
    """`rclone serve s3` over `root` on `port`: the same endpoint in each life of the server,
    so the storage configs registered with Bayport stay valid across a restart."""
    service: RunningService = start_rclone_s3(
        root, access_key=access_key, secret_key=secret_key, port=port
    )
    with service:
        yield S3Server(service.url, access_key, secret_key, service.pid or 0)


def warm(s3: S3Server, *targets: str) -> float:
    """One untimed listing of each `bucket/prefix`, so each timed run finds the server in the
    same state: its VFS has read the folders and computed the ETags (the MD5 of each file,
    which rclone serve s3 computes on the first listing of a file; a real S3 has them
    stored). Returns the seconds it took."""
    with timed() as span:
        for target in targets:
            subprocess.run(
                [rclone_binary(), "--config", os.devnull, "size", "--json", f"bench:{target}"],
                env=rclone_env(s3),
                capture_output=True,
                check=True,
            )
    return span.seconds


# --- Bayport ----------------------------------------------------------------------------


def manifest(concurrency: int) -> dict[str, Any]:
    return {
        "dataset": DATASET,
        "segment": SEGMENT,
        "source": {"config_name": "bench-source", "data_prefix": PREFIX},
        "options": {"concurrency": concurrency, "shard_size": 1000},
    }


def register(client: BayportClient, s3: S3Server) -> str:
    """The two storage configs (same endpoint and keys: server-side copies) and the dataset;
    returns the prefix of the segment's objects in the DATASETS bucket."""
    register_s3_configs(client, s3, {"bench-source": SOURCE, "bench-datasets": DATASETS})
    dataset = client.create_dataset(DATASET, config_name="bench-datasets")
    return f"{dataset['path']}{SEGMENT}/"


def run_bayport(
    stack: LocalStack,
    client: BayportClient,
    s3: S3Server,
    args: argparse.Namespace,
    *,
    tool: str,
    phase: str,
    expect_copied: int,
    log: Path,
    console: Console,
) -> Run:
    """Submits the manifest and polls (every 0.2 s) until the job is final."""
    n = args.objects
    worker = stack.workers[0].pid
    with timed(lambda: tree_cpu_seconds(worker), lambda: process_cpu_seconds(s3.pid)) as span:
        job = client.submit(manifest(args.concurrency))
        try:
            done = client.wait(job["id"], timeout=max(600.0, n / 10), interval=0.2)
        except TimeoutError:
            done = client.job(job["id"])
    counts = done["counts"]
    # Objects the ledger holds unchanged: `skipped` (a field `unchanged` may count them).
    skipped = max(counts.get("skipped", 0), counts.get("unchanged", 0))
    problems = []
    expected = {
        "state": (done["state"], "succeeded"),
        "listed": (counts["listed"], n),
        "copied": (counts["copied"], expect_copied),
        "skipped": (skipped, n - expect_copied),
        "failed": (counts["failed"], 0),
    }
    for what, (got, want) in expected.items():
        if got != want:
            problems.append(f"job {what} {got:,} ≠ {want:,}" if isinstance(got, int) else
                            f"job {what} {got} ≠ {want}")  # fmt: skip
    if problems:
        console.print(f"[red]bayport {phase}: {'; '.join(problems)}[/]; worker log:\n{tail(log)}")
    console.print(f"bayport {phase}: job {done['id']} {done['state']}, counts {counts}")
    return Run(tool, phase, counts["listed"], counts["copied"], n, span.seconds, span.cpu,
               span.server_cpu, problems, DATASETS)  # fmt: skip


# --- rclone -----------------------------------------------------------------------------


def run_rclone(
    s3: S3Server,
    args: argparse.Namespace,
    *,
    command: str,
    dest: str,
    flags: list[str],
    phase: str,
    expect_copied: int,
    console: Console,
) -> Run:
    argv = [
        rclone_binary(), "--config", os.devnull, command,
        f"bench:{SOURCE}/{PREFIX}", f"bench:{dest}/{PREFIX}",
        "--transfers", str(args.concurrency), "--checkers", str(args.concurrency),
        *flags,
        # The final statistics, at the default log level: no line per object.
        "--stats", "1h", "--stats-log-level", "NOTICE",
    ]  # fmt: skip
    console.print("rclone: " + " ".join(argv[3:]))
    with timed(children_cpu, lambda: process_cpu_seconds(s3.pid)) as span:
        proc = subprocess.run(argv, env=rclone_env(s3), capture_output=True, text=True, check=False)
    stats = _rclone_stats(proc.stderr)
    problems = []
    if proc.returncode != 0:
        problems.append(f"rclone exited {proc.returncode}")
    if stats["copied"] != expect_copied:
        problems.append(f"transferred {stats['copied']:,} ≠ {expect_copied:,}")
    if problems:
        console.print(f"[red]{command} {dest}: {'; '.join(problems)}[/]\n{proc.stderr[-3000:]}")
    tool = " ".join(["rclone", command, *flags])
    return Run(tool, phase, stats["listed"], stats["copied"], args.objects, span.seconds,
               span.cpu, span.server_cpu, problems, dest)  # fmt: skip


def _rclone_stats(stderr: str) -> dict[str, int]:
    """Objects listed (both sides, folders included) and transferred, from rclone's final
    statistics. Without transfers rclone prints no 'Transferred: N / M' line."""
    listed = re.findall(r"Listed (\d+)", stderr)
    copied = re.findall(r"^Transferred:\s+(\d+) / \d+,", stderr, flags=re.MULTILINE)
    return {"listed": int(listed[-1]) if listed else 0, "copied": int(copied[-1]) if copied else 0}


# --- checks -----------------------------------------------------------------------------


def verify(
    s3: S3Server,
    source: dict[str, tuple[int, str]],
    changed: list[Changed],
    destinations: dict[str, str],
    n: int,
) -> tuple[list[str], dict[str, list[str]]]:
    """Source problems, and each destination's: every source key with the source's size and
    ETag, nothing else. `destinations` maps a bucket to the prefix of its copies."""
    client = s3_client(s3)
    source_problems = []
    if len(source) != n:
        source_problems.append(f"the source lists {len(source):,} objects, not {n:,}")
    for c in changed:
        got = source.get(c.key[len(PREFIX) :])
        if got != (c.size, c.md5):
            source_problems.append(f"{c.key}: the source shows {got}, not {(c.size, c.md5)}")
            break
    with ThreadPoolExecutor(len(destinations)) as pool:
        futures = {
            bucket: pool.submit(listing, client, bucket, prefix)
            for bucket, prefix in destinations.items()
        }
        found = {bucket: f.result() for bucket, f in futures.items()}
    problems = {}
    for bucket, objects in found.items():
        missing = [k for k in source if k not in objects]
        differ = [k for k in source if k in objects and objects[k] != source[k]]
        extra = [k for k in objects if k not in source]
        stale = [c.key for c in changed if objects.get(c.key[len(PREFIX) :]) != (c.size, c.md5)]
        problems[bucket] = [
            f"{len(items):,} {what} (e.g. {items[0]})"
            for what, items in (
                ("missing", missing),
                ("differ from the source", differ),
                ("not in the source", extra),
                ("changed objects not up to date", stale),
            )
            if items
        ]
    return source_problems, problems


# --- the whole benchmark ----------------------------------------------------------------


def render(runs: list[Run], n: int, changed: int, ledger: str, console: Console) -> None:
    table = new_table(
        f"Sync of {n:,} objects of 1–4 KiB with {changed:,} changed, through rclone serve s3",
        ("tool", "phase", "listed", "copied", "seconds", "objects/s", "CPU-s", "server CPU-s",
         "check"),
        left=("tool", "phase", "check"),
    )  # fmt: skip
    for r in runs:
        table.add_row(
            r.tool,
            r.phase,
            f"{r.listed:,}",
            f"{r.copied:,}",
            f"{r.seconds:.1f}",
            f"{r.objects / r.seconds:,.0f}",
            f"{r.cpu:.1f}",
            f"{r.server_cpu:.1f}",
            "ok" if not r.problems else f"[red]FAILED: {'; '.join(r.problems)}[/]",
        )
    console.print(table)
    console.print(
        f"Bayport's ledger: {ledger}. objects/s: the {n:,} source objects ÷ seconds. rclone's "
        "'listed' counts both sides and their folders."
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objects", type=int, default=100_000, help="source objects")
    parser.add_argument(
        "--changed-percent", type=float, default=1.0, help="%% of them modified before the sync"
    )
    parser.add_argument(
        "--folder-size",
        type=int,
        default=1000,
        help="objects per folder (images/NNN/): rclone serve s3 queues a folder's HEADs "
        "and writes on one lock, too slow with 100,000 in one folder",
    )
    parser.add_argument("--workers", type=int, default=2, help="Bayport worker processes")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="Bayport's copies in flight; rclone's --transfers and --checkers",
    )
    add_database_argument(parser)
    add_broker_argument(parser)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    work = Path(tempfile.mkdtemp(prefix="bayport-bench-sync-"))
    try:
        return _run(args, work, console)
    finally:
        if args.keep:
            console.print(f"kept {work} (the served folder is {work / 's3'})")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path, console: Console) -> int:
    n = args.objects
    root = work / "s3"
    for bucket in (SOURCE, DATASETS, INITIAL_RCLONE_DEST):
        (root / bucket).mkdir(parents=True)
    with timed() as written:
        size = populate_on_disk(root, n, args.folder_size)
    console.print(
        f"wrote {n:,} objects ({size / 2**20:,.0f} MiB) into {root / SOURCE} in "
        f"{written.seconds:.1f}s"
    )
    access_key, secret_key = "bench" + secrets.token_hex(4), secrets.token_hex(16)
    port = free_port()
    log = work / "worker.log"
    runs: list[Run] = []
    with bayport_stack(
        work / "bayport",
        broker_url=args.broker_url,
        database_url=args.database_url,
        workers=args.workers,
        log=log,
        allow_endpoints=[f"http://127.0.0.1:{port}"],  # our own local S3 server
    ) as stack:
        db = stack.settings.resolved_database_url.split("://")[0].split("+")[0]
        ledger = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(db, db)
        tool = f"bayport ({ledger})"
        console.print(
            f"bayport: {args.workers} worker processes, concurrency {args.concurrency}, "
            f"{ledger}, broker {args.broker_url}"
        )
        client = BayportClient(stack.url, stack.access_key)
        try:
            # 1. The initial states: Bayport's import, rclone's copy.
            with s3_server(root, access_key, secret_key, port) as s3:
                dataset_prefix = register(client, s3)
                warm(s3, f"{SOURCE}/{PREFIX}")
                runs.append(
                    run_bayport(stack, client, s3, args, tool=tool, phase="initial import",
                                expect_copied=n, log=log, console=console)
                )  # fmt: skip
                warm(s3, f"{SOURCE}/{PREFIX}")  # the VFS forgets after 5 minutes
                runs.append(
                    run_rclone(s3, args, command="copy", dest=INITIAL_RCLONE_DEST, flags=[],
                               phase="initial copy", expect_copied=n, console=console)
                )  # fmt: skip
            # 2. One destination per rclone mode, all the same initial copy: copied on
            # disk (modification times kept) while the server is down, so that its VFS
            # reads the new bucket folders when it starts again.
            for bucket in RCLONE_MODES:
                if bucket != INITIAL_RCLONE_DEST:
                    shutil.copytree(root / INITIAL_RCLONE_DEST, root / bucket)
            with s3_server(root, access_key, secret_key, port) as s3:
                # 3. Change 1%.
                changed = change(
                    s3_client(s3, pool=args.concurrency), root, n, args.folder_size,
                    args.changed_percent, args.concurrency,
                )  # fmt: skip
                console.print(f"changed {len(changed):,} source objects (new size and content)")
                # 4. The syncs, one after the other, each after a warm-up listing.
                seconds = warm(s3, f"{SOURCE}/{PREFIX}", f"{DATASETS}/{dataset_prefix}")
                console.print(f"warm-up listing of the source and the dataset: {seconds:.1f}s")
                runs.append(
                    run_bayport(stack, client, s3, args, tool=tool, phase="sync",
                                expect_copied=len(changed), log=log, console=console)
                )  # fmt: skip
                for bucket, flags in RCLONE_MODES.items():
                    warm(s3, f"{SOURCE}/{PREFIX}", f"{bucket}/{PREFIX}")
                    runs.append(
                        run_rclone(s3, args, command="sync", dest=bucket, flags=flags,
                                   phase="sync", expect_copied=len(changed), console=console)
                    )  # fmt: skip
                # 5. Independently: every destination against the source.
                with timed() as checked:
                    source = listing(s3_client(s3), SOURCE, PREFIX)
                    destinations = {DATASETS: dataset_prefix, **dict.fromkeys(RCLONE_MODES, PREFIX)}
                    source_problems, problems = verify(s3, source, changed, destinations, n)
                console.print(
                    f"checked {len(destinations)} destinations against the source in "
                    f"{checked.seconds:.1f}s"
                )
        finally:
            client.close()
    for r in runs:
        if r.phase == "sync":
            r.problems += [f"{r.dest}: {p}" for p in problems[r.dest]]
    render(runs, n, len(changed), ledger, console)
    failures = source_problems + [f"{r.tool} {r.phase}: {p}" for r in runs for p in r.problems]
    for failure in failures:
        console.print(f"[bold red]FAILED[/] {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
