"""One scheduling beat at a time: `bayport beat --lock` holds a lock in Redis while it runs,
and a second beat started with `--lock` waits for it (a standby, touching its heartbeat).

Beats need no lock to be correct: every occurrence is claimed in the metadata DB once
(scheduler.service.fire_due). The lock makes "beat as a single replica" true across a
rollout or a mistaken scale-up: only one beat reads the schedules and sends runs. The holder
renews the lock's TTL every third of it; a holder that cannot renew in time (Redis gone, its
key lost with a restarted Redis) stops its beat, which a supervisor restarts to wait again."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import redis
from redis.exceptions import LockError, RedisError

from bayport.settings import Settings, SettingsError

log = logging.getLogger("bayport.scheduler.lock")


def lock_key(settings: Settings) -> str:
    return f"{settings.metrics_namespace}:beat-lock"


def lock_redis_url(settings: Settings) -> str:
    """The Redis that holds the lock: BAYPORT_THROTTLE_REDIS_URL, else the metrics Redis,
    else the broker when it is Redis."""
    url = settings.resolved_throttle_redis_url
    if url is None:
        raise SettingsError(
            "bayport beat --lock needs Redis: a redis:// broker, or BAYPORT_THROTTLE_REDIS_URL"
        )
    return url


class BeatLock:
    """The lock itself (redis-py's Lock: a key set NX with a TTL and a token of its own)."""

    def __init__(self, client: redis.Redis, key: str, *, ttl: float) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = client.lock(key, timeout=ttl, thread_local=False)

    def current_holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else None

    def try_acquire(self) -> bool:
        return bool(self._lock.acquire(blocking=False, token=self.holder))

    def wait(
        self, *, poll: float | None = None, while_waiting: Callable[[], None] = lambda: None
    ) -> None:
        """Block until this process holds the lock, calling `while_waiting` every poll."""
        poll = poll if poll is not None else max(0.5, self.ttl / 3)
        said: str | None = None
        while True:
            try:
                if self.try_acquire():
                    log.info("beat: holding the beat lock %s as %s", self.key, self.holder)
                    return
                holder = self.current_holder()
                if holder != said:
                    log.info("beat: waiting for the beat lock %s (held by %s)", self.key, holder)
                    said = holder
            except RedisError as exc:
                log.warning("beat: the lock's Redis does not answer (%s); waiting", exc)
            while_waiting()
            time.sleep(poll)

    def renew(self) -> bool:
        """Reset the TTL; False when the lock is no longer this process's."""
        try:
            self._lock.reacquire()
        except LockError:
            return False
        return True

    def release(self) -> None:
        with contextlib.suppress(LockError, RedisError):
            self._lock.release()


class _Renewer(threading.Thread):
    """Renews the lock every third of its TTL; calls `on_lost` once when it cannot (the lock
    taken by another or gone, or Redis silent until the TTL would have run out)."""

    def __init__(self, lock: BeatLock, on_lost: Callable[[], None]) -> None:
        super().__init__(name="bayport-beat-lock", daemon=True)
        self.lock = lock
        self.on_lost = on_lost
        self.stopped = threading.Event()

    def run(self) -> None:
        renewed_at = time.monotonic()
        while not self.stopped.wait(self.lock.ttl / 3):
            try:
                if self.lock.renew():
                    renewed_at = time.monotonic()
                    continue
                problem = "another holder has it, or it expired"
            except RedisError as exc:
                if time.monotonic() - renewed_at < self.lock.ttl * 0.8:
                    log.warning("beat: could not renew the beat lock (%s); retrying", exc)
                    continue
                problem = f"Redis did not answer for {self.lock.ttl * 0.8:.0f} s"
            log.error("beat: lost the beat lock %s (%s): stopping", self.lock.key, problem)
            self.on_lost()
            return


@contextlib.contextmanager
def holding_beat_lock(
    settings: Settings,
    *,
    ttl: float,
    on_lost: Callable[[], None],
    while_waiting: Callable[[], None] = lambda: None,
) -> Iterator[BeatLock]:
    """Wait for the beat lock, keep it renewed while the block runs, release it after."""
    client = redis.Redis.from_url(
        lock_redis_url(settings), socket_connect_timeout=5, socket_timeout=5
    )
    lock = BeatLock(client, lock_key(settings), ttl=ttl)
    lock.wait(while_waiting=while_waiting)
    renewer = _Renewer(lock, on_lost)
    renewer.start()
    try:
        yield lock
    finally:
        renewer.stopped.set()
        renewer.join(timeout=5)
        lock.release()
        client.close()
