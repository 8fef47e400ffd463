"""Request rates every worker process shares, held in Redis: the self-adjusting rate of a
provider account that answered "slow down", and the fixed caps users set on storage configs
and jobs.

Shared throttling (per provider account: provider + endpoint + access key id, hashed — the
adapters' `account`). While an account has never answered "slow down", its requests take no
token: each process only counts them and, every `CHECK_SECONDS`, publishes its request rate
in Redis and checks whether the account is throttled (one round trip per account per process
per half second). A rate_limited error (SlowDown, ServerBusy, 429, 503-throttling) sets the
account's shared rate to `decrease` × the rate its requests were observed at (the sum of the
rates its processes published), at least `floor`; one decrease per `cooldown`, since the
answers to requests already on their way keep arriving for a while.
The rate then climbs again by `recovery` × itself per second (additive increase) up to the
rate that was throttled, where the state expires (a TTL) and requests stop taking tokens.
While throttled, every request of every process takes a token at the current rate.

Caps: `max_requests_per_second` / `max_bytes_per_second` of a storage config (scope
`config:<id>`) or of a job's manifest (scope `job:<id>`) hold for all requests under that
scope in all processes.

Tokens are GCRA reservations in one Lua script (one round trip for a request's account and
caps together): the script books the request's slot and answers how long to wait for it, and
the caller sleeps that long. The `limits` library (used for the API's rate limit) answers only
yes or no to a hit: a blocking acquire on it would poll and retry (many threads waking at the
same reset time), a rate that changes would be a new limit key, and a cost larger than one
window (a 16 MiB part under a 1 MiB/s cap) never fits at all.

Without Redis (no URL configured) shared throttling is off and caps hold per process, each
process alone to the full cap. A Redis that stops answering turns shared throttling off and
caps per process for `OUTAGE_SECONDS`, with a warning: throttling must never fail a copy.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bayport.settings import Settings
from storage_adapters.base import ObjectStore
from storage_adapters.throttled import Gate, ThrottledStore

log = logging.getLogger("bayport.throttle")

CHECK_SECONDS = 0.5  # how stale a process's view of "is this account throttled?" may be
OUTAGE_SECONDS = 30.0
RATE_SECONDS = 2.0  # a process's request rate: over the last two seconds
CAP_BURST_SECONDS = 0.1  # a byte cap lets this much of a second's bytes through at once

# KEYS[1]: the account's state hash (read when ARGV[1] == '1', then KEYS[2] is the account's
# token bucket); KEYS[2..]: token buckets. ARGV from 2: per bucket rate (per second; the
# account's comes from its state), burst (seconds; negative: one token's interval), cost.
# Books each bucket's slot (GCRA: the theoretical arrival time moves on by cost/rate) and
# answers {the longest wait in seconds, the account's current rate or ''}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local wait = 0
local account_rate = ''
for i = 2, #KEYS do
  local j = (i - 2) * 3 + 2
  local rate = tonumber(ARGV[j])
  local burst = tonumber(ARGV[j + 1])
  local cost = tonumber(ARGV[j + 2])
  if i == 2 and ARGV[1] == '1' then
    rate = nil
    local s = redis.call('HMGET', KEYS[1], 'base', 'at', 'ceiling', 'step')
    if s[1] then
      local since = math.max(0, now - tonumber(s[2]))
      rate = math.min(tonumber(s[3]), tonumber(s[1]) + tonumber(s[4]) * since)
      account_rate = tostring(rate)
    end
  end
  if rate and rate > 0 and cost > 0 then
    if burst < 0 then burst = 1 / rate end
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    local w = tat - burst - now
    if w > wait then wait = w end
    local booked = tat + cost / rate
    redis.call('SET', KEYS[i], tostring(booked), 'PX', math.ceil((booked - now + 1) * 1000))
  end
end
return {tostring(wait), account_rate}
"""

# KEYS[1]: the account's state hash; KEYS[2]: the request rates its processes published
# (process -> "rate time"). ARGV: this process, its own rate now, decrease, floor, recovery,
# cooldown, max seconds. Answers {the account's rate now, '1' if lowered}.
_THROTTLED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local me, own_rate, decrease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local floor, recovery, cooldown = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local max_seconds = tonumber(ARGV[7])
local s = redis.call('HMGET', KEYS[1], 'base', 'at', 'ceiling', 'step')
local current, ceiling = nil, nil
if s[1] then
  local since = math.max(0, now - tonumber(s[2]))
  ceiling = tonumber(s[3])
  current = math.min(ceiling, tonumber(s[1]) + tonumber(s[4]) * since)
  if since < cooldown then return {tostring(current), '0'} end
end
-- The account's observed rate: this process's own, and the others' fresh ones.
local observed = own_rate
local rates = redis.call('HGETALL', KEYS[2])
for i = 1, #rates, 2 do
  local rate, at = string.match(rates[i + 1], '^(%S+) (%S+)$')
  if rates[i] ~= me and rate and now - tonumber(at) <= 2 then
    observed = observed + tonumber(rate)
  end
end
if current then
  if observed <= 0 or observed > current then observed = current end
else
  if observed <= 0 then observed = floor end
  ceiling = observed
end
local base = math.max(floor, observed * decrease)
local step = math.max(base * recovery, 0.01)
if ceiling < base then ceiling = base end
local ttl = math.min(max_seconds, (ceiling - base) / step + cooldown)
redis.call('HSET', KEYS[1], 'base', tostring(base), 'at', tostring(now),
           'ceiling', tostring(ceiling), 'step', tostring(step))
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000))
return {tostring(base), '1'}
"""


@dataclass(frozen=True)
class Cap:
    """A user's cap on every request made under `scope` (`config:<id>`, `job:<id>`)."""

    scope: str
    requests_per_second: float | None = None
    bytes_per_second: int | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_second", "bytes_per_second"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be greater than 0, got {value}")


@dataclass(frozen=True)
class Tuning:
    """How an account's shared rate falls and climbs back."""

    decrease: float = 0.5  # the rate becomes this fraction of the observed one
    floor: float = 1.0  # requests per second, at least
    recovery: float = 0.1  # per second, as a fraction of the rate the decrease set
    cooldown: float = 1.0  # seconds: one decrease per cooldown
    max_seconds: float = 600.0  # the state expires at the latest after this long


@dataclass(frozen=True)
class _Bucket:
    key: str  # the Redis key of its theoretical arrival time
    rate: float  # per second: requests or bytes
    burst: float  # seconds of tolerance
    bytes: bool  # charged bytes (else requests)


class _Account:
    """One process's view of one provider account."""

    def __init__(self, prefix: str, account: str) -> None:
        digest = hashlib.sha256(f"bayport-account\n{account}".encode()).hexdigest()[:32]
        self.label = digest[:8]  # for logs
        self.state_key = f"{prefix}:account:{digest}"
        self.bucket = _Bucket(f"{self.state_key}:tat", 0.0, -1.0, bytes=False)
        self.throttled = False
        self.checked = -math.inf
        self.lock = threading.Lock()  # held by the thread checking Redis
        self._count_lock = threading.Lock()
        self.count = 0  # requests this process made
        self.rates_key = f"{self.state_key}:rates"
        self.samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=16)

    def counted(self, requests: int) -> None:
        with self._count_lock:
            self.count += requests

    def local_rate(self, now: float) -> float:
        """This process's requests per second over the last RATE_SECONDS (from its checks).
        Right after its first requests it may overestimate a burst: a rate set too high is
        lowered again a cooldown later, one set too low would climb back only slowly."""
        samples = list(self.samples)  # a copy: the checking thread appends meanwhile
        old = next((s for s in samples if now - s[0] <= RATE_SECONDS), None)
        if old is None:
            return 0.0
        return (self.count - old[1]) / max(now - old[0], 0.1)


class _LocalBuckets:
    """The same reservations in this process alone (no Redis, or Redis not answering)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}

    def reserve(self, items: Sequence[tuple[_Bucket, int]]) -> float:
        now, wait = self._clock(), 0.0
        with self._lock:
            if len(self._tat) > 10_000:  # jobs come and go: drop the long-past ones
                self._tat = {k: v for k, v in self._tat.items() if v > now}
            for bucket, cost in items:
                burst = bucket.burst if bucket.burst >= 0 else 1 / bucket.rate
                tat = max(self._tat.get(bucket.key, now), now)
                wait = max(wait, tat - burst - now)
                self._tat[bucket.key] = tat + cost / bucket.rate
        return wait


class _SharedGate:
    """The gate of one store: its account (None: not throttled) and its caps' buckets."""

    def __init__(
        self, throttle: Throttle, account: _Account | None, buckets: Sequence[_Bucket]
    ) -> None:
        self._throttle = throttle
        self._account = account
        self._buckets = tuple(buckets)

    def admit(self, requests: int, nbytes: int) -> None:
        items = [
            (b, nbytes if b.bytes else requests)
            for b in self._buckets
            if (nbytes if b.bytes else requests) > 0
        ]
        account = self._account
        if account is not None and requests:
            account.counted(requests)
            if not self._throttle.account_throttled(account):
                account = None
        else:
            account = None
        if not items and account is None:
            return
        wait = self._throttle.reserve(items, account, requests)
        if wait > 0:
            self._throttle.sleep(wait)

    def throttled(self) -> None:
        if self._account is not None:
            self._throttle.report_throttled(self._account)

    def joined(self, other: Gate) -> Gate:
        if not isinstance(other, _SharedGate) or other is self:
            return self
        # Two stores that copy server-side between them are on one account.
        keys = {b.key for b in self._buckets}
        buckets = [*self._buckets, *(b for b in other._buckets if b.key not in keys)]
        return _SharedGate(self._throttle, self._account or other._account, buckets)


class Throttle:
    """This process's side of the shared rates: gates for stores, the RequestCaps port."""

    def __init__(
        self,
        *,
        redis_url: str | None,
        namespace: str = "bayport",
        adaptive: bool = True,
        tuning: Tuning | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client: Any = None
        if redis_url:
            import redis

            self._client = redis.Redis.from_url(
                redis_url, socket_timeout=2.0, socket_connect_timeout=1.0
            )
            self._acquire = self._client.register_script(_ACQUIRE)
            self._throttled = self._client.register_script(_THROTTLED)
        self.adaptive = adaptive and self._client is not None
        self.tuning = tuning or Tuning()
        self.prefix = f"{namespace}:throttle"
        self.sleep = sleep
        self._clock = clock
        self._local = _LocalBuckets(clock)
        self._accounts: dict[str, _Account] = {}
        self._lock = threading.Lock()
        self._off_until = -math.inf
        self._me = uuid.uuid4().hex[:16]  # this process, among the account's publishers

    @classmethod
    def from_settings(cls, settings: Settings) -> Throttle:
        # The metrics namespace keeps one deployment (or one test run) apart from another
        # on a shared Redis; every process of a deployment has the same.
        return cls(
            redis_url=settings.resolved_throttle_redis_url,
            namespace=settings.metrics_namespace,
            adaptive=settings.shared_throttle,
        )

    @property
    def shared(self) -> bool:
        """Are caps held across processes (Redis configured)?"""
        return self._client is not None

    # -- gates --------------------------------------------------------------------------------

    def gate(self, *, account: str | None, caps: Sequence[Cap] = ()) -> Gate | None:
        """The gate of a store on `account` (None: never throttled, e.g. a local folder)
        under `caps`; None when it would have nothing to do."""
        buckets = [b for cap in caps for b in self._buckets(cap)]
        view = self._account(account) if account is not None and self.adaptive else None
        if view is None and not buckets:
            return None
        return _SharedGate(self, view, buckets)

    def cap(
        self,
        store: ObjectStore,
        *,
        scope: str,
        requests_per_second: float | None = None,
        bytes_per_second: int | None = None,
    ) -> ObjectStore:
        """`store`, its requests held together with every other store capped under `scope`
        (in every process) to these rates. The RequestCaps port of the import logic."""
        gate = self.gate(account=None, caps=[Cap(scope, requests_per_second, bytes_per_second)])
        if gate is None:
            return store
        if isinstance(store, ThrottledStore):  # one gate, one round trip per request
            return ThrottledStore(store.inner, store.gate.joined(gate))
        return ThrottledStore(store, gate)

    def _buckets(self, cap: Cap) -> list[_Bucket]:
        key = f"{self.prefix}:{cap.scope}"
        buckets = []
        if cap.requests_per_second is not None:
            rps = float(cap.requests_per_second)
            buckets.append(_Bucket(f"{key}:requests", rps, 1 / rps, bytes=False))
        if cap.bytes_per_second is not None:
            bps = float(cap.bytes_per_second)
            buckets.append(_Bucket(f"{key}:bytes", bps, CAP_BURST_SECONDS, bytes=True))
        return buckets

    def _account(self, account: str) -> _Account:
        with self._lock:
            view = self._accounts.get(account)
            if view is None:
                view = self._accounts[account] = _Account(self.prefix, account)
            return view

    # -- Redis --------------------------------------------------------------------------------

    def _redis_up(self) -> bool:
        return self._client is not None and self._clock() >= self._off_until

    def _outage(self, exc: Exception) -> None:
        with self._lock:
            first = self._clock() >= self._off_until
            self._off_until = self._clock() + OUTAGE_SECONDS
        if first:
            log.warning(
                "throttle: Redis did not answer (%s): shared throttling off and caps held "
                "per process for %.0f s",
                exc,
                OUTAGE_SECONDS,
            )

    def account_throttled(self, view: _Account) -> bool:
        """The cached answer, checked again (and this process's rate published) at most
        every CHECK_SECONDS; only one thread checks, the others take the cached one."""
        now = self._clock()
        if now - view.checked < CHECK_SECONDS or not view.lock.acquire(blocking=False):
            return view.throttled
        try:
            view.checked = now
            if not self._redis_up():
                view.throttled = False
                return False
            view.samples.append((now, view.count))
            pipe = self._client.pipeline(transaction=False)
            # Publish this process's rate (with the time: a process that stops publishing
            # is left out after two seconds).
            pipe.hset(view.rates_key, self._me, f"{view.local_rate(now):.3f} {time.time():.3f}")
            pipe.expire(view.rates_key, 60)
            pipe.exists(view.state_key)
            view.throttled = bool(pipe.execute()[-1])
        except Exception as exc:  # never in the way of a copy
            view.throttled = False
            self._outage(exc)
        finally:
            view.lock.release()
        return view.throttled

    def reserve(
        self, items: Sequence[tuple[_Bucket, int]], account: _Account | None, requests: int
    ) -> float:
        """Book the slots; the seconds to wait for the latest of them."""
        if self._redis_up():
            keys = [account.state_key if account else f"{self.prefix}:none"]
            args: list[str | float | int] = ["1" if account else "0"]
            if account is not None:
                keys.append(account.bucket.key)
                args += [0, -1, requests]
            for bucket, cost in items:
                keys.append(bucket.key)
                args += [repr(bucket.rate), repr(bucket.burst), cost]
            try:
                wait, rate = self._acquire(keys=keys, args=args)
            except Exception as exc:
                self._outage(exc)
            else:
                if account is not None and not rate:
                    account.throttled = False  # recovered since this process last checked
                return float(wait)
        return self._local.reserve(items) if items else 0.0

    def report_throttled(self, view: _Account) -> None:
        """The account answered "slow down": lower its shared rate (once per cooldown)."""
        if not self._redis_up():
            return
        t = self.tuning
        keys = [view.state_key, view.rates_key]
        own = view.local_rate(self._clock())
        args = [self._me, repr(own), t.decrease, t.floor, t.recovery, t.cooldown, t.max_seconds]
        try:
            rate, lowered = self._throttled(keys=keys, args=args)
        except Exception as exc:
            self._outage(exc)
            return
        view.throttled, view.checked = True, self._clock()
        if lowered == b"1":
            log.info(
                "throttle: provider account %s said slow down: all workers now share %.1f "
                "requests/s on it",
                view.label,
                float(rate),
            )

    def account_rate(self, account: str) -> float | None:
        """The account's shared rate now (None: not throttled). For tests and reports."""
        if self._client is None:
            return None
        view = self._account(account)
        base, at, ceiling, step = self._client.hmget(
            view.state_key, "base", "at", "ceiling", "step"
        )
        if base is None:
            return None
        seconds, micros = self._client.time()
        since = max(0.0, int(seconds) + int(micros) / 1e6 - float(at))
        return min(float(ceiling), float(base) + float(step) * since)
