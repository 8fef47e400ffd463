"""MiB/s of a cross-provider copy of 4 × 64 MiB, S3 → Azure, streamed in parts, next to
`rclone copy` on the same pair at the same concurrency, with each tool's peak RSS; and (with
--pull, the default) the same copy made by "Azure" itself: Bayport's Put Blob From URL through
tests/azure_pull_proxy.py in front of Azurite, which fetches each object's presigned S3 URL, so
no byte of it passes through the worker. "worker MiB moved" shows it: in that run the worker
reaches S3 and the proxy through byte-counting relays (bench/byterelay.py), which the proxy's
own fetches bypass (the other runs take no relay, so as not to slow them: "—").

Two servers on temporary folders: `rclone serve s3` holds the source bucket (objects of random
bytes under data/images/, no labels) and Azurite the destination account. No server-side
copy exists between the two, so every byte passes through the copying process: Bayport reads
each object and stages it as Azure blocks of BAYPORT_MULTIPART_PART_SIZE, each uploading
while the next is read, at most --parts-in-flight (BAYPORT_MULTIPART_PARTS_IN_FLIGHT, the
product's default 8) parts held by the worker process at once, so it should hold about
parts in flight × part size on top of its baseline. rclone copy runs with --transfers =
concurrency and the same chunk size, one chunk uploading per transfer
(--azureblob-upload-concurrency 1) while its --buffer-size (16 MiB) reads ahead: 4 × 2
parts in the air, as many as Bayport's default.

Bayport runs as a user runs it (cli.stack.local_stack: the API in this process, a real Celery
worker with --workers processes). Wall seconds run from the submit request to the first poll
that sees the job final; CPU is the worker process tree's user+system time over that span;
RSS is sampled from /proc every 50 ms. Both copies are checked in Azurite afterwards: every
blob's size and stored Content-MD5, and one blob downloaded and hashed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from rich.console import Console

from bayport.settings import Settings
from bench.byterelay import ByteRelay
from bench.harness import (
    S3Server,
    add_broker_argument,
    bayport_stack,
    check_cell,
    children_cpu,
    new_table,
    rclone_binary,
    register_s3_configs,
    tail,
    timed,
)
from bench.harness import s3_client as make_s3_client
from bench.procstat import MiB, TreeRss, process_cpu_seconds, tree_cpu_seconds
from cli.client import BayportClient
from devstack.services import (
    AZURITE_ACCOUNT_KEY,
    AZURITE_ACCOUNT_NAME,
    start_azurite,
    start_rclone_s3,
)

SOURCE = "source"  # the S3 bucket
BAYPORT_CONTAINER, RCLONE_CONTAINER = "datasets", "rclone"  # Azurite containers
PULLED_CONTAINER = "pulled"  # Bayport's copies made by Put Blob From URL (through the proxy)
DATA_PREFIX = "data/images/"
SEGMENT = "default"  # Bayport's copies land in <dataset path><segment>/<key under DATA_PREFIX>


@dataclass(frozen=True)
class Servers:
    s3: S3Server
    azure_url: str  # Azurite's account URL, http://127.0.0.1:PORT/devstoreaccount1
    azure_pid: int

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.s3.pid) + process_cpu_seconds(self.azure_pid)


@dataclass(frozen=True)
class Source:
    """What was put in the source bucket: size and MD5 by name under DATA_PREFIX."""

    objects: dict[str, tuple[int, str]]


@dataclass(frozen=True)
class Run:
    tool: str
    objects: int
    bytes: int
    seconds: float
    cpu: float
    server_cpu: float
    peak_rss: int  # the most the process tree held at one sample
    largest_process: int  # the most one process held (its kernel high-water mark)
    rss_before: int
    problem: str | None = None
    note: str = ""
    moved: int = -1  # bytes the worker moved over the network (-1: not measured)
    peak_pss: int = 0  # the most the tree held at one sample, each shared page counted once
    pss_before: int = 0


# --- the two servers ----------------------------------------------------------------------


def populate(client: Any, objects: int, size: int) -> Source:
    """`objects` objects of `size` random bytes under DATA_PREFIX, a few uploads at a time."""

    def put(i: int) -> tuple[str, tuple[int, str]]:
        body = os.urandom(size)
        name = f"big-{i:02d}.bin"
        client.put_object(Bucket=SOURCE, Key=DATA_PREFIX + name, Body=body)
        return name, (size, hashlib.md5(body).hexdigest())

    with ThreadPoolExecutor(min(objects, 4)) as pool:
        return Source(dict(pool.map(put, range(1, objects + 1))))


def blob_service(azure_url: str) -> Any:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient(
        azure_url,
        credential={"account_name": AZURITE_ACCOUNT_NAME, "account_key": AZURITE_ACCOUNT_KEY},
    )


def check_copies(azure_url: str, container: str, prefix: str, source: Source) -> tuple[int, str]:
    """Objects that arrived under `prefix` with the source's size, and "ok, <how the first blob
    was committed>" or what is wrong: a missing or extra blob, a size or stored Content-MD5
    that differs from the source's, or the first blob's downloaded bytes hashing otherwise."""
    service = blob_service(azure_url)
    try:
        box = service.get_container_client(container)
        landed = {b.name[len(prefix) :]: b for b in box.list_blobs(name_starts_with=prefix)}
        problems = []
        if missing := sorted(set(source.objects) - set(landed)):
            problems.append(f"missing {', '.join(missing)}")
        if extra := sorted(set(landed) - set(source.objects)):
            problems.append(f"unexpected {', '.join(extra)}")
        arrived = 0
        for name, (size, md5) in source.objects.items():
            blob = landed.get(name)
            if blob is None:
                continue
            if blob.size != size:
                problems.append(f"{name} has {blob.size:,} bytes, the source {size:,}")
                continue
            arrived += 1
            stored = blob.content_settings.content_md5
            if stored and bytes(stored).hex() != md5:
                problems.append(f"{name}'s Content-MD5 is {bytes(stored).hex()}, source {md5}")
        if not landed:
            return arrived, "; ".join(problems) or "nothing arrived"
        # The stored Content-MD5 is the writer's own claim: hash one blob's bytes ourselves.
        name = min(landed)
        blob = box.get_blob_client(prefix + name)
        digest = hashlib.md5()
        for chunk in blob.download_blob().chunks():
            digest.update(chunk)
        if name in source.objects and digest.hexdigest() != source.objects[name][1]:
            problems.append(
                f"{name}'s bytes hash to {digest.hexdigest()}, the source's to "
                f"{source.objects[name][1]}"
            )
        committed, _ = blob.get_block_list("committed")
        if problems:
            return arrived, "; ".join(problems)
        if not committed:
            return arrived, "ok, Put Blob"
        return arrived, f"ok, {len(committed)} block{'s' if len(committed) > 1 else ''}"
    finally:
        service.close()


# --- Bayport ------------------------------------------------------------------------------


def manifest(concurrency: int) -> dict[str, Any]:
    return {
        "dataset": "Big",
        "segment": SEGMENT,
        "source": {"config_name": "bench-s3", "data_prefix": DATA_PREFIX},
        "options": {"concurrency": concurrency, "shard_size": 100},
    }


def run_bayport(
    servers: Servers,
    source: Source,
    work: Path,
    args: argparse.Namespace,
    console: Console,
    *,
    through: str | None = None,
    s3_via: str | None = None,
    moved: Callable[[], int] | None = None,
) -> Run:
    """Bayport's import into Azurite, or into the account URL `through` (the pull proxy in
    front of Azurite), where Azure pulls each object itself; its S3 config names `s3_via` (a
    relay) when given, and `moved` counts the bytes the worker moved over the network."""
    container = PULLED_CONTAINER if through else BAYPORT_CONTAINER
    azure_url = through or servers.azure_url
    s3 = servers.s3 if s3_via is None else dataclasses.replace(servers.s3, endpoint=s3_via)
    work = work / ("pull" if through else "stream")
    work.mkdir(parents=True, exist_ok=True)
    part = args.part_mb * MiB
    overrides = {
        "BAYPORT_MULTIPART_PART_SIZE": str(part),
        # Every object at or above one part is streamed in parts (the default threshold,
        # 64 MiB, would send a 16 MiB object in a single Put Blob).
        "BAYPORT_MULTIPART_THRESHOLD": str(part),
        "BAYPORT_MULTIPART_PARTS_IN_FLIGHT": str(args.parts_in_flight),
    }
    log = work / "worker.log"
    with bayport_stack(
        work / "bayport",
        broker_url=args.broker_url,
        overrides=overrides,
        workers=args.workers,
        log=log,
        allow_endpoints=[s3.endpoint, azure_url],  # our own local servers
    ) as stack:
        client = BayportClient(stack.url, stack.access_key)
        register_s3_configs(client, s3, {"bench-s3": SOURCE})
        client.create_storage_config(
            name="bench-azure",
            provider="azure",
            account_name=AZURITE_ACCOUNT_NAME,
            account_key=AZURITE_ACCOUNT_KEY,
            container_name=container,
            endpoint=azure_url,
        )
        dataset = client.create_dataset("Big", config_name="bench-azure")
        console.print(
            f"bayport: {args.workers} worker process(es), broker {stack.settings.broker_url}, "
            f"part size {args.part_mb} MiB, concurrency {args.concurrency}"
        )

        worker = stack.workers[0].pid
        rss = TreeRss(worker).start()
        rss_before, pss_before = rss.peak, rss.peak_pss
        moved_before = moved() if moved else 0
        with timed(lambda: tree_cpu_seconds(worker), servers.cpu_seconds) as span:
            job = client.submit(manifest(args.concurrency))
            try:
                done = client.wait(job["id"], timeout=600.0, interval=0.2)
            except TimeoutError:
                done = client.job(job["id"])
        rss.stop()
        moved_during = moved() - moved_before if moved else -1
        client.close()
    counts = done["counts"]
    prefix = f"{dataset.get('path') or ''}{SEGMENT}/"
    arrived, check = check_copies(servers.azure_url, container, prefix, source)
    problem = None
    if done["state"] != "succeeded" or counts["copied"] != len(source.objects):
        problem = (
            f"job {done['state']}: copied {counts['copied']} of {len(source.objects)}, "
            f"failed {counts['failed']}"
        )
        console.print(f"[red]{problem}[/]; the worker log ends:\n{tail(log)}")
    elif not check.startswith("ok"):
        problem = check
    return Run(
        "bayport (Azure pulls)" if through else "bayport",
        counts["copied"],
        arrived * args.size_mb * MiB,
        span.seconds,
        span.cpu,
        span.server_cpu,
        rss.peak,
        rss.largest,
        rss_before,
        problem,
        check,
        moved_during,
        rss.peak_pss,
        pss_before,
    )


def run_pulled(
    servers: Servers, source: Source, work: Path, args: argparse.Namespace, console: Console
) -> Run:
    """Bayport with "Azure" pulling: its worker reaches S3 and the pull proxy (in front of
    Azurite) through byte-counting relays, and the proxy reaches S3 on its own route, so the
    relays count exactly what the worker moved."""
    s3_host = urlsplit(servers.s3.endpoint)
    with ByteRelay(s3_host.hostname or "127.0.0.1", s3_host.port or 80) as s3_relay:
        s3_via = f"127.0.0.1:{s3_relay.port}"
        with pull_proxy(servers.azure_url, {s3_via: s3_host.netloc}) as (proxy_url, counters):
            proxy = urlsplit(proxy_url)
            with ByteRelay(proxy.hostname or "127.0.0.1", proxy.port or 80) as az_relay:
                run = run_bayport(
                    servers,
                    source,
                    work,
                    args,
                    console,
                    through=f"http://127.0.0.1:{az_relay.port}{proxy.path}",
                    s3_via=f"http://{s3_via}",
                    moved=lambda: s3_relay.moved() + az_relay.moved(),
                )
            got = counters()
    console.print(
        f'the pull proxy ("Azure", a process of its own) fetched {got["pulled"] / MiB:,.0f} '
        f"MiB from S3 in {got['put_blob_from_url']} Put Blob From URL call(s); the worker "
        f"moved {run.moved / 1024:,.0f} KiB over the network (both relays)"
    )
    return run


# --- rclone copy --------------------------------------------------------------------------


def run_rclone_copy(
    servers: Servers, source: Source, work: Path, args: argparse.Namespace, console: Console
) -> Run:
    env = {
        **os.environ,
        "RCLONE_CONFIG_SRC_TYPE": "s3",
        "RCLONE_CONFIG_SRC_PROVIDER": "Other",
        "RCLONE_CONFIG_SRC_ENDPOINT": servers.s3.endpoint,
        "RCLONE_CONFIG_SRC_ACCESS_KEY_ID": servers.s3.access_key,
        "RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY": servers.s3.secret_key,
        # An account URL as endpoint is all rclone needs for Azurite (no --azureblob-use-emulator,
        # which would pin the port to 10000).
        "RCLONE_CONFIG_DST_TYPE": "azureblob",
        "RCLONE_CONFIG_DST_ACCOUNT": AZURITE_ACCOUNT_NAME,
        "RCLONE_CONFIG_DST_KEY": AZURITE_ACCOUNT_KEY,
        "RCLONE_CONFIG_DST_ENDPOINT": servers.azure_url,
    }
    config = work / "rclone.conf"  # empty: the remotes come from the environment only
    config.write_text("")
    command = [
        rclone_binary(), "--config", str(config), "copy",
        f"src:{SOURCE}/{DATA_PREFIX}", f"dst:{RCLONE_CONTAINER}/{DATA_PREFIX}",
        "--transfers", str(args.concurrency), "--checkers", str(args.concurrency),
        # Bayport's shape: parts of the same size, one in flight per object.
        "--azureblob-chunk-size", f"{args.part_mb}Mi",
        "--azureblob-upload-concurrency", "1",
    ]  # fmt: skip
    console.print("reference: rclone " + " ".join(command[1:]))
    with timed(children_cpu, servers.cpu_seconds) as span:
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        rss = TreeRss(proc.pid).start()
        stdout, stderr = proc.communicate()
        rss.stop()
    arrived, check = check_copies(servers.azure_url, RCLONE_CONTAINER, DATA_PREFIX, source)
    problem = None
    if proc.returncode != 0:
        problem = f"rclone exited {proc.returncode}"
        console.print(f"[red]{problem}[/]\n{(stdout + stderr)[-3000:]}")
    elif not check.startswith("ok"):
        problem = check
    return Run(
        "rclone copy",
        arrived,
        arrived * args.size_mb * MiB,
        span.seconds,
        span.cpu,
        span.server_cpu,
        rss.peak,
        rss.largest,
        0,
        problem,
        check,
        peak_pss=rss.peak_pss,
    )


@contextlib.contextmanager
def pull_proxy(
    azure_url: str, routes: dict[str, str]
) -> Iterator[tuple[str, Callable[[], dict[str, int]]]]:
    """tests/azure_pull_proxy.py in a process of its own (Azure's work is not the bench's):
    its account URL, and a function that reads its counters. `routes`: see AzurePullProxy."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tests.azure_pull_proxy",
            azure_url, AZURITE_ACCOUNT_NAME, AZURITE_ACCOUNT_KEY,
            *(f"{a}={b}" for a, b in routes.items()),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url:
            raise RuntimeError("the pull proxy did not start")
        base = url.rsplit("/", 1)[0]

        def counters() -> dict[str, int]:
            found: dict[str, int] = requests.get(f"{base}/_pull_proxy/counters", timeout=10).json()
            return found

        yield url, counters
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- the whole benchmark ------------------------------------------------------------------


def render(runs: list[Run], args: argparse.Namespace, console: Console) -> None:
    table = new_table(
        f"S3 → Azure copy of {args.objects} × {args.size_mb} MiB "
        "(rclone serve s3 → Azurite), concurrency "
        f"{args.concurrency}, part size {args.part_mb} MiB",
        (
            "tool",
            "objects",
            "MiB",
            "seconds",
            "MiB/s",
            "worker MiB moved",
            "peak RSS (MiB)",
            "peak PSS (MiB)",
            "largest proc (MiB)",
            "CPU-s",
            "servers CPU-s",
            "check",
        ),
        left=("tool", "check"),
    )
    for r in runs:
        table.add_row(
            r.tool,
            f"{r.objects}",
            f"{r.bytes / MiB:,.0f}",
            f"{r.seconds:.2f}",
            f"{r.bytes / MiB / r.seconds:,.1f}",
            f"{r.moved / MiB:,.2f}" if r.moved >= 0 else "—",
            f"{r.peak_rss / MiB:,.0f}",
            f"{r.peak_pss / MiB:,.0f}",
            f"{r.largest_process / MiB:,.0f}",
            f"{r.cpu:.2f}",
            f"{r.server_cpu:.2f}",
            check_cell(r.problem, ok=r.note, word="WARNING"),
        )
    console.print(table)
    console.print(
        "check: every blob's size and stored Content-MD5 equal the source's, and the first "
        "blob's downloaded bytes hash to the source's MD5; it was committed as N blocks "
        "(Put Block List) or in one Put Blob."
    )
    bound = args.part_mb * args.parts_in_flight
    console.print(
        f"parts in flight × part size = {args.parts_in_flight} × {args.part_mb} MiB = {bound} "
        "MiB: the most Bayport's streamed copies hold of parts at once, per worker process, "
        "on top of the process baseline (BAYPORT_MULTIPART_PARTS_IN_FLIGHT); rclone holds "
        f"--transfers × (its chunk + its --buffer-size read-ahead) = {args.concurrency} × "
        f"({args.part_mb} + 16) MiB. RSS sums the processes' resident pages, PSS counts a "
        "page shared by n processes 1/n in each: a pool process forked from the Celery "
        "parent shares most of its pages with it, which the RSS sum counts twice."
    )
    for r in runs:
        if r.rss_before:
            console.print(
                f"{r.tool}: the worker tree ({args.workers} pool process(es) + the Celery "
                f"parent) held {r.rss_before / MiB:,.0f} MiB RSS ({r.pss_before / MiB:,.0f} "
                f"PSS) before the job, {r.peak_rss / MiB:,.0f} ({r.peak_pss / MiB:,.0f}) at "
                f"peak: growth {(r.peak_rss - r.rss_before) / MiB:,.0f} MiB RSS, "
                f"{(r.peak_pss - r.pss_before) / MiB:,.0f} MiB PSS."
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objects", type=int, default=4, help="objects to copy")
    parser.add_argument("--size-mb", type=int, default=64, help="size of each object, MiB")
    parser.add_argument(
        "--parts-in-flight",
        type=int,
        default=Settings.model_fields["multipart_parts_in_flight"].default,
        help="BAYPORT_MULTIPART_PARTS_IN_FLIGHT for Bayport's worker (default: the product's)",
    )
    parser.add_argument(
        "--part-mb", type=int, default=16, help="multipart part size, MiB (at least 5)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=4, help="copies in flight")
    parser.add_argument(
        "--pull",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run Bayport with Azure pulling from presigned URLs (the proxy)",
    )
    add_broker_argument(parser)


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    runs = measure(args, console)
    render(runs, args, console)
    return 0 if all(r.problem is None for r in runs) else 1


def measure(args: argparse.Namespace, console: Console) -> list[Run]:
    """Both servers up, the source filled, Bayport's import then rclone copy: their runs."""
    with tempfile.TemporaryDirectory(prefix="bayport-bench-xp-") as tmp:
        work = Path(tmp)
        access_key, secret_key = "bench" + secrets.token_hex(4), secrets.token_hex(16)
        with (
            start_rclone_s3(work / "s3", access_key=access_key, secret_key=secret_key) as s3,
            start_azurite(work / "azurite") as azurite,
        ):
            servers = Servers(
                S3Server(s3.url, access_key, secret_key, s3.pid or 0),
                azurite.url,
                azurite.pid or 0,
            )
            s3_client = make_s3_client(servers.s3, pool=4)
            s3_client.create_bucket(Bucket=SOURCE)
            service = blob_service(servers.azure_url)
            for container in (BAYPORT_CONTAINER, RCLONE_CONTAINER, PULLED_CONTAINER):
                service.create_container(container)
            service.close()
            with timed() as filled:
                source = populate(s3_client, args.objects, args.size_mb * MiB)
            console.print(
                f"populated {args.objects} × {args.size_mb} MiB in "
                f"{filled.seconds:.1f}s at {servers.s3.endpoint}; "
                f"Azurite at {servers.azure_url}; {os.cpu_count()} CPUs"
            )
            runs = [run_bayport(servers, source, work, args, console)]
            if getattr(args, "pull", True):
                runs.append(run_pulled(servers, source, work, args, console))
            runs.append(run_rclone_copy(servers, source, work, args, console))
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.crossprovider", description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
