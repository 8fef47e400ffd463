"""Each adapter against each fault of tests/faultproxy.py, with the real SDK and server.

Every spoilt request must surface as one transient StorageError (RATE_LIMITED for a 503
SlowDown/ServerBusy, UNAVAILABLE for the rest) and never as a success with cut-short bytes;
a slow answer must still succeed. One call makes one request: no SDK retries behind our
back, so the retries our RetryPolicy counts are all the retries there are.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from storage_adapters.base import ObjectStore
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.retry import RetryPolicy
from tests.faultproxy import FAULT_KINDS, FaultPlan
from tests.proxied import Server, new_bucket, proxied

BODY = bytes(range(256)) * 40  # 10 KiB: a body worth cutting in half
QUICK = (0.2, 0.5)  # seconds a slow answer is held back here: slow, yet a short test


@pytest.fixture(params=["s3", "oss", "azure"])
def server(request: pytest.FixtureRequest) -> Server:
    return new_bucket(request, request.param, "faults")


@pytest.fixture
def direct(server: Server) -> ObjectStore:
    store = server.store()
    store.put("k", BODY)
    return store


def _calls(store: ObjectStore) -> dict[str, Callable[[], object]]:
    """One storage call of each sort, each checked to have returned the right thing."""

    def read() -> None:
        assert store.read("k", max_size=1 << 20).data == BODY

    def stream() -> None:
        assert b"".join(store.open("k", chunk_size=4096)) == BODY

    def head() -> None:
        assert store.head("k").size == len(BODY)

    def listing() -> None:
        assert "k" in [o.key for o in store.list_page("", limit=100).objects]

    def copy() -> None:
        assert store.copy_from(store, "k", "copy", size=len(BODY)).size == len(BODY)

    return {
        "list": listing,
        "head": head,
        "read": read,
        "open": stream,
        "put": lambda: store.put("put", BODY),
        "copy": copy,
    }


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_spoilt_request_is_one_transient_error(
    server: Server, direct: ObjectStore, kind: str
) -> None:
    with proxied(server, FaultPlan(rate=1.0, kinds=[kind], slow_seconds=QUICK)) as (proxy, store):
        calls = _calls(store)
        outcomes: dict[str, str] = {}
        for name, call in calls.items():
            try:
                call()
            except StorageError as exc:
                assert exc.transient, (name, exc)
                outcomes[name] = exc.kind.value
            else:
                outcomes[name] = "ok"
        # One request per call, spoilt or not: no SDK retried behind the adapter's back.
        # Azure's Copy Blob has the service read the source's URL itself, through the proxy
        # too, whenever the client's request reached it.
        reached = kind in ("reset_mid_answer", "slow_answer", "truncated_body")
        requests = len(calls) + (1 if server.flavor == "azure" and reached else 0)
        assert proxy.requests == requests, (proxy.requests, proxy.counts())
        assert sum(proxy.counts().values()) == requests
    expected = {
        "slow_answer": "ok",
        "slowdown_503": ErrorKind.RATE_LIMITED.value,
    }.get(kind, ErrorKind.UNAVAILABLE.value)
    wanted = dict.fromkeys(calls, expected)
    if server.flavor == "oss" and kind in ("reset_mid_answer", "truncated_body"):
        # OSS's CopyObject answer states the copy's ETag in its head; the adapter drains the
        # XML after it without caring whether it arrives whole. The copier then checks that
        # ETag (the MD5) against the source's.
        wanted["copy"] = "ok"
    assert outcomes == wanted, outcomes
    if kind != "slow_answer":
        assert direct.get_bytes("k", max_size=1 << 20) == BODY


def test_retries_get_through_and_each_is_counted(server: Server, direct: ObjectStore) -> None:
    """Half the requests spoilt, every kind: each call still succeeds with the right bytes,
    and the retry observer hears of every spoilt request, no more and no fewer."""
    counted: list[str] = []
    policy = RetryPolicy(
        attempts=30,
        initial_wait=0.0,
        max_wait=0.01,
        observer=lambda error, _attempt: counted.append(error.kind.value),
    )
    with proxied(server, FaultPlan(rate=0.5, seed=3, slow_seconds=QUICK)) as (proxy, store):
        calls = _calls(store)
        # A copy whose answer's XML is lost after its head said 200 did happen (see below).
        del calls["copy"]
        for _ in range(5):
            for call in calls.values():
                policy.call(call)
        injected = proxy.counts()
    failures = sum(injected.values()) - injected["slow_answer"]
    assert failures > 0 and len(counted) == failures, (injected, counted)
    assert counted.count(ErrorKind.RATE_LIMITED.value) == injected["slowdown_503"]
