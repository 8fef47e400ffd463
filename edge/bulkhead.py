"""Bulkheads: how much of one API process a workspace may hold at once, so that one tenant
cannot stall the others.

Every sync route runs on the process's one thread pool (anyio's, 40 threads), and a request
waiting on something slow — a commit waiting for its draft's imports, a storage endpoint
that answers slowly — holds its place for as long as it waits. A workspace may have at
most BAYPORT_API_WORKSPACE_CONCURRENCY requests in flight at once (sync or not) and at most
BAYPORT_API_EVENT_STREAMS progress streams open; beyond either, the request is refused at
once with 429 and Retry-After, without taking a thread for its work. Counted per process:
what is shared is this process's threads, and each process has its own.

The caller is the workspace the route's own authentication dependency resolved (FastAPI
resolves a dependency once per request: the route and the bulkhead share the answer), so
a workspace's keys all count together.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request

from bayport.settings import Settings

REQUESTS_SETTING = "BAYPORT_API_WORKSPACE_CONCURRENCY"
STREAMS_SETTING = "BAYPORT_API_EVENT_STREAMS"
# How soon a refused request may try again: a slot frees when one of the workspace's
# requests ends, usually within a second.
REQUEST_RETRY_AFTER = 1
STREAM_RETRY_AFTER = 5


class Bulkhead:
    """At most `limit` holders per key (a workspace id) at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, key: str) -> bool:
        """Take one of `key`'s places; False (nothing taken) when all are held."""
        with self._lock:
            held = self._held.get(key, 0)
            if held >= self.limit:
                return False
            self._held[key] = held + 1
            return True

    def leave(self, key: str) -> None:
        with self._lock:
            held = self._held.get(key, 0) - 1
            if held > 0:
                self._held[key] = held
            else:
                self._held.pop(key, None)

    def held(self, key: str) -> int:
        with self._lock:
            return self._held.get(key, 0)


@dataclass(frozen=True)
class Bulkheads:
    requests: Bulkhead
    streams: Bulkhead

    @classmethod
    def from_settings(cls, settings: Settings) -> Bulkheads:
        return cls(
            requests=Bulkhead(settings.api_workspace_concurrency),
            streams=Bulkhead(settings.api_event_streams),
        )


def install_bulkheads(
    app: FastAPI, settings: Settings, shared: Bulkheads | None = None
) -> Bulkheads:
    """The app's bulkheads (`shared`: another app's, so that a sub-application counts with
    the application that mounts it)."""
    bulkheads = shared or Bulkheads.from_settings(settings)
    app.state.bulkheads = bulkheads
    return bulkheads


def bulkheads_of(request: Request) -> Bulkheads:
    found: Bulkheads | None = getattr(request.app.state, "bulkheads", None)
    if found is None:  # an app built without install_bulkheads: give it its own
        found = install_bulkheads(request.app, request.app.state.container.settings)
    return found


Refusal = Callable[[str], Exception]


def too_many_requests(message: str) -> Exception:
    return HTTPException(429, message, headers={"Retry-After": str(REQUEST_RETRY_AFTER)})


def request_slot(
    resolve_workspace: Callable[..., str],
    refuse: Refusal = too_many_requests,
) -> Any:
    """A router dependency: the request holds one of its workspace's places while its route
    runs (released when the route returns, before a streamed body is sent).
    `resolve_workspace` is the face's own authentication dependency."""

    # The dependency as a default value: a closure's variable in an annotation would not be
    # found when FastAPI reads the (postponed) annotations.
    async def hold_request_slot(
        request: Request,
        workspace_id: str = Depends(resolve_workspace),
    ) -> AsyncIterator[None]:
        bulkhead = bulkheads_of(request).requests
        if not bulkhead.enter(workspace_id):
            raise refuse(
                f"too many requests in flight: this workspace has {bulkhead.limit} being "
                f"served already, the most one workspace may have at once ({REQUESTS_SETTING}); "
                f"retry after {REQUEST_RETRY_AFTER} s"
            )
        try:
            yield
        finally:
            bulkhead.leave(workspace_id)

    return Depends(hold_request_slot, scope="function")


def stream_slot(resolve_workspace: Callable[..., str]) -> Any:
    """A route dependency: the progress stream holds one of its workspace's stream places
    until the response has been sent (the stream ended or its reader went away).
    `resolve_workspace` is the face's own authentication dependency."""

    async def hold_stream_slot(
        request: Request,
        workspace_id: str = Depends(resolve_workspace),
    ) -> AsyncIterator[None]:
        bulkhead = bulkheads_of(request).streams
        if not bulkhead.enter(workspace_id):
            raise HTTPException(
                429,
                f"too many progress streams: this workspace has {bulkhead.limit} open, the "
                f"most one workspace may have at once ({STREAMS_SETTING}); close one, or read "
                f"GET /v1/imports/{{id}} instead",
                headers={"Retry-After": str(STREAM_RETRY_AFTER)},
            )
        try:
            yield
        finally:
            bulkhead.leave(workspace_id)

    return Depends(hold_stream_slot)
