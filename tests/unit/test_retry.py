"""The retry layer: transient StorageErrors are retried with capped waits, others are not."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from storage_adapters.errors import ErrorKind, StorageError
from storage_adapters.retry import RetryPolicy, call_with_retries


def failing(errors: list[StorageError], result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A call that raises `errors` in turn, then returns `result`; and its call log."""
    calls: list[int] = []

    def call() -> str:
        calls.append(len(calls) + 1)
        if errors:
            raise errors.pop(0)
        return result

    return call, calls


def test_transient_errors_are_retried_until_success() -> None:
    call, calls = failing(
        [StorageError(ErrorKind.UNAVAILABLE, "reset"), StorageError(ErrorKind.RATE_LIMITED, "503")]
    )
    seen: list[tuple[ErrorKind, int]] = []
    result = call_with_retries(
        call,
        attempts=5,
        initial_wait=0.001,
        max_wait=0.01,
        on_retry=lambda error, attempt: seen.append((error.kind, attempt)),
    )
    assert result == "ok"
    assert calls == [1, 2, 3]
    assert seen == [(ErrorKind.UNAVAILABLE, 1), (ErrorKind.RATE_LIMITED, 2)]


def test_permanent_errors_are_raised_at_once() -> None:
    denied = StorageError(ErrorKind.PERMISSION_DENIED, "403")
    call, calls = failing([denied])
    with pytest.raises(StorageError) as caught:
        call_with_retries(call, attempts=5, initial_wait=0.001, max_wait=0.01)
    assert caught.value is denied
    assert calls == [1]


def test_an_error_marked_permanent_is_not_retried_whatever_its_kind() -> None:
    call, calls = failing([StorageError(ErrorKind.UNAVAILABLE, "disk gone", transient=False)])
    with pytest.raises(StorageError):
        call_with_retries(call, attempts=5, initial_wait=0.001, max_wait=0.01)
    assert calls == [1]


def test_other_exceptions_are_not_retried() -> None:
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        call_with_retries(call, attempts=5, initial_wait=0.001, max_wait=0.01)
    assert calls == [1]


def test_the_last_error_itself_is_reraised_after_the_last_attempt() -> None:
    errors = [StorageError(ErrorKind.UNAVAILABLE, f"try {n}") for n in range(1, 4)]
    last = errors[-1]
    call, calls = failing(list(errors))
    with pytest.raises(StorageError) as caught:
        RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.01).call(call)
    assert caught.value is last
    assert calls == [1, 2, 3]


def test_retry_after_sets_the_least_wait() -> None:
    call, _ = failing([StorageError(ErrorKind.RATE_LIMITED, "slow down", retry_after=0.05)])
    started = time.monotonic()
    call_with_retries(call, attempts=2, initial_wait=0.0, max_wait=1.0)
    assert time.monotonic() - started >= 0.05


def test_retry_after_is_capped_by_max_wait() -> None:
    call, _ = failing([StorageError(ErrorKind.RATE_LIMITED, "in an hour", retry_after=3600)])
    waits: list[float] = []
    call_with_retries(call, attempts=2, initial_wait=0.0, max_wait=0.02, sleep=waits.append)
    assert waits == [pytest.approx(0.02)]


def test_backoff_is_jittered_below_an_exponential_cap() -> None:
    call, _ = failing([StorageError(ErrorKind.UNAVAILABLE, "x") for _ in range(5)])
    waits: list[float] = []
    call_with_retries(call, attempts=6, initial_wait=1.0, max_wait=4.0, sleep=waits.append)
    assert len(waits) == 5
    assert all(0 <= w <= cap for w, cap in zip(waits, [1, 2, 4, 4, 4], strict=True))
    assert len(set(waits)) > 1  # jittered, not a fixed ladder


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        call_with_retries(lambda: None, attempts=0, initial_wait=0, max_wait=0)
