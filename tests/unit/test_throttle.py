"""The shared rates and caps (stores/throttle.py) against a real Redis, in a namespace of their
own; the throttled store's charging against a recording gate.

Two Throttle objects on one namespace stand for two worker processes. Waits are recorded
instead of slept where the test is about the arithmetic: the reservations are booked as the
calls come, so the recorded waits are the schedule the requests would go out on.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from bootstrap import Container
from importer.manifest import ImportOptions
from storage_adapters.base import StorageSpec
from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.memory import MemoryBackend, MemoryStore
from storage_adapters.registry import open_store
from storage_adapters.throttled import ThrottledStore, unwrap
from stores.resolver import ConfigStores
from stores.throttle import Cap, Throttle, Tuning
from tests.support import add_config

ACCOUNT = "a-provider-account"


class Waits:
    """A `sleep` that records instead of sleeping (thread-safe)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.until: list[float] = []  # when each wait would have ended (monotonic clock)
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.seconds.append(seconds)
            self.until.append(time.monotonic() + seconds)

    def spacing(self) -> list[float]:
        """When the waits would have ended, from the first one's end: on a busy machine a
        slow answer shortens a wait, never moves the slot it ends on."""
        ends = sorted(
            end for wait, end in zip(self.seconds, self.until, strict=True) if wait > 0.001
        )
        return [end - ends[0] for end in ends]


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    ns = f"bayport-test-throttle-{uuid.uuid4().hex[:10]}"
    yield ns
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{ns}:*"):
        client.delete(key)


def throttle(redis_url: str, namespace: str, **kw: Any) -> Throttle:
    return Throttle(redis_url=redis_url, namespace=namespace, **kw)


def test_a_request_cap_is_shared_by_two_processes(redis_url: str, namespace: str) -> None:
    waits = Waits()
    a = throttle(redis_url, namespace, sleep=waits)
    b = throttle(redis_url, namespace, sleep=waits)
    gates = [t.gate(account=None, caps=[Cap("config:c1", requests_per_second=20)]) for t in (a, b)]
    assert gates[0] is not None and gates[1] is not None
    for i in range(40):
        gates[i % 2].admit(1, 0)  # type: ignore[union-attr]
    # The first two go at once (a burst of one interval), then one every 1/20 s, whichever
    # process asks: 40 requests take two seconds, not one per process. (The sleeps are not
    # slept, so each wait is counted from when it was asked: a busy machine that answers
    # slowly shortens the waits, never the slots they end on.)
    asked = zip(waits.seconds, waits.until, strict=True)
    slots = sorted(end for wait, end in asked if wait > 0.001)
    assert len(slots) == 38
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    assert all(gap == pytest.approx(1 / 20, abs=0.04) for gap in gaps), gaps
    assert slots[-1] - slots[0] == pytest.approx(37 / 20, abs=0.1)  # not 19/20: shared


def test_a_byte_cap_charges_bytes_and_a_job_cap_is_its_own(redis_url: str, namespace: str) -> None:
    waits = Waits()
    t = throttle(redis_url, namespace, sleep=waits)
    store = MemoryStore()
    capped = t.cap(store, scope="job:j1", bytes_per_second=1_000_000)
    other = t.cap(store, scope="job:j2", bytes_per_second=1_000_000)
    for _ in range(5):
        capped.put("k", b"x" * 200_000)  # 0.2 s of the cap each
    other.put("k", b"x" * 200_000)  # another job: not held back by the first
    assert waits.spacing() == pytest.approx([0, 0.2, 0.4, 0.6], abs=0.03)
    assert t.cap(store, scope="job:j3") is store  # no cap: the store itself


def test_caps_hold_per_process_without_redis() -> None:
    waits = Waits()
    t = Throttle(redis_url=None, sleep=waits)
    assert not t.shared and not t.adaptive
    assert t.gate(account=ACCOUNT) is None  # no Redis: no shared throttling
    gate = t.gate(account=ACCOUNT, caps=[Cap("config:c1", requests_per_second=10)])
    assert gate is not None
    for _ in range(4):
        gate.admit(1, 0)
    assert waits.spacing() == pytest.approx([0, 0.1], abs=0.03)


def test_a_redis_that_does_not_answer_is_not_in_the_way() -> None:
    waits = Waits()
    t = Throttle(redis_url="redis://127.0.0.1:9/0", sleep=waits)  # the discard port: closed
    gate = t.gate(account=ACCOUNT, caps=[Cap("config:c1", requests_per_second=10)])
    assert gate is not None
    for _ in range(3):
        gate.admit(1, 0)
    gate.throttled()
    assert len([w for w in waits.seconds if w > 0.001]) == 1  # caps: per process


def test_caps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        Cap("config:c1", requests_per_second=0)
    with pytest.raises(ValidationError):
        ImportOptions(max_requests_per_second=0)
    with pytest.raises(ValidationError):
        ImportOptions(max_bytes_per_second=-1)
    assert ImportOptions(max_requests_per_second=2.5).max_requests_per_second == 2.5


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_account_takes_no_token_until_it_is_throttled(redis_url: str, namespace: str) -> None:
    clock, waits = Clock(), Waits()
    t = throttle(redis_url, namespace, sleep=waits, clock=clock)
    gate = t.gate(account=ACCOUNT)
    assert gate is not None
    client = redis.Redis.from_url(redis_url)
    for _ in range(3):  # 100 requests a second for 1.5 s
        for _ in range(50):
            gate.admit(1, 0)
        clock.now += 0.5
    assert waits.seconds == []
    assert t.account_rate(ACCOUNT) is None
    assert not any(k.endswith(b":tat") for k in client.scan_iter(f"{namespace}:*"))


def test_throttling_halves_the_shared_rate_once_per_cooldown(
    redis_url: str, namespace: str
) -> None:
    clock, waits = Clock(), Waits()
    a = throttle(redis_url, namespace, sleep=waits, clock=clock)
    gate_a = a.gate(account=ACCOUNT)
    assert gate_a is not None
    for _ in range(3):  # process a: 100 requests a second
        for _ in range(50):
            gate_a.admit(1, 0)
        clock.now += 0.5
    gate_a.throttled()
    rate = a.account_rate(ACCOUNT)
    assert rate is not None and 45 <= rate <= 55, rate  # half of what was observed
    gate_a.throttled()  # answers to requests sent before the decrease: no second one
    again = a.account_rate(ACCOUNT)
    assert again is not None and again >= rate
    # Another process on the account takes tokens at the shared rate from its first request.
    b_waits = Waits()
    b = throttle(redis_url, namespace, sleep=b_waits)
    gate_b = b.gate(account=ACCOUNT)
    assert gate_b is not None
    for _ in range(21):
        gate_b.admit(1, 0)
    assert len(b_waits.seconds) >= 19
    assert max(b_waits.seconds) == pytest.approx(19 / rate, abs=0.05)


def test_the_observed_rate_is_every_process_s(redis_url: str, namespace: str) -> None:
    clocks = [Clock(), Clock()]
    throttles = [throttle(redis_url, namespace, clock=c) for c in clocks]
    gates = [t.gate(account=ACCOUNT) for t in throttles]
    for _ in range(4):  # each process: 60 requests a second
        for gate, clock in zip(gates, clocks, strict=True):
            for _ in range(30):
                gate.admit(1, 0)  # type: ignore[union-attr]
            clock.now += 0.5
    gates[1].throttled()  # type: ignore[union-attr]
    rate = throttles[0].account_rate(ACCOUNT)
    assert rate is not None and 54 <= rate <= 66, rate  # half of 120


def test_the_rate_recovers_and_then_takes_no_tokens(redis_url: str, namespace: str) -> None:
    waits = Waits()
    # Fast recovery: from half back to the throttled rate in 0.2 s.
    tuning = Tuning(recovery=5.0, cooldown=0.1)
    t = throttle(redis_url, namespace, sleep=waits, tuning=tuning)
    gate = t.gate(account=ACCOUNT)
    assert gate is not None
    for _ in range(40):
        gate.admit(1, 0)
    gate.throttled()
    assert t.account_rate(ACCOUNT) is not None
    time.sleep(0.6)
    assert t.account_rate(ACCOUNT) is None
    waits.seconds.clear()
    for _ in range(40):
        gate.admit(1, 0)
    assert waits.seconds == []


def test_an_unknown_rate_falls_to_the_floor(redis_url: str, namespace: str) -> None:
    t = throttle(redis_url, namespace, tuning=Tuning(floor=3.0))
    gate = t.gate(account=ACCOUNT)
    assert gate is not None
    gate.throttled()  # before any request was counted
    assert t.account_rate(ACCOUNT) == pytest.approx(3.0, abs=0.5)


def test_a_throttled_store_reports_rate_limited_errors(redis_url: str, namespace: str) -> None:
    t = throttle(redis_url, namespace)
    backend = MemoryBackend("throttled")
    store = MemoryStore(backend)
    gate = t.gate(account=store.account)
    assert gate is not None
    wrapped = ThrottledStore(store, gate)
    wrapped.put("k", b"data")
    backend.fail_next("head", StorageError(ErrorKind.RATE_LIMITED, "SlowDown", status=503))
    with pytest.raises(StorageError) as caught:
        wrapped.head("k")
    assert caught.value.kind is ErrorKind.RATE_LIMITED  # raised as it was: retries see it
    assert t.account_rate(store.account) is not None
    backend.fail_next("head", StorageError(ErrorKind.NOT_FOUND, "gone", status=404))
    with pytest.raises(StorageError):
        wrapped.head("k")


class Recorder:
    def __init__(self, *also: Recorder) -> None:
        self.calls: list[tuple[int, int]] = []
        self.throttles = 0
        self.also = also

    def admit(self, requests: int, nbytes: int) -> None:
        for gate in (self, *self.also):
            gate.calls.append((requests, nbytes))

    def throttled(self) -> None:
        for gate in (self, *self.also):
            gate.throttles += 1

    def joined(self, other: Any) -> Recorder:
        joined = Recorder(self, other)
        joined.calls = []
        return joined


def test_what_each_request_is_charged() -> None:
    backend = MemoryBackend("charges")
    src_gate, dst_gate = Recorder(), Recorder()
    src = ThrottledStore(MemoryStore(backend, min_part_size=1), src_gate)
    dst = ThrottledStore(MemoryStore(backend, min_part_size=1), dst_gate)
    src.put("a", b"x" * 3000)
    assert src_gate.calls == [(1, 3000)]
    assert src.get_bytes("a", max_size=10_000) == b"x" * 3000
    assert src_gate.calls[1:] == [(1, 0), (0, 3000)]  # a read: its bytes once they arrived
    src_gate.calls.clear()
    assert b"".join(src.open("a", chunk_size=1000)) == b"x" * 3000
    assert src_gate.calls == [(1, 0), (0, 1000), (0, 1000), (0, 1000)]
    # A server-side copy: one request at the object's size, to both stores' rates (it reads
    # one bucket and writes the other); the adapter sees the source unwrapped.
    assert dst.can_copy_from(src) and unwrap(dst) is dst.inner
    src_gate.calls.clear()
    dst.copy_from(src, "a", "b", size=3000)
    upload = dst.create_multipart("c")
    dst.copy_part(src, "a", "c", upload, 1, (0, 999))
    assert dst_gate.calls == [(1, 3000), (1, 0), (1, 1000)]
    assert src_gate.calls == [(1, 3000), (1, 1000)]
    backend.fail_next("copy_from", StorageError(ErrorKind.RATE_LIMITED, "SlowDown"))
    with pytest.raises(StorageError):
        dst.copy_from(src, "a", "b", size=3000)
    assert src_gate.throttles == dst_gate.throttles == 1


def test_a_copy_under_one_job_counts_once(redis_url: str, namespace: str) -> None:
    waits = Waits()
    t = throttle(redis_url, namespace, sleep=waits)
    backend = MemoryBackend("one-job")
    src = t.cap(MemoryStore(backend), scope="job:j1", requests_per_second=10)
    dst = t.cap(MemoryStore(backend), scope="job:j1", requests_per_second=10)
    other = t.cap(MemoryStore(backend), scope="config:c9", requests_per_second=5)
    src.put("a", b"x")
    waits.seconds.clear()
    for _ in range(3):
        dst.copy_from(src, "a", "b", size=1)
    # Once per copy: after the put and the first copy (a burst of one), 0.1 s apart;
    # charged twice they would be 0.2 s apart ([0.1, 0.3, 0.5]).
    assert waits.spacing() == pytest.approx([0, 0.1], abs=0.03)
    # Capped again under another scope: one store, both rates, one gate.
    both = t.cap(other, scope="job:j1", requests_per_second=10)
    assert isinstance(both, ThrottledStore) and not isinstance(both.inner, ThrottledStore)


def test_config_stores_apply_a_configs_caps(container: Container, workspace_id: str) -> None:
    ctx = container.ctx
    config = add_config(ctx, container.box, workspace_id=workspace_id, name="m", bucket="m")
    stores = ConfigStores(container.settings, container.box)
    assert not isinstance(stores.for_config(config), ThrottledStore)  # memory, no cap
    config.max_requests_per_second = 5.0
    capped = stores.for_config(config)
    assert isinstance(capped, ThrottledStore)
    assert unwrap(capped) is not capped
    assert stores.for_config(config) is capped  # cached with its caps
    assert open_store(StorageSpec("memory", bucket="m")).account == capped.account
