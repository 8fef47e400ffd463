"""An overall deadline for a blocking call that talks to a storage endpoint (a storage
config's check when it is created): the answer comes within the deadline whatever the
endpoint does, and the connections the call opened are cut then.

Per-call timeouts do not bound a hostile endpoint: a socket timeout counts the time between
two bytes, so an endpoint that trickles one byte a second holds a call for as long as it
likes, and retries add up. Here the call runs in a thread of its own; the caller waits for
it at most `seconds`. Every HTTP request the thread makes (botocore, oss2 and the Azure SDK
all send theirs through urllib3's connection pools) registers its connection with the
call's watch, and when the deadline passes the watch shuts those sockets down — the
thread's blocked read returns at once and the call ends with an error nobody waits for —
and refuses any request the thread tries after that.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """The call did not return within its deadline (its connections have been cut)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s")
        self.seconds = seconds


class _Watch:
    """The connections one call has used, to cut them when its deadline passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self.expired = False

    def add(self, connection: Any) -> None:
        from urllib3.exceptions import TimeoutError as Urllib3Timeout

        with self._lock:
            if self.expired:
                raise Urllib3Timeout("the call's overall deadline has passed")
            self._connections.append(connection)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            connections, self._connections = self._connections, []
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if sock is None:
                continue
            # The plain socket's shutdown, also for a TLS socket: it wakes the thread
            # blocked reading it without touching the TLS object that thread is using.
            with contextlib.suppress(OSError, TypeError, ValueError):  # closed already
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


_local = threading.local()
_install_lock = threading.Lock()
_installed = False


def _install() -> None:
    """Wrap urllib3's one place where a pool sends a request on a connection (new or reused),
    once per process. Outside a deadline call it only passes the call on."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from urllib3.connectionpool import HTTPConnectionPool

        original = HTTPConnectionPool._make_request

        def _make_request(self: HTTPConnectionPool, conn: Any, *args: Any, **kwargs: Any) -> Any:
            watch: _Watch | None = getattr(_local, "watch", None)
            if watch is not None:
                watch.add(conn)
            return original(self, conn, *args, **kwargs)

        HTTPConnectionPool._make_request = _make_request  # type: ignore[method-assign]
        _installed = True


def call_within(fn: Callable[[], T], *, seconds: float, name: str = "deadline-call") -> T:
    """`fn()`, run in a daemon thread, returned (or its exception raised) if it ends within
    `seconds`; else DeadlineExceeded, and the thread's connections are shut down so that it
    ends soon after. `fn` must not hold locks or state the caller relies on once abandoned.
    It runs in a copy of the caller's context (contextvars: the log scope that masks the
    config's secrets, whatever else a caller set)."""
    _install()
    watch = _Watch()
    done = threading.Event()
    outcome: list[tuple[bool, Any]] = []
    context = contextvars.copy_context()

    def run() -> None:
        _local.watch = watch
        try:
            outcome.append((True, context.run(fn)))
        except BaseException as exc:  # handed to the caller as it is
            outcome.append((False, exc))
        finally:
            _local.watch = None
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    if not done.wait(seconds):
        watch.expire()
        raise DeadlineExceeded(seconds)
    ok, value = outcome[0]
    if ok:
        result: T = value
        return result
    raise value
