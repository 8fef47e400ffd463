"""The secret grep drill: a whole Bayport (API, a worker and Flower as separate processes, at
DEBUG) imports with good credentials and with wrong ones; then every secret it was given —
provider secret keys and account keys (right and wrong), the API access key, the Fernet keys,
the metrics token, Flower's password — is searched, raw and in its URL-encoded, JSON, HTML,
hex and base64 forms, in the metadata DB (the SQLite files, or every column of every table of
PostgreSQL), every log, every API response (bodies and headers, every GET endpoint), every
command sent to the broker (Redis MONITOR, with kombu's base64 bodies decoded) and Flower's
pages and API. None may be found. Positive controls show each search would find a secret
where one legitimately is (the request that submitted it, the processes' environment)."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import MetaData, create_engine, select, text

from cli.client import BayportClient
from cli.stack import free_port
from crypto.secretbox import SecretBox
from devstack.sample import populate
from metadata.db import migrate
from tests.azure_fixtures import make_container
from tests.oss_fixtures import make_oss_bucket
from tests.support import seed_manifest, wait_until

ROOT = Path(__file__).resolve().parents[2]
N, EXTRA = 30, 10  # objects per import; objects added before the sync that fails


# --- searching ------------------------------------------------------------------------------


def _forms(secret: str) -> dict[str, bytes]:
    """The ways a secret could be written down: raw, URL-encoded, JSON- and HTML-escaped, hex,
    and base64 (standard and URL-safe) at each of the three alignments it could have inside a
    longer encoded text (only the characters that depend on the secret alone)."""
    raw = secret.encode()
    found = {
        "raw": raw,
        "url-encoded": quote(secret, safe="").encode(),
        "url-encoded (lower)": re.sub(
            "%[0-9A-F]{2}", lambda m: m.group().lower(), quote(secret, safe="")
        ).encode(),
        "form-encoded": quote_plus(secret).encode(),
        "json-escaped": json.dumps(secret)[1:-1].encode(),
        "json-escaped (slashes)": json.dumps(secret)[1:-1].replace("/", "\\/").encode(),
        "html-escaped": html.escape(secret).encode(),
        "hex": raw.hex().encode(),
    }
    for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        for shift in range(3):
            text = encode(b"\0" * shift + raw)
            middle = text[4 if shift else 0 : -4]  # drop groups mixed with neighbouring bytes
            if len(middle) >= 12:
                found[f"{name}+{shift}"] = middle
    return found


class Secrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, label: str, value: str) -> str:
        assert len(value) >= 12, label
        self.values[label] = value
        return value

    def found_in(self, data: bytes) -> list[str]:
        """Which secrets (and in which form) `data` holds."""
        return [
            f"{label} ({form})"
            for label, value in self.values.items()
            for form, needle in _forms(value).items()
            if needle in data
        ]

    def context(self, data: bytes) -> str:
        """Where the first secret found sits, the secret itself replaced by <label>."""
        for label, value in self.values.items():
            for needle in _forms(value).values():
                at = data.find(needle)
                if at >= 0:
                    around = data[max(0, at - 300) : at + len(needle) + 300]
                    return around.replace(needle, f"<{label}>".encode()).decode(errors="replace")
        return ""


class Corpus:
    """Everything the drill searches, by where it came from."""

    def __init__(self) -> None:
        self.parts: dict[str, bytes] = {}

    def add(self, where: str, data: bytes) -> None:
        self.parts[where] = self.parts.get(where, b"") + data + b"\n"


# --- capturing ------------------------------------------------------------------------------


class BrokerTap:
    """Redis MONITOR on its own connection: every command any client sends, kept while the
    drill runs (the lines of this drill's database number only)."""

    def __init__(self, broker_url: str) -> None:
        parts = urlsplit(broker_url)
        self.db = (parts.path or "/0").strip("/") or "0"
        self._sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
        self._sock.sendall(b"MONITOR\r\n")
        self._sock.settimeout(0.2)
        self._buffer = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not chunk:
                return
            self._buffer += chunk

    def stop(self) -> list[bytes]:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        mine = f"[{self.db} ".encode()
        return [line for line in bytes(self._buffer).split(b"\r\n") if mine in line[:40]]


_B64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")


def decoded_bodies(lines: list[bytes]) -> bytes:
    """kombu sends each message (task or event) as JSON with a base64 body: every base64 run
    of the MONITOR lines, decoded."""
    out = bytearray()
    for line in lines:
        for run in _B64_RUN.findall(line):
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    out += decode(run + b"=" * (-len(run) % 4)) + b"\n"
                except ValueError:
                    continue
    return bytes(out)


class Recorder:
    """Keeps every HTTP exchange of the drill: what was sent, and what came back (status line,
    headers and body)."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.received = bytearray()

    def hooks(self) -> dict[str, list[Callable[..., Any]]]:
        return {"request": [self._request], "response": [self._response]}

    def _request(self, request: httpx.Request) -> None:
        self.sent += f"{request.method} {request.url}\n".encode() + request.read() + b"\n"

    def _response(self, response: httpx.Response) -> None:
        response.read()
        head = f"{response.status_code} {response.request.method} {response.request.url}\n"
        headers = "".join(f"{k}: {v}\n" for k, v in response.headers.multi_items())
        self.received += head.encode() + headers.encode() + response.content + b"\n"


def _spawn(
    command: list[str], env: dict[str, str], log: Path, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *command],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    procs.append(proc)
    return proc


def _reseal(url: str, config: str, fernet_key: str, key_id: str, secret: str) -> None:
    """Replace a stored config's credentials, as if its provider key had been changed."""
    sealed = SecretBox([fernet_key.encode()]).seal(
        {"accesskey_id": key_id, "accesskey_secret": secret}
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        updated = conn.execute(
            text("UPDATE storage_config SET credentials_encrypted = :v WHERE name = :n"),
            {"v": sealed, "n": config},
        )
        assert updated.rowcount == 1
    engine.dispose()


def _postgres_rows(url: str) -> bytes:
    """Every value of every column of every table; bytea as its bytes."""
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    out = bytearray()
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    out += value if isinstance(value, bytes) else str(value).encode()
                    out += b"\t"
                out += b"\n"
    engine.dispose()
    return bytes(out)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'bayport.db'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


# --- the drill ------------------------------------------------------------------------------


def test_no_secret_reaches_the_db_logs_responses_broker_or_flower(
    tmp_path: Path,
    database_url: str,
    private_broker: str,
    s3_buckets: dict[str, Any],
    oss_server: dict[str, Any],
    azurite: dict[str, str],
) -> None:
    started = time.monotonic()
    found = Secrets()
    key = {
        "s3": found.add("S3 secret key", s3_buckets["secret_key"]),
        # Wrong secrets shaped like real ones ('/', '+', '='): their encoded forms differ.
        "s3 wrong": found.add("wrong S3 secret key", f"Wr0ng/{secrets.token_urlsafe(18)}+Key="),
        "s3 revoked": found.add("revoked S3 secret key", f"Rev0k+{secrets.token_urlsafe(18)}/="),
        "oss": found.add("OSS secret key", oss_server["secret_key"]),
        "oss wrong": found.add("wrong OSS secret key", f"0ss/{secrets.token_urlsafe(18)}+x="),
        "azure": found.add("Azure account key", azurite["account_key"]),
        "azure wrong": found.add(
            "wrong Azure account key", base64.b64encode(secrets.token_bytes(64)).decode()
        ),
        "access": found.add("API access key", "bp_" + secrets.token_urlsafe(32)),
        "fernet": found.add("Fernet key (newest)", Fernet.generate_key().decode()),
        "fernet old": found.add("Fernet key (older)", Fernet.generate_key().decode()),
        "metrics": found.add("metrics token", secrets.token_urlsafe(24)),
        "flower": found.add("Flower password", secrets.token_urlsafe(18)),
    }
    suffix = uuid.uuid4().hex[:10]
    place = {
        **s3_buckets,
        "oss_endpoint": oss_server["endpoint"],
        "oss_key_id": oss_server["access_key"],
        "oss_bucket": f"oss-{suffix}",
        "azure_endpoint": azurite["endpoint"],
        "azure_account": azurite["account_name"],
        "container": f"az-{suffix}",
    }
    make_oss_bucket(oss_server, place["oss_bucket"])
    make_container(azurite, place["container"])
    populate(s3_buckets["source"], N)

    data_dir, logs = tmp_path / "data", tmp_path / "logs"
    logs.mkdir()
    api_url, flower_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BAYPORT_")},
        "BAYPORT_DATA_DIR": str(data_dir),
        "BAYPORT_DATABASE_URL": database_url,
        "BAYPORT_BROKER_URL": private_broker,
        "BAYPORT_SECRET_KEY": f"{key['fernet']},{key['fernet old']}",
        "BAYPORT_BOOTSTRAP_ACCESS_KEY": key["access"],
        "BAYPORT_METRICS_TOKEN": key["metrics"],
        "BAYPORT_METRICS_NAMESPACE": f"bayport-test-{suffix}",
        "BAYPORT_FLOWER_BASIC_AUTH": f"watcher:{key['flower']}",
        "BAYPORT_FLOWER_URL": flower_url,
        "BAYPORT_LOG_LEVEL": "DEBUG",
        "FLOWER_LOGGING": "debug",  # Flower's own log level (its options read FLOWER_*)
        "BAYPORT_RETRY_INITIAL_WAIT": "0.05",
        "BAYPORT_RETRY_ATTEMPTS": "2",
        "BAYPORT_ALLOWED_PRIVATE_ENDPOINTS": '["127.0.0.1", "localhost"]',
    }
    migrate(database_url)
    tap = BrokerTap(private_broker)
    procs: list[subprocess.Popen[bytes]] = []
    record = Recorder()
    try:
        worker = _spawn(["worker", "--processes", "2"], env, logs / "worker.log", procs)
        _spawn(["api", "--port", _port(api_url), "--no-migrate"], env, logs / "api.log", procs)
        _spawn(["flower", "--port", _port(flower_url)], env, logs / "flower.log", procs)
        wait_until(
            "the API",
            lambda: httpx.get(f"{api_url}/healthz").status_code == 200,
            60,
            interval=0.2,
            ignoring=(httpx.TransportError,),
        )
        wait_until(
            "Flower",
            lambda: httpx.get(f"{flower_url}/healthcheck").status_code == 200,
            60,
            interval=0.2,
            ignoring=(httpx.TransportError,),
        )
        flower = httpx.Client(
            base_url=flower_url, auth=("watcher", key["flower"]), event_hooks=record.hooks()
        )
        wait_until(
            "Flower to hear the worker",
            lambda: _worker_seen(flower),
            60,
            interval=0.2,
            ignoring=(httpx.TransportError,),
        )
        client = BayportClient(api_url, key["access"])
        client.http.event_hooks = record.hooks()

        _register(client, place, key)
        jobs = _run_imports(client, database_url, s3_buckets, key)
        _visit_every_get(client, jobs, key["metrics"])
        _visit_flower(flower, jobs)
        environ = Path(f"/proc/{worker.pid}/environ").read_bytes()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker_lines = tap.stop()

    corpus = Corpus()
    for log in sorted(logs.iterdir()):
        corpus.add(f"log {log.name}", log.read_bytes())
    corpus.add("API and Flower responses", bytes(record.received))
    corpus.add("broker commands (MONITOR)", b"\n".join(broker_lines))
    corpus.add("broker messages (decoded)", decoded_bodies(broker_lines))
    if database_url.startswith("sqlite"):  # the DB file, its WAL and shared memory
        for path in sorted(Path(database_url.split("///", 1)[1]).parent.iterdir()):
            corpus.add("DB files", path.read_bytes())
    else:
        corpus.add("DB tables", _postgres_rows(database_url))
    files = sorted(p for p in data_dir.rglob("*") if p.is_file())
    corpus.add("data dir", b"".join(p.read_bytes() for p in files))
    kept = tmp_path / "searched"  # what was searched, for a look after a failure
    kept.mkdir()
    for i, (where, data) in enumerate(corpus.parts.items()):
        (kept / f"{i:02d} {where}").write_bytes(data)

    # Positive controls: each search finds a secret where one legitimately is (the requests
    # that submitted them; the processes' environment; a base64 envelope), and each place
    # searched holds what it should.
    def has(data: bytes, label: str) -> bool:
        return any(hit.startswith(f"{label} (") for hit in found.found_in(data))

    for label in found.values:
        if label.startswith(("S3", "wrong", "OSS", "Azure")):
            assert has(bytes(record.sent), label), label
        elif not label.startswith("revoked"):
            assert has(environ, label), label
    envelope = base64.b64encode(json.dumps({"body": f"..{key['s3 wrong']}.."}).encode())
    assert has(envelope, "wrong S3 secret key")
    for where in ("log worker.log", "log api.log", "API and Flower responses"):
        assert jobs["good"].encode() in corpus.parts[where], f"{where} lacks the job id"
    assert b"Sending conf inspect command" in corpus.parts["log flower.log"]  # at DEBUG
    assert jobs["good"].encode() in corpus.parts["broker messages (decoded)"]
    db = corpus.parts["DB files" if "DB files" in corpus.parts else "DB tables"]
    assert b"dst-revoked" in db and jobs["good"].encode() in db
    assert b"signature you provided" in corpus.parts["API and Flower responses"]

    leaks = {where: hits for where, data in corpus.parts.items() if (hits := found.found_in(data))}
    size = sum(map(len, corpus.parts.values())) / 1e6
    kind = "SQLite" if database_url.startswith("sqlite") else "PostgreSQL"
    print(
        f"\n| secret grep drill ({kind}) | {N} objects x {len(jobs)} imports | "
        f"{len(found.values)} secrets x {len(_forms(key['s3 wrong']))} forms, "
        f"{len(corpus.parts)} places, {size:.1f} MB | leaks {len(leaks)} | "
        f"{time.monotonic() - started:.1f} s |"
    )
    assert not leaks, "\n".join(
        f"{where}: {hits}\n  ...{found.context(corpus.parts[where])}..."
        for where, hits in leaks.items()
    )


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def _worker_seen(flower: httpx.Client) -> bool:
    """Flower sees events sent after it listens: the worker's heartbeat (every 2 s) did."""
    workers = flower.get("/workers", params={"json": 1}).json()["data"]
    return any(w.get("status") for w in workers)


def _register(client: BayportClient, place: dict[str, Any], key: dict[str, str]) -> None:
    """Storage configs with right and wrong secrets (the wrong ones refused by the check, a
    422 with the provider's reason, then stored unchecked), bodies the API cannot parse, and
    datasets on them."""
    s3 = {"provider": "s3", "endpoint": place["endpoint"], "accesskey_id": place["access_key"]}
    oss = {
        "provider": "oss",
        "endpoint": place["oss_endpoint"],
        "bucket_name": place["oss_bucket"],
        "accesskey_id": place["oss_key_id"],
    }
    azure = {
        "provider": "azure",
        "account_name": place["azure_account"],
        "container_name": place["container"],
        "endpoint": place["azure_endpoint"],
    }
    source, dest = place["source_bucket"], place["dest_bucket"]
    for good in (
        {"name": "src", "bucket_name": source, "accesskey_secret": key["s3"], **s3},
        {"name": "dst", "bucket_name": dest, "accesskey_secret": key["s3"], **s3},
        {"name": "dst-revoked", "bucket_name": dest, "accesskey_secret": key["s3"], **s3},
        {"name": "oss-good", "accesskey_secret": key["oss"], **oss},
        {"name": "azure-good", "account_key": key["azure"], **azure},
    ):
        client.create_storage_config(**good)
    for wrong in (
        {"name": "dst-wrong", "bucket_name": dest, "accesskey_secret": key["s3 wrong"], **s3},
        {"name": "oss-wrong", "accesskey_secret": key["oss wrong"], **oss},
        {"name": "azure-wrong", "account_key": key["azure wrong"], **azure},
    ):
        refused = client.http.post("/v1/storage-configs", json=wrong)
        assert refused.status_code == 422, refused.text
        stored = client.http.post("/v1/storage-configs", params={"verify": "false"}, json=wrong)
        assert stored.status_code == 201, stored.text
    for broken in (  # FastAPI would echo each failing value, here the whole body
        {"name": "broken", "provider": "s3", "accesskey_secret": key["s3 wrong"]},
        {"name": "broken", "account_key": key["azure wrong"], "extra": key["s3"], **azure},
        {"name": "broken!", "bucket_name": "b", "accesskey_secret": key["oss wrong"], **oss},
    ):
        assert client.http.post("/v1/storage-configs", json=broken).status_code == 422
    for dataset, config in (
        ("Good", "dst"),
        ("BadS3", "dst-wrong"),
        ("BadAzure", "azure-wrong"),
        ("Revoked", "dst-revoked"),
        ("Spare", "azure-good"),
    ):
        client.create_dataset(dataset, config_name=config, path=dataset.lower())


def _manifest(dataset: str, source: str, segment: str = "default") -> dict[str, Any]:
    return seed_manifest(dataset=dataset, segment=segment, config_name=source, shard_size=10)


def _run_imports(
    client: BayportClient, database_url: str, s3: dict[str, Any], key: dict[str, str]
) -> dict[str, str]:
    """A good import, three that fail at listing with a wrong secret (S3 and Azure
    destinations, an OSS source), and one that fails object by object: the key behind
    "dst-revoked" is revoked after a first import, new objects arrive, and the sync (which
    trusts its ledger for the destination) fails each copy with the provider's reason."""
    client.create_schedule("nightly", _manifest("Good", "src"), "0 3 * * *", enabled=False)
    jobs = {
        "good": client.submit(_manifest("Good", "src"))["id"],
        "wrong S3 destination": client.submit(_manifest("BadS3", "src"))["id"],
        "wrong Azure destination": client.submit(_manifest("BadAzure", "src"))["id"],
        "wrong OSS source": client.submit(_manifest("Good", "oss-wrong", "oss"))["id"],
        "before revocation": client.submit(_manifest("Revoked", "src"))["id"],
    }
    done = {what: client.wait(job_id, timeout=60) for what, job_id in jobs.items()}
    _reseal(database_url, "dst-revoked", key["fernet"], s3["access_key"], key["s3 revoked"])
    populate(s3["source"], N + EXTRA)
    jobs["after revocation"] = client.submit(_manifest("Revoked", "src"))["id"]
    done["after revocation"] = client.wait(jobs["after revocation"], timeout=60)

    for what in ("good", "before revocation"):
        assert done[what]["state"] == "succeeded", done[what]
        assert done[what]["counts"]["copied"] == N, done[what]
    for what in ("wrong S3 destination", "wrong Azure destination", "wrong OSS source"):
        assert done[what]["state"] == "failed", done[what]
        assert "permission_denied" in (done[what]["error"] or ""), done[what]
    revoked = done["after revocation"]
    assert revoked["state"] == "partially_failed", revoked
    assert revoked["counts"]["failed"] == EXTRA, revoked
    failures = client.failures(jobs["after revocation"])
    assert len(failures) == EXTRA, failures
    assert all("permission_denied" in json.dumps(f) for f in failures), failures[:2]
    return jobs


def _visit_every_get(client: BayportClient, jobs: dict[str, str], metrics_token: str) -> None:
    """Every GET endpoint of the API's OpenAPI document with each object it can name, both
    report formats, the job pages, /metrics and the docs."""
    fill = {
        "imports/{job_id}": list(jobs.values()),
        "storage-configs/{name}": [
            *("src", "dst", "dst-wrong", "dst-revoked"),
            *("oss-good", "oss-wrong", "azure-good", "azure-wrong"),
        ],
        "datasets/{name}": ["Good", "BadS3", "BadAzure", "Revoked", "Spare"],
        "schedules/{name}": ["nightly"],
        "segments/{segment}": ["default"],
    }
    answered: dict[str, int] = {}
    for path, operations in client.request("GET", "/openapi.json")["paths"].items():
        if "get" not in operations:
            continue
        for concrete in _expand(path, fill):
            for params in [{"format": "json"}, {"format": "csv"}] if "report" in path else [{}]:
                ok = client.http.get(concrete, params=params).status_code == 200
                answered[path] = answered.get(path, 0) + ok
    assert len(answered) >= 15 and all(answered.values()), answered
    for job_id in jobs.values():
        assert client.http.get(f"/jobs/{job_id}").status_code == 200
    for path in ("/jobs/static/job.js", "/jobs/static/job.css", "/docs", "/healthz"):
        assert client.http.get(path).status_code == 200
    metrics = client.http.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert metrics.status_code == 200 and "bayport_jobs" in metrics.text


def _visit_flower(flower: httpx.Client, jobs: dict[str, str]) -> None:
    """Flower's API and pages: every task of every job, the workers (their config and stats
    fetched afresh), the dashboard."""

    def every_job_shown() -> dict[str, Any] | None:
        tasks: dict[str, Any] = flower.get("/api/tasks").json()
        names = " ".join(t["name"] or "" for t in tasks.values())
        ended = all(t["state"] in ("SUCCESS", "FAILURE") for t in tasks.values())
        return tasks if ended and all(j in names for j in jobs.values()) else None

    tasks = wait_until(
        "Flower to show every job's tasks",
        every_job_shown,
        30,
        interval=0.2,
        ignoring=(httpx.TransportError,),
    )
    for task_id in tasks:
        assert flower.get(f"/task/{task_id}").status_code == 200
        assert flower.get(f"/api/task/info/{task_id}").status_code == 200
    for page in ("/", "/tasks", "/workers", "/broker", "/api/task/types", "/metrics"):
        flower.get(page)
    workers = flower.get("/api/workers", params={"refresh": 1}).json()
    assert workers and all("conf" in w and "stats" in w for w in workers.values()), workers
    for name in workers:
        assert flower.get(f"/worker/{name}").status_code == 200


def _expand(path: str, fill: dict[str, list[str]]) -> Iterator[str]:
    """`path` with each combination of the values its {parameters} take (by the collection
    each names: `imports/{job_id}`, `datasets/{name}`, ...)."""
    match = re.search(r"[\w-]+/\{\w+\}", path)
    if match is None:
        yield path
        return
    collection = match.group().split("/")[0]
    for value in fill[match.group()]:
        concrete = f"{collection}/{quote(value, safe='')}"
        yield from _expand(path[: match.start()] + concrete + path[match.end() :], fill)
