"""One tenant cannot stall the API for another: a load test on the real API (uvicorn on
127.0.0.1, its real thread pool). While workspace A runs an attack — many commits waiting
for their draft, many storage config checks against a tarpit endpoint, many progress
streams — workspace B's simple GETs are all answered, quickly. And the attack's own
requests are bounded: a check ends at BAYPORT_CONFIG_CHECK_DEADLINE with a 504 naming the
endpoint, a workspace's requests past BAYPORT_API_WORKSPACE_CONCURRENCY and streams past
BAYPORT_API_EVENT_STREAMS get 429 with Retry-After at once."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bootstrap import Container, build_container
from metadata.db import migrate
from metadata.queries import workspaces
from tests.conftest import make_settings
from tests.probes import Tarpit, serve_api
from tests.support import InlineQueue, add_config

TB = "/gatewayv2/tensorbay-open-api/v1"
CHECK_DEADLINE = 3.0
COMMIT_WAIT = 10.0
CONCURRENCY = 8
STREAMS = 4
# What "answered" means for B: every GET, the slowest 5% within this.
B_P95 = 2.0


@dataclass
class World:
    url: str
    container: Container
    key_a: str
    key_b: str
    workspace_a: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def client(self, key: str, *, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}", "X-Token": f"ACCESSKEY-{key}"},
            timeout=timeout,
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = make_settings(
        tmp_path / "bayport",
        commit_wait_seconds=COMMIT_WAIT,
        config_check_deadline=CHECK_DEADLINE,
        api_workspace_concurrency=CONCURRENCY,
        api_event_streams=STREAMS,
        # Only the bulkheads are under test: no rate limit refuses the attack first.
        api_rate_limit="",
        api_callback_rate_limit="",
        api_ip_rate_limit="",
        api_auth_failure_limit="",
    )
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())  # no worker: jobs wait
    with container.db.uow() as uow:
        a, key_a = workspaces.create_workspace(uow.session, name="a")
        b, key_b = workspaces.create_workspace(uow.session, name="b")
        uow.commit()
    for workspace in (a, b):
        add_config(
            container.ctx, container.box, workspace_id=workspace.id, name="bucket", bucket="x"
        )
    with serve_api(container, log_level="error") as url:
        yield World(url=url, container=container, key_a=key_a, key_b=key_b, workspace_a=a.id)
    container.db.dispose()


@dataclass
class Probe:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def p95(self) -> float:
        if len(self.latencies) < 2:
            return max(self.latencies, default=float("inf"))
        return statistics.quantiles(self.latencies, n=20)[-1]


def probe_b(world: World, seconds: float) -> Probe:
    """Workspace B's simple GETs, one after another for `seconds`, each given 3 s."""
    probe = Probe()
    ends = time.monotonic() + seconds
    with world.client(world.key_b, timeout=3.0) as http:
        while time.monotonic() < ends:
            path = "/v1/storage-configs" if len(probe.latencies) % 2 else f"{TB}/datasets"
            began = time.monotonic()
            try:
                status = http.get(path).status_code
            except httpx.HTTPError as exc:
                probe.failures.append(f"{path}: {type(exc).__name__}")
                continue
            probe.latencies.append(time.monotonic() - began)
            if status != 200:
                probe.failures.append(f"{path}: HTTP {status}")
            time.sleep(0.1)
    return probe


def attack(world: World, senders: int, send: Callable[[httpx.Client], httpx.Response]) -> Any:
    """`senders` clients of workspace A, each sending one request at once."""
    pool = ThreadPoolExecutor(max_workers=senders)

    def one(_: int) -> tuple[int, float, dict[str, str], str]:
        began = time.monotonic()
        with world.client(world.key_a, timeout=40.0) as http:
            try:
                r = send(http)
            except httpx.HTTPError as exc:
                return (0, time.monotonic() - began, {}, type(exc).__name__)
            return (r.status_code, time.monotonic() - began, dict(r.headers), r.text)

    futures = [pool.submit(one, i) for i in range(senders)]
    return pool, futures


def _assert_b_answered(probe: Probe) -> None:
    assert probe.latencies, "B got no answer at all"
    assert not probe.failures, f"B's GETs failed during A's attack: {probe.failures[:5]}"
    assert probe.p95 < B_P95, f"B's p95 {probe.p95:.2f} s (max {max(probe.latencies):.2f} s)"


def _draft_with_waiting_objects(world: World) -> tuple[str, int]:
    """A's TensorBay dataset with an open draft holding a registered object no worker will
    import: each commit of it waits the whole BAYPORT_COMMIT_WAIT_SECONDS."""
    with world.client(world.key_a) as tb:
        made = tb.post(
            f"{TB}/datasets",
            json={
                "name": "Cats",
                "type": 0,
                "alias": "",
                "isPublic": False,
                "configName": "bucket",
            },
        )
        assert made.status_code in (200, 201), made.text
        ds = f"{TB}/datasets/{made.json()['id']}"
        draft = tb.post(f"{ds}/drafts", json={"branchName": "main", "title": "d"})
        assert draft.status_code in (200, 201), draft.text
        number = draft.json()["draftNumber"]
        segment = tb.post(f"{ds}/segments", json={"name": "train", "draftNumber": number})
        assert segment.status_code in (200, 201), segment.text
        body = {
            "segmentName": "train",
            "objects": [{"cloudPath": "a.png", "remotePath": "a.png"}],
            "deleteSource": False,
            "draftNumber": number,
        }
        registered = tb.put(f"{ds}/multi/cloud-callback", json=body)
        assert registered.status_code in (200, 201), registered.text
    return ds, number


def test_waiting_commits_of_one_workspace_do_not_stall_another(world: World) -> None:
    ds, number = _draft_with_waiting_objects(world)
    senders = 60  # more than the API's 40 threads
    began = time.monotonic()
    pool, futures = attack(
        world,
        senders,
        lambda http: http.post(f"{ds}/commits", json={"title": "c", "draftNumber": number}),
    )
    time.sleep(0.5)  # the commits are in, waiting
    probe = probe_b(world, 5.0)
    answers = [f.result(timeout=45) for f in futures]
    pool.shutdown()
    _assert_b_answered(probe)

    statuses = [status for status, *_ in answers]
    waited = [a for a in answers if a[0] == 503]
    refused = [a for a in answers if a[0] == 429]
    # At most BAYPORT_API_WORKSPACE_CONCURRENCY commits wait at once; the others are
    # refused at once, with Retry-After, as TensorBay errors the SDK retries.
    assert len(waited) <= CONCURRENCY and waited, statuses
    assert len(refused) == senders - len(waited), statuses
    for _, seconds, headers, text in refused:
        # (The 60 arrive in one burst, each authenticated first: "at once" is well before
        # the wait would have ended.)
        assert seconds < COMMIT_WAIT / 2 and headers["retry-after"] == "1"
        assert '"code":"TooManyRequests"' in text and "BAYPORT_API_WORKSPACE_CONCURRENCY" in text
    for _, seconds, _headers, text in waited:  # the wait itself is bounded
        assert COMMIT_WAIT - 1 < seconds < COMMIT_WAIT + 4 and "DraftImporting" in text
    assert time.monotonic() - began < 30


def _tarpit_config(tarpit: Tarpit, name: str) -> dict[str, str]:
    return {
        "name": name,
        "provider": "s3",
        "endpoint": tarpit.url,
        "bucket_name": "bucket",
        "accesskey_id": "AKIDEXAMPLE",
        "accesskey_secret": "secret-of-a",
    }


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    pit = Tarpit(trickle=True)
    yield pit
    pit.close()


def test_a_check_against_a_trickling_endpoint_ends_at_the_deadline(
    world: World, tarpit: Tarpit
) -> None:
    with world.client(world.key_a, timeout=CHECK_DEADLINE + 6) as http:
        began = time.monotonic()
        r = http.post("/v1/storage-configs", json=_tarpit_config(tarpit, "slow"))
        took = time.monotonic() - began
        assert r.status_code == 504, r.text
        assert CHECK_DEADLINE - 0.5 < took < CHECK_DEADLINE + 2
        [error] = r.json()["detail"]
        assert error["loc"] == ["body", "s3", "endpoint"]
        assert tarpit.url in error["msg"] and "BAYPORT_CONFIG_CHECK_DEADLINE" in error["msg"]
        assert "secret-of-a" not in r.text
        # Not created, and the connection to the endpoint was cut, not left to trickle.
        assert http.get("/v1/storage-configs/slow").status_code == 404
        wait_until = time.monotonic() + 3
        while tarpit.cut < tarpit.accepted and time.monotonic() < wait_until:
            time.sleep(0.05)
        assert tarpit.accepted >= 1 and tarpit.cut == tarpit.accepted
        # The TensorBay API's create checks the same way: its error, in TensorBay's shape.
        began = time.monotonic()
        body = {
            "name": "slow2",
            "endpoint": tarpit.url,
            "accesskeyId": "AKIDEXAMPLE",
            "accesskeySecret": "secret-of-a",
            "bucketName": "bucket",
        }
        r = http.post(f"{TB}/storage-configs/s3", json=body)
        assert r.status_code == 504 and "endpoint" in r.json()["message"], r.text
        assert time.monotonic() - began < CHECK_DEADLINE + 2


def test_a_silent_endpoint_ends_at_the_deadline_too(world: World) -> None:
    pit = Tarpit(trickle=False)
    try:
        with world.client(world.key_a, timeout=CHECK_DEADLINE + 6) as http:
            began = time.monotonic()
            r = http.post("/v1/storage-configs", json=_tarpit_config(pit, "silent"))
            assert r.status_code == 504, r.text
            assert time.monotonic() - began < CHECK_DEADLINE + 2
    finally:
        pit.close()


def test_config_checks_against_a_tarpit_do_not_stall_another_workspace(
    world: World, tarpit: Tarpit
) -> None:
    senders = 50
    began = time.monotonic()
    pool, futures = attack(
        world,
        senders,
        lambda http: http.post(
            "/v1/storage-configs",
            json=_tarpit_config(tarpit, f"t{threading.get_ident()}"),
        ),
    )
    time.sleep(0.5)
    probe = probe_b(world, 5.0)
    answers = [f.result(timeout=45) for f in futures]
    pool.shutdown()
    _assert_b_answered(probe)
    statuses = sorted(status for status, *_ in answers)
    assert set(statuses) <= {429, 504}, statuses
    assert 0 < statuses.count(504) <= 2 * CONCURRENCY, statuses
    assert all(seconds < CHECK_DEADLINE + 3 for _, seconds, *_ in answers)
    assert time.monotonic() - began < 30


def _open_stream(world: World, key: str, job_id: str) -> tuple[httpx.Client, httpx.Response]:
    http = world.client(key, timeout=10.0)
    request = http.build_request("GET", f"/v1/imports/{job_id}/events", params={"interval": 0.5})
    return http, http.send(request, stream=True)


def test_event_streams_are_capped_per_workspace(world: World) -> None:
    jobs: dict[str, str] = {}
    for name, key in (("a", world.key_a), ("b", world.key_b)):
        with world.client(key) as http:
            made = http.post("/v1/datasets", json={"name": "Cats", "config_name": "bucket"})
            assert made.status_code in (200, 201), made.text
            submitted = http.post(
                "/v1/imports",
                json={"dataset": "Cats", "source": {"config_name": "bucket"}},
            )
            assert submitted.status_code == 202, submitted.text
            jobs[name] = submitted.json()["id"]  # queued for good: no worker runs

    opened: list[tuple[httpx.Client, httpx.Response]] = []
    try:
        for _ in range(STREAMS):
            opened.append(_open_stream(world, world.key_a, jobs["a"]))
        assert [r.status_code for _, r in opened] == [200] * STREAMS
        extra = _open_stream(world, world.key_a, jobs["a"])
        opened.append(extra)
        refused = extra[1]
        # (Not read before its status is known: an open stream would never end.)
        assert refused.status_code == 429, f"stream {STREAMS + 1} of one workspace opened"
        refused.read()
        assert refused.headers["retry-after"] == "5"
        assert f"{STREAMS} open" in refused.text and "BAYPORT_API_EVENT_STREAMS" in refused.text
        # Another workspace's streams are its own, and its GETs are answered meanwhile.
        theirs = _open_stream(world, world.key_b, jobs["b"])
        opened.append(theirs)
        assert theirs[1].status_code == 200
        _assert_b_answered(probe_b(world, 2.0))
        # A stream that ends gives its place back.
        client, first = opened.pop(0)
        first.close()
        client.close()
        again = None
        for _ in range(40):
            again = _open_stream(world, world.key_a, jobs["a"])
            opened.append(again)
            if again[1].status_code == 200:
                break
            again[1].read()
            time.sleep(0.1)
        assert again is not None and again[1].status_code == 200
    finally:
        for client, response in opened:
            response.close()
            client.close()
