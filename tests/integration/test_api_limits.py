"""API limits: the request body (a manifest) is capped while it is read, and each API key
gets at most BAYPORT_API_RATE_LIMIT requests, counted in Redis across API processes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from api.app import create_app
from bayport.settings import Settings
from bootstrap import Container, build_container
from metadata.db import migrate
from metadata.models import ImportJob
from tests.conftest import make_settings
from tests.probes import serve_api
from tests.support import InlineQueue, api_client, new_workspace

MANIFEST: dict[str, Any] = {
    "dataset": "Cats",
    "source": {"config_name": "src", "data_prefix": "data/"},
}


def _container(settings: Settings) -> Container:
    migrate(settings.resolved_database_url)
    return build_container(settings, enqueuer=InlineQueue())


def _key(container: Container, name: str = "w") -> str:
    _, key = new_workspace(container, name)
    return key


def _client(container: Container, key: str) -> TestClient:
    client = api_client(container, key)
    return client


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Container]:
    """An API that takes bodies of at most 4 KiB."""
    container = _container(
        make_settings(tmp_path / "bayport", max_request_bytes=4096, api_rate_limit="")
    )
    yield container
    container.db.dispose()


def _jobs(container: Container) -> int:
    with container.db.uow() as uow:
        return int(uow.session.exec(select(func.count()).select_from(ImportJob)).one())


# --- body size --------------------------------------------------------------------------


def test_a_manifest_over_the_limit_is_413_naming_the_limit(small: Container) -> None:
    client = _client(small, _key(small))
    big = {**MANIFEST, "source": {**MANIFEST["source"], "include": ["x" * 900] * 5}}
    r = client.post("/v1/imports", json=big)
    assert r.status_code == 413
    assert "4096 bytes" in r.json()["detail"] and "BAYPORT_MAX_REQUEST_BYTES" in r.text
    # Under the limit, the same request is read (and answered for what it says).
    r = client.post("/v1/imports", json=MANIFEST)
    assert r.status_code == 404 and "dataset" in r.text
    assert _jobs(small) == 0


def test_a_chunked_body_without_a_length_is_counted_as_it_arrives(small: Container) -> None:
    client = _client(small, _key(small))

    def chunks() -> Iterator[bytes]:
        yield b'{"dataset": "Cats", "source": {"config_name": "src", "include": ["'
        for _ in range(100):
            yield b"y" * 100
        yield b'"]}}'

    r = client.post("/v1/imports", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.request.headers.get("content-length") is None
    assert r.status_code == 413 and "4096 bytes" in r.text


def test_every_route_with_a_body_is_capped(small: Container) -> None:
    client = _client(small, _key(small))
    padding = "p" * 5000
    for path, body in (
        ("/v1/storage-configs", {"name": "x", "provider": "local", "bucket_name": padding}),
        ("/v1/datasets", {"name": padding}),
        ("/v1/schedules", {"name": "s", "cron": "* * * * *", "manifest": {"x": padding}}),
    ):
        r = client.post(path, json=body)
        assert r.status_code == 413, (path, r.text)


@pytest.fixture
def served(small: Container) -> Iterator[tuple[int, str]]:
    """The 4 KiB API behind a real HTTP server (uvicorn), and an access key."""
    key = _key(small)
    with serve_api(small) as url:
        port = urlsplit(url).port
        assert port is not None
        yield port, key


def test_an_endless_body_is_refused_before_it_ends(served: tuple[int, str]) -> None:
    """A client streams a body that never ends (chunked, no length): the server answers
    413 once the limit is passed, without waiting for the rest."""
    port, key = served
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            (
                "POST /v1/imports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        chunk = b"z" * 1024
        sent = 0
        answer = b""
        sock.settimeout(0.05)
        while sent < 64 * 1024 * 1024 and b"\r\n\r\n" not in answer:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            except OSError:
                pass  # the server closed its side: read its answer
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 1024 * 1024, f"the server read {sent} bytes of a 4 KiB-limited body"


# --- request rate -----------------------------------------------------------------------


@pytest.fixture
def limited(tmp_path: Path, redis_url: str) -> Iterator[Settings]:
    settings = make_settings(
        tmp_path / "bayport",
        broker_url=redis_url,
        api_rate_limit="5/minute",
        metrics_namespace=f"bayport-test-limits-{tmp_path.name}",
    )
    migrate(settings.resolved_database_url)
    yield settings


def test_requests_over_the_rate_get_429_with_retry_after(limited: Settings) -> None:
    container = _container(limited)
    try:
        key, other_key = _key(container, "a"), _key(container, "b")
        client = _client(container, key)
        codes = [client.get("/v1/datasets").status_code for _ in range(5)]
        assert codes == [200] * 5
        r = client.get("/v1/datasets")
        assert r.status_code == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert "5 per 1 minute" in r.json()["detail"] and "BAYPORT_API_RATE_LIMIT" in r.text
        # Per key: another key is not held back; health checks never are.
        assert _client(container, other_key).get("/v1/datasets").status_code == 200
        assert all(client.get("/healthz").status_code == 200 for _ in range(10))
    finally:
        container.db.dispose()


def test_the_tensorbay_api_counts_the_same_key_and_its_callbacks_apart(
    tmp_path: Path, redis_url: str
) -> None:
    """X-Token (the TensorBay SDK's header) is the same key as the Bearer token; the SDK's
    per-object `PUT multi/cloud-callback` calls have a limit of their own, and a 429 there
    comes in TensorBay's shape, which the SDK reads."""
    settings = make_settings(
        tmp_path / "bayport",
        broker_url=redis_url,
        api_rate_limit="3/minute",
        api_callback_rate_limit="4/minute",
        metrics_namespace=f"bayport-test-limits-{tmp_path.name}",
    )
    container = _container(settings)
    tb = "/gatewayv2/tensorbay-open-api/v1"
    try:
        key = _key(container)
        client = _client(container, key)
        sdk = TestClient(create_app(container))
        sdk.headers["X-Token"] = "ACCESSKEY-" + key
        callback = f"{tb}/datasets/nope/multi/cloud-callback"
        body = {"segmentName": "s", "objects": [], "draftNumber": 1}
        # Five callbacks do not touch the general count; the fifth is over its own limit.
        codes = [sdk.put(callback, json=body).status_code for _ in range(5)]
        assert 429 not in codes[:4] and codes[4] == 429, codes
        over = sdk.put(callback, json=body)
        assert over.json()["code"] == "TooManyRequests"
        assert "BAYPORT_API_CALLBACK_RATE_LIMIT" in over.json()["message"]
        assert int(over.headers["Retry-After"]) >= 1
        # The general count: one Bearer call and two X-Token calls, then both are held.
        assert client.get("/v1/datasets").status_code == 200
        assert [sdk.get(f"{tb}/datasets").status_code for _ in range(2)] == [200, 200]
        assert sdk.get(f"{tb}/datasets").json()["code"] == "TooManyRequests"
        assert client.get("/v1/datasets").status_code == 429
    finally:
        container.db.dispose()


def test_api_processes_share_the_count_in_redis(limited: Settings) -> None:
    one, two = _container(limited), _container(limited)
    try:
        key = _key(one)
        a, b = _client(one, key), _client(two, key)
        codes = [c.get("/v1/datasets").status_code for c in (a, b, a, b, a)]
        assert codes == [200] * 5
        assert b.get("/v1/datasets").status_code == 429
    finally:
        one.db.dispose()
        two.db.dispose()


def test_unknown_keys_are_limited_too(limited: Settings) -> None:
    container = _container(limited)
    try:
        anonymous = TestClient(create_app(container))
        headers = {"Authorization": "Bearer bp_guess"}
        codes = [anonymous.get("/v1/datasets", headers=headers).status_code for _ in range(6)]
        assert codes == [401] * 5 + [429]
    finally:
        container.db.dispose()


def test_without_redis_the_count_is_per_process(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "b", broker_url="amqp://guest@127.0.0.1:1//", api_rate_limit="3/minute"
    )
    container = _container(settings)
    try:
        client = _client(container, _key(container))
        codes = [client.get("/v1/datasets").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
    finally:
        container.db.dispose()


def test_an_unreachable_counter_lets_requests_through(tmp_path: Path) -> None:
    """Redis down must not take the API down with it."""
    settings = make_settings(
        tmp_path / "b", throttle_redis_url="redis://127.0.0.1:1/0", api_rate_limit="1/minute"
    )
    container = _container(settings)
    try:
        client = _client(container, _key(container))
        assert [client.get("/v1/datasets").status_code for _ in range(3)] == [200] * 3
    finally:
        container.db.dispose()


def test_a_bad_rate_is_a_startup_error(tmp_path: Path) -> None:
    from bayport.settings import SettingsError

    container = _container(make_settings(tmp_path / "b", api_rate_limit="lots"))
    try:
        with pytest.raises(SettingsError, match="BAYPORT_API_RATE_LIMIT"):
            create_app(container)
    finally:
        container.db.dispose()
    container = _container(make_settings(tmp_path / "c", api_callback_rate_limit="often"))
    try:
        with pytest.raises(SettingsError, match="BAYPORT_API_CALLBACK_RATE_LIMIT"):
            create_app(container)
    finally:
        container.db.dispose()


# --- text no field may hold -------------------------------------------------------------


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_nul_and_lone_surrogates_are_422_not_500(
    db: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """PostgreSQL text holds no NUL and no UTF-8 encodes a lone surrogate: such text is
    refused at the door (it used to reach the DB and answer 500)."""
    overrides: dict[str, Any] = {"api_rate_limit": ""}
    if db == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_database")
    container = _container(make_settings(tmp_path / "bayport", **overrides))
    try:
        client = _client(container, _key(container))
        json_headers = {"Content-Type": "application/json"}
        for path, raw, loc in (
            ("/v1/datasets", '{"name": "Cats", "config_name": "\\ud800"}', "config_name"),
            ("/v1/datasets", '{"name": "Cats", "config_name": "a\\u0000b"}', "config_name"),
            ("/v1/imports", '{"dataset": "\\udc00", "source": {"config_name": "x"}}', "dataset"),
            (
                "/v1/storage-configs",
                '{"name": "x", "provider": "local", "bucket_name": "/a\\u0000"}',
                "bucket_name",
            ),
            ("/v1/datasets", '{"name": "Cats", "\\u0000": 1}', "\\x00"),
        ):
            r = client.post(path, content=raw, headers=json_headers)
            assert r.status_code == 422, (path, raw, r.text)
            assert r.json()["detail"][0]["loc"][-1] == loc, r.text
        assert client.get("/v1/imports/%00").status_code == 422
        assert client.get("/v1/storage-configs/a%00b").status_code == 422
        assert client.get("/v1/imports", params={"offset": "\x00"}).status_code == 422
        # Other Unicode is fine, and so is a JSON body the route itself refuses.
        r = client.post("/v1/datasets", json={"name": "Cats", "config_name": "猫 🐱"})
        assert r.status_code == 404 and "猫 🐱" in r.json()["detail"]
        r = client.post("/v1/datasets", content="{not json", headers=json_headers)
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    finally:
        container.db.dispose()
