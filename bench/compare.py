"""Issue 8's comparison in one run: Bayport next to `rclone copy` and `s5cmd cp` on the same
`rclone serve s3`, at the same concurrency, on loopback and under 20 ms of emulated latency;
a large-object S3 → Azure copy; an in-place import against the bare listing rate; planning
memory over a 1,000,000-key listing; and scaling over 1, 2 and 4 worker processes. Ends with
a TARGETS table (measured ratio, required ratio, met or MISSED).

Sections (each can be left out with --skip): `small` (10,000 × 16 KiB images + 10,000 labels,
bucket → bucket, server-side, loopback), `latency` (the same through bench/latency.py, which
holds each request back 20 ms), `big` (bench/crossprovider.py with 4 × 256 MiB), `inplace`
(100,000 objects + one COCO file, registered where they are, vs listing them), `rss`
(bench/plan.py's fresh-process planner on a generated 1,000,000-key listing) and `scaling`
(Bayport with 1, 2, 4 worker processes under the latency proxy, fixed per-process
concurrency). The exit status is 1 when a correctness check fails, never for a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from bayport.settings import Settings
from bench import crossprovider, harness, plan
from bench.harness import (
    S3Server,
    add_broker_argument,
    add_database_argument,
    check_cell,
    children_cpu,
    count_keys,
    new_table,
    peak_rss,
    rclone_binary,
    rclone_env,
    s3_client,
    tail,
    timed,
    tool_binary,
)
from bench.latency import LatencyProxy
from bench.procstat import MiB, child_json, process_cpu_seconds, tree_cpu_seconds
from bench.s3import import IMAGE_SIZE
from bench.sync import warm
from cli.client import BayportClient
from cli.stack import LocalStack
from devstack.sample import image_key, label_key, make_label
from devstack.services import start_rclone_s3
from storage_adapters.base import StorageSpec
from storage_adapters.s3 import S3Store

SECTIONS = ("small", "latency", "big", "inplace", "rss", "scaling")
DEFAULT_BROKER = "redis://127.0.0.1:6379/14"  # not the test suites' nor s3import's (15)
SOURCE = "source"
INPLACE = "inplace"
INPLACE_PREFIX = "data/images/"
COCO_KEY = "data/annotations/instances.json"
INPLACE_SIZE = 1024
INPLACE_FOLDER = 1000  # objects per folder: serve s3 serialises a folder's work on one lock
REPO_ROOT = Path(__file__).resolve().parent.parent
RSS_LIMIT = 300 * 10**6  # "worker peak RSS < 300 MB"
_RUNS = itertools.count(1)  # numbers Bayport's destination buckets across stacks


@dataclass
class Row:
    """One timed run of one tool."""

    section: str
    tool: str
    objects: int  # source objects the tool brought over (small: images + labels)
    seconds: float
    cpu: float  # the tool's CPU-s
    server_cpu: float  # rclone serve s3's CPU-s over the run
    requests: int | None = None  # through the latency proxy
    proxy_cpu: float | None = None
    problem: str | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.objects / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Target:
    name: str
    measured: float | None  # None: not measured (a section skipped or failed)
    required: float
    shown: str = ""  # how to print measured (default: a ratio)
    below: bool = False  # met when measured < required (memory), else measured >= required
    required_shown: str = ""  # how to print required (default: ≥ a ratio, or < MB when below)

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured < self.required if self.below else self.measured >= self.required


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        if row.problem is not None:
            self.failures.append(f"{row.section} / {row.tool}: {row.problem}")
        return row

    def rate(self, section: str, tool: str) -> float | None:
        for r in self.rows:
            if r.section == section and r.tool == tool and r.problem is None:
                return r.rate
        return None


# --- the small-object source -------------------------------------------------------------


def populate_small(root: Path, n: int) -> None:
    """Images 1..n (16 KiB random) and their classification labels, written as files into
    the bucket folder root/SOURCE before the server starts (serve s3 caches a folder's
    listing for 5 minutes, so files written after its first look would stay invisible)."""
    for i in (1, n):
        (root / SOURCE / image_key(i)).parent.mkdir(parents=True, exist_ok=True)
        (root / SOURCE / label_key(i)).parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        (root / SOURCE / image_key(i)).write_bytes(os.urandom(IMAGE_SIZE))
        (root / SOURCE / label_key(i)).write_text(json.dumps(make_label(i)))


@dataclass
class Endpoint:
    """Where the tools send their requests: the server itself or the latency proxy."""

    section: str
    s3: S3Server  # endpoint = the URL the tools use; pid = rclone serve s3 (server CPU)
    proxy: LatencyProxy | None = None

    def counters(self) -> tuple[int, float]:
        if self.proxy is None:
            return 0, 0.0
        return self.proxy.requests(), self.proxy.cpu_seconds()


@contextlib.contextmanager
def measured(
    row_args: dict[str, Any], endpoint: Endpoint, tool_cpu: Callable[[], float]
) -> Iterator[dict[str, Any]]:
    """Times the block; fills row_args with seconds, the tool's, the server's and the
    proxy's CPU and the proxy's request count over it."""
    requests, proxy_cpu = endpoint.counters()
    with timed(tool_cpu, lambda: process_cpu_seconds(endpoint.s3.pid)) as span:
        yield row_args
    row_args.update(seconds=span.seconds, cpu=span.cpu, server_cpu=span.server_cpu)
    if endpoint.proxy is not None:
        after_requests, after_cpu = endpoint.counters()
        row_args["requests"] = after_requests - requests
        row_args["proxy_cpu"] = after_cpu - proxy_cpu


def new_bucket(direct: S3Server, name: str) -> str:
    s3_client(direct).create_bucket(Bucket=name)
    return name


# --- Bayport ------------------------------------------------------------------------------


class Bayport:
    """One local stack (the API in this process, a real Celery worker with `workers`
    processes) and its client; imports into a fresh dataset on a fresh bucket each time."""

    def __init__(self, stack: LocalStack, log: Path, direct: S3Server, workers: int) -> None:
        self.stack, self.log, self.direct, self.workers = stack, log, direct, workers
        self.client = BayportClient(stack.url, stack.access_key)
        self._configs: set[str] = set()

    def config(self, name: str, endpoint: str, bucket: str) -> str:
        if name not in self._configs:
            self.client.create_storage_config(
                name=name,
                provider="s3",
                endpoint=endpoint,
                bucket_name=bucket,
                accesskey_id=self.direct.access_key,
                accesskey_secret=self.direct.secret_key,
            )
            self._configs.add(name)
        return name

    def run_job(
        self, endpoint: Endpoint, manifest: dict[str, Any], timeout: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Submit `manifest` and poll (every 0.2 s) until the job is final: the job and the
        measurements (seconds, worker tree CPU, server and proxy counters)."""
        worker = self.stack.workers[0].pid
        row: dict[str, Any] = {}
        with measured(row, endpoint, lambda: tree_cpu_seconds(worker)):
            job = self.client.submit(manifest)
            try:
                done = self.client.wait(job["id"], timeout=timeout, interval=0.2)
            except TimeoutError:
                done = self.client.job(job["id"])
        return done, row

    def copy_small(
        self, endpoint: Endpoint, n: int, *, concurrency: int, shard_size: int, tool: str
    ) -> Row:
        """Server-side import of the n images (+ labels parsed into the ledger) into a
        fresh dataset on a fresh bucket, all through `endpoint`."""
        tag = f"{endpoint.section.split()[0]}-{next(_RUNS)}"
        source = self.config(f"source-{endpoint.section.split()[0]}", endpoint.s3.endpoint, SOURCE)
        bucket = new_bucket(self.direct, f"bayport-{tag}")
        dest = self.config(f"dest-{tag}", endpoint.s3.endpoint, bucket)
        dataset = f"Small-{tag}"
        self.client.create_dataset(dataset, config_name=dest)
        manifest = {
            "dataset": dataset,
            "segment": "default",
            "source": {
                "config_name": source,
                "data_prefix": "data/images/",
                "label_prefix": "data/labels/",
                "label_type": "classification",
            },
            "options": {"concurrency": concurrency, "shard_size": shard_size},
        }
        warm(self.direct, f"{SOURCE}/data/")
        done, measures = self.run_job(endpoint, manifest, timeout=max(900.0, n / 5))
        counts = done["counts"]
        landed = count_keys(s3_client(self.direct), bucket)
        problem = None
        if done["state"] != "succeeded" or counts["copied"] != n or landed != n:
            problem = (
                f"job {done['state']}: copied {counts['copied']:,} of {n:,}, failed "
                f"{counts['failed']:,}; {landed:,} objects in {bucket}"
            )
        note = f"{self.workers} worker process(es) × concurrency {concurrency}"
        return Row(
            endpoint.section, tool, 2 * counts["copied"], problem=problem, note=note, **measures
        )

    def fail_log(self) -> str:
        return tail(self.log)

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def bayport_stack(
    work: Path,
    name: str,
    direct: S3Server,
    workers: int,
    broker: str,
    database_url: str | None = None,
) -> Iterator[Bayport]:
    """Bayport as `bayport standalone` runs it, on SQLite in `work` or, with `database_url`
    (a PostgreSQL server), on a throwaway database there, dropped afterwards."""
    log = work / f"{name}-worker.log"
    with harness.bayport_stack(
        work / f"{name}-bayport",
        broker_url=broker,
        database_url=database_url,
        workers=workers,
        log=log,
        allow_endpoints=[direct.endpoint],  # our own servers (the proxy: same host)
    ) as stack:
        bayport = Bayport(stack, log, direct, workers)
        try:
            yield bayport
        finally:
            bayport.close()


# --- the references -----------------------------------------------------------------------


def run_reference(
    endpoint: Endpoint, direct: S3Server, n: int, *, tool: str, concurrency: int, tag: str
) -> Row:
    """`rclone copy` or `s5cmd cp` of source/data (images + labels) into a fresh bucket."""
    bucket = new_bucket(direct, f"{tool}-{tag}")
    url = endpoint.s3.endpoint
    if tool == "rclone":
        env = rclone_env(endpoint.s3)
        command = [
            rclone_binary(), "--config", os.devnull, "copy",
            f"bench:{SOURCE}/data", f"bench:{bucket}/data",
            "--transfers", str(concurrency), "--checkers", str(concurrency),
        ]  # fmt: skip
        label = "rclone copy"
    else:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": direct.access_key,
            "AWS_SECRET_ACCESS_KEY": direct.secret_key,
            "AWS_REGION": "us-east-1",
        }
        command = [
            tool_binary("s5cmd"), "--endpoint-url", url, "--numworkers", str(concurrency),
            "--log", "error",  # no line per object on stdout
            "cp", f"s3://{SOURCE}/data/*", f"s3://{bucket}/data/",
        ]  # fmt: skip
        label = "s5cmd cp"
    warm(direct, f"{SOURCE}/data/")
    row: dict[str, Any] = {}
    with measured(row, endpoint, children_cpu):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    landed = count_keys(s3_client(direct), bucket, "data/")
    problem = None
    if proc.returncode != 0 or landed != 2 * n:
        problem = f"{label} exited {proc.returncode}, {landed:,} of {2 * n:,} objects arrived"
    if problem:
        problem += f": {(proc.stderr or proc.stdout)[-500:]}"
    shown = " ".join(Path(command[0]).name if i == 0 else a for i, a in enumerate(command))
    return Row(endpoint.section, label, landed, problem=problem, note=shown, **row)


# --- sections: small objects, under latency, scaling ----------------------------------------


def small_sections(
    args: argparse.Namespace, work: Path, results: Results, console: Console, sections: set[str]
) -> None:
    n = args.objects
    root = work / "small-s3"
    for bucket in (SOURCE,):
        (root / bucket).mkdir(parents=True)
    with timed() as written:
        populate_small(root, n)
    console.print(
        f"wrote {n:,} images (16 KiB) + {n:,} labels into {root / SOURCE} in {written.seconds:.1f}s"
    )
    access_key, secret_key = "bench" + secrets.token_hex(4), secrets.token_hex(16)
    with (
        start_rclone_s3(root, access_key=access_key, secret_key=secret_key) as server,
        LatencyProxy(server.url, delay=args.latency_ms / 1000) as proxy,
    ):
        direct = S3Server(server.url, access_key, secret_key, server.pid or 0)
        loopback = Endpoint("loopback", direct)
        delayed = Endpoint(
            f"latency {args.latency_ms:g} ms",
            S3Server(proxy.endpoint, access_key, secret_key, server.pid or 0),
            proxy,
        )
        console.print(
            f"rclone serve s3 at {direct.endpoint}; latency proxy (pid {proxy.pid}) at "
            f"{proxy.endpoint}, {args.latency_ms:g} ms per request"
        )
        c, w = args.concurrency, args.workers
        endpoints = [e for e, s in ((loopback, "small"), (delayed, "latency")) if s in sections]
        if endpoints:
            console.rule(f"small objects: {n:,} images + {n:,} labels, concurrency {c}")
            small = bayport_stack(work, "small", direct, w, args.broker_url, args.database_url)
            with small as bayport:
                for endpoint in endpoints:
                    tag = endpoint.section.split()[0]
                    console.print(
                        f"[bold]{endpoint.section}[/]: bayport, {w} worker processes "
                        f"× concurrency {c // w}"
                    )
                    row = results.add(
                        bayport.copy_small(
                            endpoint,
                            n,
                            concurrency=max(1, c // w),
                            shard_size=args.shard_size,
                            tool="bayport",
                        )
                    )
                    _report(row, console, bayport)
                    for tool in ("rclone", "s5cmd"):
                        row = results.add(
                            run_reference(endpoint, direct, n, tool=tool, concurrency=c, tag=tag)
                        )
                        _report(row, console)
            for endpoint in endpoints:
                for ref, required in (("rclone copy", 1.0), ("s5cmd cp", 0.7)):
                    ours = results.rate(endpoint.section, "bayport")
                    theirs = results.rate(endpoint.section, ref)
                    results.targets.append(
                        Target(
                            f"small objects, {endpoint.section}: bayport ÷ {ref} objects/s",
                            ours / theirs if ours and theirs else None,
                            required,
                        )
                    )
            render_small(results, [e.section for e in endpoints], console)
        if "scaling" in sections:
            scaling(args, work, direct, delayed, results, console)


def scaling(
    args: argparse.Namespace,
    work: Path,
    direct: S3Server,
    delayed: Endpoint,
    results: Results,
    console: Console,
) -> None:
    n, per = args.objects, args.scaling_concurrency
    # Enough shards for 4 processes to share: at least 16.
    shard_size = min(args.shard_size, max(25, math.ceil(n / 16)))
    console.rule(
        f"scaling under {delayed.section}: 1, 2, 4 worker processes × concurrency {per}, "
        f"shard size {shard_size}"
    )
    section = f"scaling ({delayed.section})"
    for workers in args.scaling_workers:
        with bayport_stack(
            work, f"scaling-{workers}", direct, workers, args.broker_url, args.database_url
        ) as bp:
            row = bp.copy_small(
                delayed, n, concurrency=per, shard_size=shard_size, tool=f"bayport × {workers}"
            )
            row.section = section
            row.note = f"{workers} worker process(es) × concurrency {per}"
            results.add(row)
            _report(row, console, bp)
    base = results.rate(section, f"bayport × {args.scaling_workers[0]}")
    for workers, required in ((2, 1.7), (4, 3.0)):
        if workers in args.scaling_workers:
            got = results.rate(section, f"bayport × {workers}")
            results.targets.append(
                Target(
                    f"scaling under latency: {workers} ÷ 1 worker processes, objects/s",
                    got / base if got and base and args.scaling_workers[0] == 1 else None,
                    required,
                )
            )
    render_rows(
        [r for r in results.rows if r.section == section],
        f"Bayport scaling under {delayed.section}, concurrency {per} per process",
        console,
    )


def _report(row: Row, console: Console, bayport: Bayport | None = None) -> None:
    extra = ""
    if row.requests:
        extra = f", {row.requests:,} requests through the proxy"
    console.print(
        f"  {row.tool}: {row.objects:,} objects in {row.seconds:.1f}s = {row.rate:,.0f}/s, "
        f"CPU {row.cpu:.1f}s, server CPU {row.server_cpu:.1f}s{extra}"
    )
    if row.problem:
        console.print(f"  [red]FAILED: {row.problem}[/]")
        if bayport is not None:
            console.print(f"the worker log ends:\n{bayport.fail_log()}")


def render_rows(rows: list[Row], title: str, console: Console) -> None:
    table = new_table(
        title,
        ("section", "tool", "objects", "seconds", "objects/s", "CPU-s / 1k obj",
         "server CPU-s / 1k", "requests / obj", "proxy CPU µs / req", "check"),
        left=("section", "tool", "check"),
    )  # fmt: skip
    for r in rows:
        per_k = 1000 / max(r.objects, 1)
        table.add_row(
            r.section,
            r.tool,
            f"{r.objects:,}",
            f"{r.seconds:.1f}",
            f"{r.rate:,.0f}",
            f"{r.cpu * per_k:.2f}",
            f"{r.server_cpu * per_k:.2f}",
            f"{r.requests / max(r.objects, 1):.2f}" if r.requests else "",
            f"{(r.proxy_cpu or 0) / r.requests * 1e6:,.0f}" if r.requests else "",
            check_cell(r.problem),
        )
    console.print(table)


def render_small(results: Results, sections: list[str], console: Console) -> None:
    rows = [r for r in results.rows if r.section in sections]
    render_rows(
        rows, "Small objects, bucket → bucket (server-side) through rclone serve s3", console
    )
    for r in rows:
        if r.tool != "bayport":
            console.print(f"  {r.section}: {r.note}")
    console.print(
        "objects = the images and labels each tool brought over (Bayport: images copied + "
        "their labels read and parsed into the ledger). CPU-s / 1k obj: the tool's CPU (the "
        "worker process tree / the rclone or s5cmd process); server: rclone serve s3. "
        "requests / obj and proxy CPU: counted by the latency proxy."
    )


# --- section: in-place import vs listing ----------------------------------------------------


def inplace_key(i: int) -> str:
    return f"{INPLACE_PREFIX}{inplace_name(i)}"


def inplace_name(i: int) -> str:
    """The object's path below the data prefix: its COCO file_name."""
    return f"{i // INPLACE_FOLDER:03d}/{i:06d}.png"


def populate_inplace(root: Path, n: int) -> int:
    """n objects of 1 KiB in folders of INPLACE_FOLDER, and one COCO instances file naming
    every one (one box each), written into root/INPLACE before the server starts; returns
    the COCO file's size."""
    bucket = root / INPLACE
    for i in range(n):
        path = bucket / inplace_key(i)
        if i % INPLACE_FOLDER == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(INPLACE_SIZE))
    coco = bucket / COCO_KEY
    coco.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(8)
    with coco.open("w") as out:
        out.write('{"images": [')
        out.write(
            ",".join(
                json.dumps({"id": i + 1, "file_name": inplace_name(i), "width": 64, "height": 64})
                for i in range(n)
            )
        )
        out.write('], "annotations": [')
        annotations = []
        for i in range(n):
            x, y = rng.randint(0, 40), rng.randint(0, 40)
            annotations.append(
                json.dumps(
                    {
                        "id": i + 1,
                        "image_id": i + 1,
                        "category_id": 1 + i % 3,
                        "bbox": [x, y, 16, 16],
                        "area": 256,
                        "iscrowd": 0,
                    }
                )
            )
        out.write(",".join(annotations))
        out.write('], "categories": [')
        out.write(",".join(json.dumps({"id": c, "name": f"class-{c}"}) for c in (1, 2, 3)))
        out.write("]}")
    return coco.stat().st_size


BAYPORT_LISTING = "bayport S3Store.list_page"


def list_with(tool: str, direct: S3Server, n: int) -> Row:
    """Time one bare listing of the n keys below INPLACE_PREFIX."""
    endpoint = Endpoint("in-place", direct)
    row: dict[str, Any] = {}
    problem = None
    if tool == "boto3 list_objects_v2":
        client = s3_client(direct)
        with measured(row, endpoint, lambda: process_cpu_seconds(os.getpid())):
            found = count_keys(client, INPLACE, INPLACE_PREFIX)
    elif tool == BAYPORT_LISTING:
        store = S3Store(
            StorageSpec(
                "s3",
                INPLACE,
                endpoint=direct.endpoint,
                credentials={
                    "accesskey_id": direct.access_key,
                    "accesskey_secret": direct.secret_key,
                },
            )
        )
        with measured(row, endpoint, lambda: process_cpu_seconds(os.getpid())):
            found, cursor = 0, None
            while True:
                page = store.list_page(INPLACE_PREFIX, cursor=cursor)
                found += len(page.objects)
                if (cursor := page.cursor) is None:
                    break
    else:
        if tool == "rclone lsf":
            command = [
                rclone_binary(), "--config", os.devnull, "lsf", "-R", "--files-only",
                "--fast-list", f"bench:{INPLACE}/{INPLACE_PREFIX}",
            ]  # fmt: skip
            env = rclone_env(direct)
        else:
            command = [
                tool_binary("s5cmd"), "--endpoint-url", direct.endpoint,
                "ls", f"s3://{INPLACE}/{INPLACE_PREFIX}*",
            ]  # fmt: skip
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": direct.access_key,
                "AWS_SECRET_ACCESS_KEY": direct.secret_key,
                "AWS_REGION": "us-east-1",
            }
        with measured(row, endpoint, children_cpu):
            proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        found = len(proc.stdout.splitlines())
        if proc.returncode != 0:
            problem = f"exited {proc.returncode}: {proc.stderr[-300:]}"
    if found != n and problem is None:
        problem = f"listed {found:,} of {n:,} keys"
    return Row("in-place", f"listing: {tool}", found, problem=problem, **row)


def inplace_section(
    args: argparse.Namespace, work: Path, results: Results, console: Console
) -> None:
    n = args.inplace_objects
    console.rule(f"in-place import of {n:,} objects vs listing them")
    root = work / "inplace-s3"
    (root / INPLACE).mkdir(parents=True)
    with timed() as written:
        coco_bytes = populate_inplace(root, n)
    console.print(
        f"wrote {n:,} objects of {INPLACE_SIZE} B in folders of {INPLACE_FOLDER:,} and "
        f"{COCO_KEY} ({coco_bytes / 1e6:.1f} MB) in {written.seconds:.1f}s"
    )
    access_key, secret_key = "bench" + secrets.token_hex(4), secrets.token_hex(16)
    with start_rclone_s3(root, access_key=access_key, secret_key=secret_key) as server:
        direct = S3Server(server.url, access_key, secret_key, server.pid or 0)
        seconds = warm(direct, f"{INPLACE}/{INPLACE_PREFIX}")
        console.print(f"warm-up listing (serve s3 computes each file's MD5): {seconds:.1f}s")
        listings = []
        for tool in (BAYPORT_LISTING, "boto3 list_objects_v2", "rclone lsf", "s5cmd ls"):
            warm(direct, f"{INPLACE}/{INPLACE_PREFIX}")
            listings.append(results.add(list_with(tool, direct, n)))
            _report(listings[-1], console)
        ok = [r for r in listings if r.problem is None]
        fastest = max(ok, key=lambda r: r.rate) if ok else None
        own = next((r for r in ok if r.tool == f"listing: {BAYPORT_LISTING}"), None)
        endpoint = Endpoint("in-place", direct)
        w = args.workers
        inplace = bayport_stack(work, "inplace", direct, w, args.broker_url, args.database_url)
        with inplace as bayport:
            config = bayport.config("inplace", direct.endpoint, INPLACE)
            variants = (
                ("bayport in-place + COCO labels", {"label_format": "coco", "coco_file": COCO_KEY}),
                ("bayport in-place, no labels", {}),
            )
            for number, (tool, labels) in enumerate(variants, start=1):
                dataset = f"InPlace-{number}"
                # The dataset lies at the source folder: the import registers, copies nothing.
                bayport.client.create_dataset(dataset, config_name=config, path=INPLACE_PREFIX)
                manifest = {
                    "dataset": dataset,
                    "segment": "default",
                    "source": {"config_name": config, "data_prefix": INPLACE_PREFIX, **labels},
                    "options": {"concurrency": max(1, args.concurrency // w), "shard_size": 1000},
                }
                warm(direct, f"{INPLACE}/{INPLACE_PREFIX}")
                done, measures = bayport.run_job(endpoint, manifest, timeout=max(900.0, n / 50))
                c = done["counts"]
                problem = None
                if (
                    done["state"] != "succeeded"
                    or not done["in_place"]
                    or (c["registered"], c["copied"], c["failed"]) != (n, 0, 0)
                ):
                    problem = (
                        f"job {done['state']}, in_place {done['in_place']}: registered "
                        f"{c['registered']:,} of {n:,}, copied {c['copied']:,}, failed "
                        f"{c['failed']:,}"
                    )
                elif labels:
                    problem = _check_coco_labels(bayport.client, dataset)
                row = results.add(
                    Row(
                        "in-place",
                        tool,
                        c["registered"],
                        problem=problem,
                        note=f"{w} worker processes",
                        **measures,
                    )
                )
                _report(row, console, bayport)
    labelled = results.rate("in-place", variants[0][0])
    # Issue 22's targets: ≥ 0.8 × rclone lsf's objects/s, and ≥ 0.9 × the same listing
    # Bayport's import makes (its S3 adapter), which isolates what the import adds to it.
    lsf = next((r for r in ok if r.tool == "listing: rclone lsf"), None)
    results.targets.append(
        Target(
            "in-place import (+ COCO labels) ÷ rclone lsf objects/s",
            labelled / lsf.rate if labelled and lsf else None,
            0.8,
        )
    )
    results.targets.append(
        Target(
            "in-place import (+ COCO labels) ÷ Bayport's own listing (its S3 adapter) objects/s",
            labelled / own.rate if labelled and own else None,
            0.9,
        )
    )
    table = new_table(
        f"In-place import of {n:,} objects vs listing them (rclone serve s3)",
        ("run", "objects", "seconds", "objects/s", "÷ fastest listing", "CPU-s", "server CPU-s",
         "check"),
        left=("run", "check"),
    )  # fmt: skip
    for r in (row for row in results.rows if row.section == "in-place"):
        table.add_row(
            r.tool,
            f"{r.objects:,}",
            f"{r.seconds:.1f}",
            f"{r.rate:,.0f}",
            f"{r.rate / fastest.rate:.2f}" if fastest else "",
            f"{r.cpu:.1f}",
            f"{r.server_cpu:.1f}",
            check_cell(r.problem),
        )
    console.print(table)
    reference = fastest.tool.split(": ")[1] if fastest else "none"
    console.print(
        "listing: one recursive listing of the keys below data/images/ (Bayport's S3 adapter "
        "and boto3 in this process: their CPU is this whole process's; rclone lsf -R "
        "--fast-list; s5cmd ls with a "
        f"wildcard). Fastest: {reference}. Bayport: listing + "
        "COCO file read and indexed + ledger writes (registered where they are, no copy), "
        "submit to final; CPU is the worker process tree's."
    )


def _check_coco_labels(client: BayportClient, dataset: str) -> str | None:
    page = client.request(
        "GET", f"/v1/datasets/{dataset}/segments/default/data", params={"limit": 5}
    )
    for item in page["items"]:
        boxes = (item.get("label") or {}).get("BOX2D") or []
        if len(boxes) != 1:
            return f"{item['remote_path']}: label {item.get('label')}, expected one BOX2D"
    return None if page["items"] else "the segment lists no data"


# --- section: planning memory over a generated 1,000,000-key listing --------------------------


def rss_section(args: argparse.Namespace, results: Results, console: Console) -> None:
    keys = args.rss_keys
    console.rule(f"planning memory over a generated {keys:,}-key listing")
    console.print(f"planning {keys:,} keys in a fresh process (bench/plan.py) ...")
    planned = plan.measure(keys)
    plan.render([planned], console)
    problem = None
    if planned.listed != keys or planned.shards != -(-keys // plan.SHARD_SIZE):
        problem = f"listed {planned.listed:,}, {planned.shards:,} shards"
        results.failures.append(f"rss / plan {keys:,}: {problem}")
    peaks = [(f"plan_import of a generated {keys:,}-key listing", planned.peak_rss)]
    if args.rss_inplace_keys:
        m = args.rss_inplace_keys
        console.print(
            f"in-place import (plan + every shard registered) of a generated {m:,}-key listing "
            "in a fresh process ..."
        )
        done = measure_inplace_generated(m)
        console.print(
            f"  {m:,} keys: {done['seconds']:.1f}s ({m / done['seconds']:,.0f}/s), peak RSS "
            f"{done['peak_rss'] / MiB:.1f} MiB (before {done['rss_before'] / MiB:.1f} MiB), "
            f"job {done['state']}, registered {done['registered']:,}"
        )
        if done["state"] != "succeeded" or done["registered"] != m:
            results.failures.append(
                f"rss / in-place generated {m:,}: job {done['state']}, registered "
                f"{done['registered']:,}"
            )
        peaks.append((f"in-place import of a generated {m:,}-key listing", done["peak_rss"]))
    for what, peak in peaks:
        results.targets.append(
            Target(
                f"worker peak RSS, {what}",
                peak,
                RSS_LIMIT,
                shown=f"{peak / 1e6:,.0f} MB",
                below=True,
            )
        )


class _InlineShards:
    """The Enqueuer port: remembers the shards planning sends, runs nothing itself."""

    def __init__(self) -> None:
        self.shards: list[str] = []

    def plan_import(self, job_id: str) -> None:
        pass

    def copy_shard(
        self, shard_id: str, *, job_id: str | None = None, seq: int | None = None
    ) -> None:
        self.shards.append(shard_id)

    def run_schedule(self, run_id: str) -> None:
        pass


def inplace_generated_once(keys: int) -> dict[str, Any]:
    """An in-place import of a generated listing, planned (its pages registered by the
    planning) and any shard registered in this process (a worker's work, without Celery),
    SQLite ledger; meant for a fresh process. Returns seconds, peak RSS and the outcome."""
    from importer import service
    from metadata.models import ImportJob

    queue = _InlineShards()
    generated = plan.generated_import(keys, queue, in_place=True, prefix="bayport-bench-inplace-")
    with generated as (ctx, job_id):
        with peak_rss() as memory:
            service.plan_import(ctx, job_id)
            for shard_id in queue.shards:
                service.copy_shard(ctx, shard_id)
        with ctx.db.uow() as uow:
            final = uow.session.get(ImportJob, job_id)
            state = str(final.state) if final else "missing"
            registered = final.registered if final else 0
            in_place = bool(final and final.in_place)
    return {
        "keys": keys,
        "seconds": memory.seconds,
        "rss_before": memory.rss_before,
        "peak_rss": memory.peak_rss,
        "state": state.rsplit(".", 1)[-1].lower(),
        "registered": registered,
        "in_place": in_place,
    }


def measure_inplace_generated(keys: int) -> dict[str, Any]:
    return child_json(
        "bench.compare", "--child-inplace", str(keys), what=f"in-place import of {keys} keys"
    )


# --- section: large objects cross-provider -------------------------------------------------


def big_section(args: argparse.Namespace, results: Results, console: Console) -> None:
    console.rule(f"large objects cross-provider: {args.big_objects} × {args.big_mb} MiB S3 → Azure")
    xp = argparse.Namespace(
        objects=args.big_objects,
        size_mb=args.big_mb,
        part_mb=min(16, max(5, args.big_mb)),
        workers=1,
        concurrency=args.big_objects,
        broker_url=args.broker_url,
        pull=True,
        parts_in_flight=args.big_parts_in_flight,
    )
    runs = crossprovider.measure(xp, console)
    crossprovider.render(runs, xp, console)
    for r in runs:
        if r.problem is not None:
            results.failures.append(f"big / {r.tool}: {r.problem}")
    by_tool = {r.tool: r for r in runs if r.problem is None}
    ours, theirs = by_tool.get("bayport"), by_tool.get("rclone copy")
    if ours and theirs:
        speed = (ours.bytes / ours.seconds) / (theirs.bytes / theirs.seconds)
        console.print(
            f"bayport ÷ rclone copy: MiB/s {speed:.2f}×, peak RSS "
            f"{ours.peak_rss / max(theirs.peak_rss, 1):.2f}×, peak PSS "
            f"{ours.peak_pss / max(theirs.peak_pss, 1):.2f}×"
        )
    # Issue 22, target 4: large objects streamed at least at rclone's rate, in no more memory.
    results.targets.append(
        Target(
            f"S3→Azure {args.big_objects}×{args.big_mb} MiB, streamed: MiB/s ÷ rclone copy",
            speed if ours and theirs else None,
            1.0,
        )
    )
    for measure, name in (
        ("peak_pss", "… worker tree peak PSS ÷ rclone copy's (shared pages counted once)"),
        ("peak_rss", "… worker tree peak RSS ÷ rclone copy's (the RSS sum: shared pages twice)"),
    ):
        mine, rclones = (getattr(r, measure) if r else 0 for r in (ours, theirs))
        results.targets.append(
            Target(
                name,
                mine / max(rclones, 1) if ours and theirs else None,
                1.0,
                shown=f"{mine / MiB:,.0f} ÷ {rclones / MiB:,.0f} MiB" if ours and theirs else "",
                below=True,
                required_shown="≤ 1.0×",
            )
        )
    pulled = by_tool.get("bayport (Azure pulls)")
    copied = args.big_objects * args.big_mb * MiB
    # Issue 22, target 1: a cross-provider copy that moves no byte through the worker.
    results.targets.append(
        Target(
            f"S3→Azure {args.big_objects}×{args.big_mb} MiB, Azure pulls: MiB/s ÷ rclone copy",
            (pulled.bytes / pulled.seconds) / (theirs.bytes / theirs.seconds)
            if pulled and theirs
            else None,
            3.0,
        )
    )
    results.targets.append(
        Target(
            "… bytes the worker moved (read + written)",
            pulled.moved if pulled else None,
            max(copied // 100, 16 * MiB),  # ≈ 0: under 1% of what was copied
            shown=f"{pulled.moved / MiB:,.1f} MiB of {copied / MiB:,.0f}" if pulled else "",
            below=True,
        )
    )


# --- the whole benchmark ------------------------------------------------------------------


def render_targets(results: Results, console: Console) -> None:
    table = new_table(
        "TARGETS (ratios measured in this run)",
        ("target", "measured", "required", ""),
        left=("target", ""),
    )
    for t in results.targets:
        if t.measured is None:
            measured, verdict = "—", "[yellow]not measured[/]"
        else:
            measured = t.shown or f"{t.measured:.2f}×"
            verdict = "[green]met[/]" if t.met else "[bold red]MISSED[/]"
        required = t.required_shown or (
            f"< {t.required / 1e6:,.0f} MB" if t.below else f"≥ {t.required:.1f}×"
        )
        table.add_row(t.name, measured, required, verdict)
    console.print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_argument(
        parser, "PostgreSQL server for Bayport's ledger (a throwaway database; default: SQLite)"
    )
    parser.add_argument(
        "--objects", type=int, default=10_000, help="small objects: images (and as many labels)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight for every tool (C)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="Bayport worker processes W (manifest C // W)"
    )
    parser.add_argument("--shard-size", type=int, default=500, help="Bayport's shard size")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="proxy delay per request")
    parser.add_argument(
        "--scaling-workers",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[1, 2, 4],
        help="worker process counts for the scaling section (default 1,2,4)",
    )
    parser.add_argument(
        "--scaling-concurrency", type=int, default=4, help="manifest concurrency per process"
    )
    parser.add_argument("--big-objects", type=int, default=4, help="large objects")
    parser.add_argument("--big-mb", type=int, default=256, help="size of each large object, MiB")
    parser.add_argument(
        "--big-parts-in-flight",
        type=int,
        default=Settings.model_fields["multipart_parts_in_flight"].default,
        help="the worker's BAYPORT_MULTIPART_PARTS_IN_FLIGHT in the big section",
    )
    parser.add_argument(
        "--inplace-objects", type=int, default=100_000, help="objects of the in-place import"
    )
    parser.add_argument(
        "--rss-keys", type=int, default=1_000_000, help="generated keys planned for peak RSS"
    )
    parser.add_argument(
        "--rss-inplace-keys",
        type=int,
        default=1_000_000,
        help="also import a generated listing of this many keys in place, in one process "
        "(plan + every shard registered), for its peak RSS; 0: leave it out (1,000,000 "
        "takes about 2 minutes)",
    )
    parser.add_argument(
        "--skip", action="append", choices=SECTIONS, default=[], help="leave a section out"
    )
    add_broker_argument(parser, DEFAULT_BROKER)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    console.width = max(console.width, 150)  # the summary tables stay on one line per run
    sections = set(SECTIONS) - set(args.skip)
    work = Path(tempfile.mkdtemp(prefix="bayport-bench-compare-"))
    results = Results()
    started = time.perf_counter()
    console.print(
        f"bench compare: sections {', '.join(s for s in SECTIONS if s in sections)}; "
        f"{os.cpu_count()} CPUs; broker {args.broker_url}; work folder {work}"
    )

    def attempt(name: str, body: Callable[[], None]) -> None:
        try:
            body()
        except Exception as exc:
            console.print_exception(max_frames=8)
            results.failures.append(f"{name}: {type(exc).__name__}: {exc}")

    try:
        if sections & {"small", "latency", "scaling"}:
            attempt("small objects", lambda: small_sections(args, work, results, console, sections))
        if "big" in sections:
            attempt("big", lambda: big_section(args, results, console))
        if "inplace" in sections:
            attempt("in-place", lambda: inplace_section(args, work, results, console))
        if "rss" in sections:
            attempt("rss", lambda: rss_section(args, results, console))
    finally:
        if args.keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    console.rule("summary")
    if results.rows:
        render_rows(results.rows, "Every timed run", console)
    render_targets(results, console)
    console.print(f"{time.perf_counter() - started:,.0f}s in all; {os.cpu_count()} CPUs.")
    for failure in results.failures:
        console.print(f"[bold red]FAILED[/] {failure}")
    return 1 if results.failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--child-inplace", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_inplace is not None:
        print(json.dumps(inplace_generated_once(args.child_inplace)))
        return
    sys.exit(run(args, Console(width=max(Console().width, 120))))


if __name__ == "__main__":
    main()
