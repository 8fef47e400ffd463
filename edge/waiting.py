"""Bounded waits that hold no thread: a route waiting for something to happen sleeps on the
event loop, and each look at the DB takes a thread only for its query."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")

FIRST_PAUSE = 0.1
LONGEST_PAUSE = 1.0


async def settled_within(
    current: T,
    look: Callable[[], T],
    *,
    settled: Callable[[T], bool],
    seconds: float,
) -> T:
    """`current`, or what `look()` (a blocking query, run in the threadpool) answers next,
    until `settled` says it is or `seconds` have passed: the last answer either way. Looks
    start 0.1 s apart and back off to 1 s (a long wait costs few queries), and the last one
    is made at the deadline."""
    deadline = time.monotonic() + seconds
    pause = FIRST_PAUSE
    while not settled(current):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, LONGEST_PAUSE)
        current = await run_in_threadpool(look)
    return current
