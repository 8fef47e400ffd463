"""A TCP relay that counts the bytes it carries, both ways, in a process of its own: put between
a copying process and a server, it says how many bytes that process moved over the network
(Python's sockets use recv/send, which /proc/PID/io does not count).

`python -m bench.byterelay UPSTREAM_HOST:PORT` prints its port, then answers each line on its
standard input with the bytes relayed so far. `ByteRelay` starts it and asks.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
_READ = 1024 * 1024


class ByteRelay:
    """`with ByteRelay("127.0.0.1", 9000) as relay:` ... `relay.port`, `relay.moved()`."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = f"{host}:{port}"
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> ByteRelay:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.byterelay", self._upstream],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())
        return self

    def moved(self) -> int:
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        self._proc.stdin.write("?\n")
        self._proc.stdin.flush()
        return int(self._proc.stdout.readline())

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)


def _serve(upstream: tuple[str, int]) -> None:
    moved = [0]
    lock = threading.Lock()
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray(_READ)
        view = memoryview(buf)
        try:
            while n := src.recv_into(buf):
                dst.sendall(view[:n])
                with lock:
                    moved[0] += n
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            server = socket.create_connection(upstream)
            for a, b in ((client, server), (server, client)):
                a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    for _ in sys.stdin:
        with lock:
            print(moved[0], flush=True)


if __name__ == "__main__":
    host, _, port = sys.argv[1].rpartition(":")
    _serve((host, int(port)))
