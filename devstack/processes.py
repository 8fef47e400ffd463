"""Local servers as child processes: each started in a session of its own with its output in a
log file, waited for until it answers, and stopped by `stop()`, a `with` block or, unless
detached, the end of this Python process."""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

READY_TIMEOUT = 30.0


class ServiceStartError(RuntimeError):
    """A local server did not start or did not become ready in time."""


@dataclass(eq=False)
class RunningService:
    """A server this process started. `stop()` ends it; so does leaving a `with` block and,
    unless `detach()`ed, the end of this Python process."""

    name: str
    url: str
    process: subprocess.Popen[bytes] | None = None
    # A library's own handle on the server when it is not our child (embedded PostgreSQL).
    handle: Any = None
    log_path: Path | None = None
    pid: int | None = None
    stop_signal: int = signal.SIGTERM
    _on_stop: Callable[[], None] | None = field(default=None, repr=False)
    _on_detach: Callable[[], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.pid is None and self.process is not None:
            self.pid = self.process.pid
        _running.add(self)

    def stop(self, timeout: float = 10.0) -> None:
        _running.discard(self)
        if self._on_stop is not None:
            self._on_stop()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def detach(self) -> int | None:
        """Leave the server running after this process exits; returns its pid."""
        _running.discard(self)
        if self._on_detach is not None:
            self._on_detach()
        return self.pid

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> RunningService:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_running: set[RunningService] = set()


@atexit.register
def _stop_forgotten() -> None:
    for service in list(_running):
        with contextlib.suppress(Exception):
            service.stop(timeout=5)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_ready(
    service: RunningService, ready: Callable[[], bool], *, timeout: float = READY_TIMEOUT
) -> RunningService:
    """Poll `ready()` until it is true; on timeout or early exit stop the server and raise
    ServiceStartError with the tail of its output."""
    deadline = time.monotonic() + timeout
    while True:
        if service.process is not None and service.process.poll() is not None:
            problem = f"exited with status {service.process.returncode}"
            break
        with contextlib.suppress(Exception):
            if ready() and (service.process is None or service.process.poll() is None):
                return service
        if time.monotonic() > deadline:
            problem = f"was not ready within {timeout:.0f}s"
            break
        time.sleep(0.05)
    tail = service.log_tail()
    service.stop()
    raise ServiceStartError(
        f"{service.name} {problem}; last output ({service.log_path}):\n{tail or '(none)'}"
    )


def spawn(name: str, url: str, command: list[str], log_path: Path) -> RunningService:
    """`command` started as the server `name` at `url`, its output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        # A session of its own: a Ctrl-C meant for the tests does not reach the server first,
        # and a detached server outlives us.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningService(name=name, url=url, process=process, log_path=log_path)


def temp_log(name: str) -> Path:
    """A new, empty log file for the server `name` in the temp folder."""
    fd, path = tempfile.mkstemp(prefix=f"bayport-{name}-", suffix=".log")
    os.close(fd)
    return Path(path)


def claim_port(port: int | None) -> int:
    """`port`, refused if something listens there already (its answers would pass for the new
    server's), or a free one."""
    if port is None:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise ServiceStartError(f"port {port} is already in use on 127.0.0.1")
    return port


def http_answers(port: int) -> bool:
    """Whether an HTTP server on 127.0.0.1:`port` answers a GET, whatever its status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    finally:
        conn.close()
