"""Retries of single storage calls: transient StorageErrors only, jittered, honouring Retry-After.

This is the short-range layer; Celery redelivering a whole shard is the long-range one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from storage_adapters.errors import StorageError

T = TypeVar("T")
# Told about each retry before its wait: the error and the attempt that failed (1-based).
OnRetry = Callable[[StorageError, int], None]


def call_with_retries(
    fn: Callable[[], T],
    *,
    attempts: int,
    initial_wait: float,
    max_wait: float,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`fn()`, made again up to `attempts` times in all while it raises a transient
    StorageError. Waits are exponential with full jitter, capped at `max_wait`, and at least
    the error's `retry_after` (also capped). The last error is re-raised as it was."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    # The first attempt is made directly: most calls succeed at once, and setting tenacity
    # up costs more CPU than a small storage request on the lean S3 path. Tenacity makes
    # the retries, numbered on from the first attempt.
    try:
        return fn()
    except StorageError as error:
        if not error.transient or attempts == 1:
            raise
        if on_retry is not None:
            on_retry(error, 1)
        sleep(_wait_after(error, 1, initial_wait=initial_wait, max_wait=max_wait))

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return _wait_after(
            error, state.attempt_number + 1, initial_wait=initial_wait, max_wait=max_wait
        )

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if on_retry is not None and isinstance(error, StorageError):
            on_retry(error, state.attempt_number + 1)

    retrying = Retrying(
        stop=stop_after_attempt(attempts - 1),
        wait=wait,
        retry=retry_if_exception(lambda e: isinstance(e, StorageError) and e.transient),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    return retrying(fn)


def _wait_after(
    error: BaseException | None, attempt: int, *, initial_wait: float, max_wait: float
) -> float:
    """The wait after failed attempt `attempt` (1-based): exponential with full jitter,
    capped, and at least the error's Retry-After (also capped)."""
    ceiling = min(max_wait, initial_wait * 2 ** (attempt - 1))
    seconds = random.uniform(0, ceiling)  # noqa: S311 - jitter, not security
    if isinstance(error, StorageError) and error.retry_after is not None:
        seconds = max(seconds, min(error.retry_after, max_wait))
    return seconds


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry one storage call; built once from settings by the composition root."""

    attempts: int = 6
    initial_wait: float = 0.2
    max_wait: float = 20.0
    # Told about every retry of every call (metrics count them by error kind).
    observer: OnRetry | None = None

    def call(self, fn: Callable[[], T], on_retry: OnRetry | None = None) -> T:
        observer = self.observer
        if observer is not None:
            inner = on_retry

            def on_retry(error: StorageError, attempt: int) -> None:
                observer(error, attempt)
                if inner is not None:
                    inner(error, attempt)

        return call_with_retries(
            fn,
            attempts=self.attempts,
            initial_wait=self.initial_wait,
            max_wait=self.max_wait,
            on_retry=on_retry,
        )
