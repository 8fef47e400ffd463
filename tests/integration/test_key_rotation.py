"""Secret key rotation: `rotate_credentials` re-seals every stored credential once, in short
transactions, idempotently and resumably, on SQLite and PostgreSQL; `bayport rotate-secrets`
reports counts and fails clearly on a key it does not have; and the zero-downtime procedure of
the README runs under a live import (rolling restarts of the workers and the API through
"old" -> "old,new" -> "new,old" -> rotate -> "new") which ends with no object failed, and
credentials that only the new key opens."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlmodel import select

from bayport.settings import Settings
from cli.client import FINAL_STATES, BayportClient
from cli.stack import free_port
from crypto.secretbox import SecretBox, SecretBoxError, SecretKeyError
from devstack.sample import populate
from metadata.db import Database, migrate
from metadata.models import StorageConfig
from metadata.queries import workspaces as workspaces_q
from services.credential_rotation import RotationReport, _reseal, rotate_credentials
from taskqueue.app import make_celery
from tests.drills import verify_import
from tests.support import register_s3_pair, seed_manifest, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _key() -> bytes:
    return Fernet.generate_key()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bayport.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    migrate(url)
    db = Database(url)
    yield db
    db.dispose()


def _add_configs(db: Database, box: SecretBox, count: int, *, prefix: str) -> dict[str, str]:
    """`count` S3 configs sealed by `box` in two workspaces; their secrets by config id."""
    secrets: dict[str, str] = {}
    with db.uow() as uow:
        workspaces = [
            workspaces_q.create_workspace(uow.session, name=f"ws{i}")[0] for i in range(2)
        ]
        uow.commit()
    with db.uow() as uow:
        for i in range(count):
            secret = f"{prefix}-secret-{i}-{uuid.uuid4().hex}"
            config = StorageConfig(
                workspace_id=workspaces[i % 2].id,
                name=f"{prefix}-{i}",
                provider="s3",
                bucket_name="bucket",
                credentials_encrypted=box.seal(
                    {"accesskey_id": f"AK{i}", "accesskey_secret": secret}
                ),
            )
            uow.session.add(config)
            secrets[config.id] = secret
        uow.commit()
    return secrets


def _sealed(db: Database) -> dict[str, bytes]:
    with db.uow() as uow:
        rows = uow.session.exec(select(StorageConfig.id, StorageConfig.credentials_encrypted)).all()
    return {config_id: sealed for config_id, sealed in rows}


def test_rotation_reseals_every_old_row_once_and_leaves_the_rest(database: Database) -> None:
    old, new, lost = _key(), _key(), _key()
    box = SecretBox([new, old])
    under_old = _add_configs(database, SecretBox([old]), 23, prefix="old")
    under_new = _add_configs(database, box, 4, prefix="new")
    unreadable = _add_configs(database, SecretBox([lost]), 1, prefix="lost")
    before = _sealed(database)

    dry = rotate_credentials(database, box, batch_size=5, dry_run=True)
    assert (dry.examined, dry.resealed, dry.current, dry.remaining) == (28, 23, 4, 23)
    assert len(dry.unreadable) == 1 and dry.unreadable[0].endswith("/lost-0")
    assert _sealed(database) == before, "a dry run changed rows"

    batches: list[int] = []
    report = rotate_credentials(
        database, box, batch_size=5, progress=lambda r: batches.append(r.examined)
    )
    assert batches == [5, 10, 15, 20, 25, 28]
    assert (report.examined, report.resealed, report.current, report.remaining) == (28, 23, 4, 0)
    after = _sealed(database)
    only_new, only_old = SecretBox([new]), SecretBox([old])
    for config_id, secret in {**under_old, **under_new}.items():
        assert only_new.open(after[config_id])["accesskey_secret"] == secret
        with pytest.raises(SecretBoxError):
            only_old.open(after[config_id])
    for config_id in under_new:  # already under the newest key: not rewritten
        assert after[config_id] == before[config_id]
    for config_id in unreadable:  # no key opens it: left as it was, and reported
        assert after[config_id] == before[config_id]

    again = rotate_credentials(database, box, batch_size=5)
    assert (again.resealed, again.current, again.remaining) == (0, 27, 0)
    assert _sealed(database) == after


def test_an_interrupted_rotation_resumes_where_it_stopped(database: Database) -> None:
    old, new = _key(), _key()
    box = SecretBox([new, old])
    secrets = _add_configs(database, SecretBox([old]), 12, prefix="cfg")

    class Interrupted(Exception):
        pass

    def stop_after_first_batch(report: RotationReport) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        rotate_credentials(database, box, batch_size=5, progress=stop_after_first_batch)
    resumed = rotate_credentials(database, box, batch_size=5)
    assert (resumed.resealed, resumed.current) == (7, 5)
    after = _sealed(database)
    assert all(SecretBox([new]).open(after[i])["accesskey_secret"] == s for i, s in secrets.items())


def test_a_row_changed_while_rotating_is_resealed_as_it_is_now(database: Database) -> None:
    """The write is a compare-and-set on the sealed bytes read: credentials replaced meanwhile
    (a config re-created with new keys) are re-sealed from their new value, never overwritten
    with the stale one."""
    old, new = _key(), _key()
    box = SecretBox([new, old])
    (config_id,) = _add_configs(database, SecretBox([old]), 1, prefix="cfg")
    stale = _sealed(database)[config_id]
    with database.uow() as uow:
        config = uow.session.get(StorageConfig, config_id)
        assert config is not None
        config.credentials_encrypted = SecretBox([old]).seal({"accesskey_secret": "replaced"})
        uow.session.add(config)
        uow.commit()

    report = RotationReport()
    _reseal(database, box, config_id, "ws/cfg", stale, report)
    assert report.resealed == 1
    assert SecretBox([new]).open(_sealed(database)[config_id]) == {"accesskey_secret": "replaced"}


def test_a_malformed_key_is_named_by_position_not_value() -> None:
    good = _key()
    with pytest.raises(SecretKeyError, match="key 2 of 2 is not a Fernet key") as caught:
        SecretBox([good, b"not-a-fernet-key-at-all"])
    assert "not-a-fernet-key-at-all" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def _outside_env() -> dict[str, str]:
    """This process's environment without its BAYPORT_ settings: each test names its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BAYPORT_")}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**_outside_env(), "COLUMNS": "400", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_rotate_secrets_command_counts_and_refuses_unknown_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bayport.db'}"
    migrate(url)
    db = Database(url)
    old, new = _key(), _key()
    _add_configs(db, SecretBox([old]), 3, prefix="cfg")
    before = _sealed(db)
    env = {"BAYPORT_DATABASE_URL": url, "BAYPORT_DATA_DIR": str(tmp_path)}

    # A key that opens nothing: a clear error naming the configs, no traceback, no token.
    stranger = _key().decode()
    run = _cli({**env, "BAYPORT_SECRET_KEY": stranger}, "rotate-secrets")
    said = run.stdout + run.stderr
    assert run.returncode == 1, said
    assert "3 cannot be opened by any key in BAYPORT_SECRET_KEY" in said, said
    assert "Traceback" not in said
    assert all(token.decode() not in said for token in before.values())
    assert stranger not in said

    # No key given: told to give them (not a development key made up on the spot).
    run = _cli(env, "rotate-secrets")
    assert run.returncode == 2 and "set BAYPORT_SECRET_KEY" in run.stdout, run.stdout + run.stderr
    assert not (tmp_path / "secret.key").exists()

    # A malformed key: which one, never its value.
    run = _cli({**env, "BAYPORT_SECRET_KEY": f"{new.decode()},oops-not-a-key"}, "rotate-secrets")
    said = run.stdout + run.stderr
    assert run.returncode == 2 and "key 2 of 2 is not a Fernet key" in said, said
    assert "oops-not-a-key" not in said and "Traceback" not in said

    both = {**env, "BAYPORT_SECRET_KEY": f"{new.decode()},{old.decode()}"}
    run = _cli(both, "rotate-secrets", "--dry-run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "would re-seal 3 of 3 storage configs; 0 already under the newest key; " in run.stdout
    assert "3 remain under old keys" in run.stdout
    assert _sealed(db) == before

    run = _cli(both, "rotate-secrets", "--batch-size", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "re-sealed 3 of 3 storage configs; 0 already under the newest key; " in run.stdout
    assert "0 remain under old keys" in run.stdout
    run = _cli(both, "rotate-secrets")
    assert "re-sealed 0 of 3 storage configs; 3 already under the newest key" in run.stdout
    db.dispose()


# --- the zero-downtime procedure under a live import ----------------------------------------

N, SHARD = 400, 4  # 100 shards
# Shard tasks per worker while the procedure runs: at most 2 objects/s per worker, so the
# job outlasts the procedure even on a slow machine; lifted once it is done (Celery's own
# rate limit, broadcast to the workers; the import code is untouched).
SHARD_RATE, UNTHROTTLED = "30/m", "1000/s"


class _Service:
    """The API and worker processes of one Bayport, restarted one by one with new settings."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.control = make_celery(Settings(broker_url=env["BAYPORT_BROKER_URL"]))
        self.procs: list[subprocess.Popen[bytes]] = []
        self._n = 0

    def _spawn(
        self, command: list[str], keys: str, name: str
    ) -> tuple[subprocess.Popen[bytes], Path]:
        self._n += 1
        log = self.logs / f"{self._n:02d}-{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *command],
            env={**self.env, "BAYPORT_SECRET_KEY": keys},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.procs.append(proc)
        return proc, log

    def start(self, keys: str) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str]:
        """A worker and an API process with BAYPORT_SECRET_KEY=`keys`, both ready; the API's
        URL."""
        worker, worker_log = self._spawn(["worker", "--processes", "2"], keys, "worker")
        port = free_port()
        api, _ = self._spawn(["api", "--port", str(port), "--no-migrate"], keys, "api")
        url = f"http://127.0.0.1:{port}"
        wait_until("the worker to be ready", lambda: b" ready." in worker_log.read_bytes(), 60)
        wait_until("the API to answer", lambda: _answers(url), 60)
        self.pace(SHARD_RATE)
        return worker, api, url

    def pace(self, rate: str) -> None:
        replies = self.control.control.rate_limit("bayport.copy_shard", rate, reply=True, timeout=2)
        assert replies, "no worker answered the rate limit"

    @staticmethod
    def stop(*procs: subprocess.Popen[bytes]) -> None:
        """Warm shutdown: a worker finishes the shard it is copying, and hands back the
        messages it holds (late acks)."""
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.control.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _running(client: BayportClient, job_id: str, step: str) -> dict[str, Any]:
    job = client.job(job_id)
    print(f"{step}: {job['counts']['copied']}/{N} copied, state {job['state']}")
    assert job["state"] not in FINAL_STATES, (
        f"the job ended before the procedure did (make it longer): {job}"
    )
    assert job["counts"]["failed"] == 0, job
    return job


def test_zero_downtime_rotation_under_a_running_import(
    tmp_path: Path, private_broker: str, s3_buckets: dict[str, Any]
) -> None:
    started = time.monotonic()
    old, new = _key().decode(), _key().decode()
    url = f"sqlite:///{tmp_path / 'bayport.db'}"
    migrate(url)
    access_key = "bp_" + uuid.uuid4().hex
    env = {
        **_outside_env(),
        "BAYPORT_DATA_DIR": str(tmp_path / "data"),
        "BAYPORT_DATABASE_URL": url,
        "BAYPORT_BROKER_URL": private_broker,
        "BAYPORT_BOOTSTRAP_ACCESS_KEY": access_key,
        "BAYPORT_RETRY_INITIAL_WAIT": "0.05",
        "BAYPORT_METRICS_NAMESPACE": f"bayport-test-{uuid.uuid4().hex[:10]}",
        "BAYPORT_ALLOWED_PRIVATE_ENDPOINTS": '["127.0.0.1", "localhost"]',
    }
    populate(s3_buckets["source"], N)
    logs = tmp_path / "logs"
    logs.mkdir()
    service = _Service(env, logs)
    try:
        # The service as it runs today: every process on the old key alone.
        worker, api, api_url = service.start(old)
        client = BayportClient(api_url, access_key)
        register_s3_pair(client, s3_buckets)
        job_id = client.submit(seed_manifest(labels=False, shard_size=SHARD, concurrency=2))["id"]
        wait_until("copies to start", lambda: client.job(job_id)["counts"]["copied"] >= SHARD, 30)

        # 1. Every process learns the new key, still sealing with the old one.
        worker2, api2, api_url = service.start(f"{old},{new}")
        client = BayportClient(api_url, access_key)
        service.stop(api, worker)
        _running(client, job_id, "old,new everywhere")

        # 2. Every process seals with the new key, still opening the old one. A config
        #    made now is sealed with the new key.
        worker3, api3, api_url = service.start(f"{new},{old}")
        client = BayportClient(api_url, access_key)
        service.stop(api2, worker2)
        client.create_storage_config(
            name="made-mid-rotation",
            provider="s3",
            endpoint=s3_buckets["endpoint"],
            bucket_name=s3_buckets["source_bucket"],
            accesskey_id=s3_buckets["access_key"],
            accesskey_secret=s3_buckets["secret_key"],
        )
        _running(client, job_id, "new,old everywhere")

        # 3. Re-seal the stored rows while the import runs.
        run = _cli({**env, "BAYPORT_SECRET_KEY": f"{new},{old}"}, "rotate-secrets")
        assert run.returncode == 0, run.stdout + run.stderr
        assert "re-sealed 2 of 3 storage configs; 1 already under the newest key; " in run.stdout
        assert "0 remain under old keys" in run.stdout
        at_rotation = _running(client, job_id, "re-sealed")["counts"]["copied"]

        # 4. The old key goes.
        worker4, api4, api_url = service.start(new)
        client = BayportClient(api_url, access_key)
        service.stop(api3, worker3)
        _running(client, job_id, "new everywhere")
        service.pace(UNTHROTTLED)

        done = client.wait(job_id, timeout=120)
        assert done["state"] == "succeeded", done
        assert done["counts"]["failed"] == 0 and done["counts"]["copied"] == N, done
        assert done["counts"]["copied"] > at_rotation  # objects copied after the rotation
        verdict = verify_import(
            source=s3_buckets["source"],
            data_prefix="data/images/",
            dest=s3_buckets["dest"],
            dest_prefix="default/",
            database_url=url,
            job_id=job_id,
        )
        print(
            "\n"
            + verdict.row(
                "key rotation under a live import",
                "3 rolling restarts (worker+API) + rotate-secrets",
                time.monotonic() - started,
            )
        )
        assert verdict.ok, verdict
        service.stop(api4, worker4)
    finally:
        service.close()

    # Every stored credential opens with the new key alone, none with the old key alone.
    engine = create_engine(url)
    with engine.connect() as conn:
        sealed = [
            r[0] for r in conn.execute(text("SELECT credentials_encrypted FROM storage_config"))
        ]
    engine.dispose()
    assert len(sealed) == 3
    for token in sealed:
        assert SecretBox([new.encode()]).open(token)["accesskey_secret"] == s3_buckets["secret_key"]
        with pytest.raises(SecretBoxError):
            SecretBox([old.encode()]).open(token)
    # No process logged a traceback of a key it could not use.
    for log in sorted(logs.iterdir()):
        said = log.read_text(errors="replace")
        assert "SecretBoxError" not in said and "InvalidToken" not in said, (log.name, said[-3000:])
