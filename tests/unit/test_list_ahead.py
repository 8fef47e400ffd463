"""The planning's listing runs ahead of it in a thread: bounded, in order, errors raised
where the pages are taken, and stopped when the planning stops."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from bootstrap import Container
from importer.planner.listing import _pages_ahead
from storage_adapters.base import ListPage, ObjectInfo
from storage_adapters.errors import ErrorKind, StorageError


class Pages:
    """A listing of `pages` pages of one key each (a fake of the listing call alone)."""

    def __init__(self, pages: int, *, fail_at: int | None = None) -> None:
        self.pages = pages
        self.fail_at = fail_at
        self.asked: list[str | None] = []
        self.lock = threading.Lock()

    def list_page(self, prefix: str, *, cursor: str | None = None, limit: int = 0) -> ListPage:
        with self.lock:
            self.asked.append(cursor)
        n = 0 if cursor is None else int(cursor)
        if n == self.fail_at:
            raise StorageError(ErrorKind.PERMISSION_DENIED, "listing refused", transient=False)
        last = n + 1 == self.pages
        return ListPage([ObjectInfo(key=f"{prefix}{n:04d}", size=1)], None if last else str(n + 1))


def _wait_for(predicate: Any) -> None:
    deadline = time.monotonic() + 5
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("depth", [1, 4])
def test_the_listing_runs_at_most_depth_pages_ahead(container: Container, depth: int) -> None:
    source = Pages(50)
    pages = _pages_ahead(container.ctx, source, "p/", None, 1, depth)  # type: ignore[arg-type]
    first = next(pages)
    assert first.objects[0].key == "p/0000"
    _wait_for(lambda: len(source.asked) >= depth + 2)
    time.sleep(0.2)  # a producer that does not wait would have listed all 50 by now
    # Taken: 1; queued: depth; listed and waiting for room: 1.
    assert len(source.asked) == depth + 2
    rest = [p.objects[0].key for p in pages]
    assert rest == [f"p/{n:04d}" for n in range(1, 50)]
    assert source.asked == [None, *(str(n) for n in range(1, 50))]


def test_a_listing_error_is_raised_where_the_pages_are_taken(container: Container) -> None:
    pages = _pages_ahead(container.ctx, Pages(10, fail_at=3), "p/", None, 1, 4)  # type: ignore[arg-type]
    assert [next(pages).cursor for _ in range(3)] == ["1", "2", "3"]
    with pytest.raises(StorageError, match="listing refused"):
        next(pages)


def test_closing_the_pages_stops_the_listing(container: Container) -> None:
    source = Pages(1000)
    pages = _pages_ahead(container.ctx, source, "p/", None, 1, 2)  # type: ignore[arg-type]
    next(pages)
    pages.close()  # the planning stopped (cancelled): the lister thread has ended
    asked = len(source.asked)
    assert not any(t.name == "list-ahead" and t.is_alive() for t in threading.enumerate())
    time.sleep(0.1)
    assert len(source.asked) == asked <= 4
