"""Issue 20, item 5: the rate limit counts the key that AUTHENTICATED. Made-up keys (Bearer or
X-Token) all count against the caller's address, before and after the key is checked, and
failed authentications are throttled per address; counted in the real Redis."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from bayport.settings import Settings
from bootstrap import Container, build_container
from metadata.db import migrate
from tests.conftest import make_settings
from tests.support import InlineQueue, new_workspace

TB = "/gatewayv2/tensorbay-open-api/v1"


def _settings(tmp_path: Path, redis_url: str, **limits: str) -> Settings:
    values = {
        "api_rate_limit": "1000/minute",
        "api_callback_rate_limit": "1000/minute",
        "api_ip_rate_limit": "",
        "api_auth_failure_limit": "",
        **limits,
    }
    return make_settings(
        tmp_path / "bayport",
        broker_url=redis_url,
        metrics_namespace=f"bayport-test-sec-rl-{uuid.uuid4().hex[:8]}",
        **values,
    )


@pytest.fixture
def containers(tmp_path: Path, redis_url: str) -> Iterator[list[Container]]:
    made: list[Container] = []
    yield made
    for container in made:
        container.db.dispose()


def _container(made: list[Container], settings: Settings) -> Container:
    migrate(settings.resolved_database_url)
    container = build_container(settings, enqueuer=InlineQueue())
    made.append(container)
    return container


def _key(container: Container, name: str) -> str:
    _, key = new_workspace(container, name)
    return key


def _guess() -> str:
    return "bp_" + secrets.token_urlsafe(32)


def _random_call(client: TestClient, i: int) -> tuple[int, dict[str, str]]:
    """A request with a made-up key: Bearer on the main API, X-Token on the TensorBay one."""
    if i % 2:
        r = client.get(f"{TB}/datasets", headers={"X-Token": "ACCESSKEY-" + _guess()})
    else:
        r = client.get("/v1/datasets", headers={"Authorization": f"Bearer {_guess()}"})
    return r.status_code, r.json()


def test_random_keys_on_both_faces_share_one_address_bucket_across_processes(
    tmp_path: Path, redis_url: str, containers: list[Container]
) -> None:
    settings = _settings(tmp_path, redis_url, api_ip_rate_limit="6/minute")
    # Two API processes on one Redis: the count is shared.
    one, two = (TestClient(create_app(_container(containers, settings))) for _ in range(2))
    answers = [_random_call((one, two)[i % 2], i) for i in range(6)]
    assert [code for code, _ in answers] == [401] * 6, answers
    code, body = _random_call(one, 6)
    assert code == 429 and "BAYPORT_API_IP_RATE_LIMIT" in body["detail"]
    code, body = _random_call(two, 7)
    assert code == 429 and body["code"] == "TooManyRequests"  # the TensorBay SDK's shape
    assert "BAYPORT_API_IP_RATE_LIMIT" in body["message"]


def test_a_made_up_key_never_gets_a_fresh_bucket(
    tmp_path: Path, redis_url: str, containers: list[Container]
) -> None:
    """Without a good key the request counts against its address, at the per-key rate: a
    new random key per request (unlimited commits, config checks...) is still 429."""
    settings = _settings(tmp_path, redis_url, api_rate_limit="4/minute")
    container = _container(containers, settings)
    client = TestClient(create_app(container))
    codes = [_random_call(client, i)[0] for i in range(4)]
    assert codes == [401] * 4
    code, body = _random_call(client, 4)
    assert code == 429 and "BAYPORT_API_RATE_LIMIT" in body["detail"]
    assert "without a good key" in body["detail"]
    # POSTs too (a commit, a config check): each with a fresh key.
    r = client.post(f"{TB}/datasets/x/commits", headers={"X-Token": "ACCESSKEY-" + _guess()})
    assert r.status_code == 429 and r.json()["code"] == "TooManyRequests"


def test_a_good_keys_bucket_is_its_own(
    tmp_path: Path, redis_url: str, containers: list[Container]
) -> None:
    settings = _settings(tmp_path, redis_url, api_rate_limit="3/minute")
    container = _container(containers, settings)
    alice, bob = _key(container, "alice"), _key(container, "bob")
    client = TestClient(create_app(container))
    # Made-up keys use up the address's bucket, not alice's.
    assert [_random_call(client, i)[0] for i in range(4)] == [401, 401, 401, 429]
    as_alice = {"Authorization": f"Bearer {alice}"}
    assert [client.get("/v1/datasets", headers=as_alice).status_code for _ in range(2)] == [200] * 2
    # The same key through the TensorBay API's X-Token is the same bucket.
    tb = client.get(f"{TB}/datasets", headers={"X-Token": "ACCESSKEY-" + alice})
    assert tb.status_code == 200
    over = client.get(f"{TB}/datasets", headers={"X-Token": "ACCESSKEY-" + alice})
    assert over.status_code == 429 and "per API key" in over.json()["message"]
    assert client.get("/v1/datasets", headers=as_alice).status_code == 429
    # Bob, from the same address, is not held back by either.
    assert client.get("/v1/datasets", headers={"Authorization": f"Bearer {bob}"}).status_code == 200


def test_key_guessing_is_throttled_per_address(
    tmp_path: Path, redis_url: str, containers: list[Container]
) -> None:
    """Failed authentications (401) count hard: past BAYPORT_API_AUTH_FAILURE_LIMIT an
    address gets no more answers to guesses, while a good key from it still works."""
    settings = _settings(tmp_path, redis_url, api_auth_failure_limit="5/minute")
    container = _container(containers, settings)
    good = _key(container, "w")
    client = TestClient(create_app(container))
    codes = [_random_call(client, i)[0] for i in range(5)]
    assert codes == [401] * 5
    for i in range(5, 25):  # no guess is even checked any more
        code, body = _random_call(client, i)
        assert code == 429, (i, body)
    assert "BAYPORT_API_AUTH_FAILURE_LIMIT" in client.get("/v1/datasets").json()["detail"]
    assert (
        client.get("/v1/datasets", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    )
