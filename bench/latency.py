"""A lean HTTP/1.1 reverse proxy that holds every request back a fixed delay (emulated cloud
latency) before forwarding it, unchanged, to one upstream server (`rclone serve s3`).

Each client connection gets its own upstream connection. The answers flow back as raw bytes,
never parsed; the requests are parsed only as far as their framing (the head up to the blank
line, then Content-Length bytes or chunks), so the proxy knows where each request starts and
sleeps `delay` there. Nothing is rewritten, the Host header included, so SigV4 still passes.
A request's body (after `Expect: 100-continue` too) follows its head without a second delay.

It runs as its own process (`python -m bench.latency UPSTREAM --delay-ms 20`, uvloop when it
is installed): its CPU is its own in /proc, and it does not take the GIL from the benchmark's
process, which runs Bayport's API. `LatencyProxy` starts it and asks it for its request count
over its standard input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from bench.procstat import process_cpu_seconds

REPO_ROOT = Path(__file__).resolve().parent.parent
_READ = 256 * 1024
_HEAD_LIMIT = 1024 * 1024


class LatencyProxy:
    """`with LatencyProxy("http://127.0.0.1:PORT", delay=0.02) as proxy:` ... `proxy.endpoint`.

    `requests()` is the count of requests it has forwarded so far; `cpu_seconds()` its CPU."""

    def __init__(self, upstream: str, *, delay: float) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"the proxy forwards to http://HOST:PORT only: {upstream!r}")
        self.upstream = upstream
        self.delay = delay
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    def start(self) -> LatencyProxy:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.latency", self.upstream,
             "--delay-ms", str(self.delay * 1000)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError(f"the latency proxy did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def requests(self) -> int:
        """Requests the proxy has received so far (asked over its standard input)."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            return 0
        with self._lock:
            proc.stdin.write("count\n")
            proc.stdin.flush()
            return int(proc.stdout.readline().split()[1])

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid) if self._proc is not None else 0.0

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            if proc.stdin is not None:
                proc.stdin.close()  # the proxy exits at the end of its input
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- the proxy process ----------------------------------------------------------------------


class _Proxy:
    def __init__(self, host: str, port: int, delay: float) -> None:
        self.host, self.port, self.delay = host, port, delay
        self.requests = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.host, self.port, limit=_HEAD_LIMIT
            )
        except OSError:
            _close(writer)
            return
        _nodelay(up_writer)
        answers = asyncio.create_task(_pipe(up_reader, writer))
        try:
            await self._requests(reader, up_writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:  # the proxy is stopping
            answers.cancel()
            return
        finally:
            # The client is gone or sent garbage: let the last answer finish, then close.
            with contextlib.suppress(Exception):
                up_writer.write_eof()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(answers, 30)
            _close(up_writer)
            _close(writer)

    async def _requests(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            await asyncio.sleep(self.delay)
            up.write(head)
            length, chunked = _framing(head)
            if chunked:
                await _copy_chunked(reader, up)
            elif length:
                await _copy_exact(reader, up, length)
            await up.drain()


def _framing(head: bytes) -> tuple[int, bool]:
    """The request body's Content-Length and whether it is chunked."""
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return length, chunked


async def _copy_exact(reader: asyncio.StreamReader, up: asyncio.StreamWriter, n: int) -> None:
    while n > 0:
        data = await reader.read(min(n, _READ))
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        up.write(data)
        n -= len(data)
        await up.drain()


async def _copy_chunked(reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
    while True:
        line = await reader.readuntil(b"\r\n")
        up.write(line)
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers, up to the blank line
                trailer = await reader.readuntil(b"\r\n")
                up.write(trailer)
                if trailer == b"\r\n":
                    return
        await _copy_exact(reader, up, size + 2)  # the chunk and its CRLF


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.CancelledError):
        while data := await reader.read(_READ):
            writer.write(data)
            await writer.drain()
    _close(writer)


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


async def _main(upstream: str, delay: float) -> None:
    parts = urlsplit(upstream)
    proxy = _Proxy(parts.hostname or "127.0.0.1", parts.port or 80, delay)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0, limit=_HEAD_LIMIT)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def control() -> None:
        # One line in: "count"; one line out. End of input: stop.
        for _line in sys.stdin:
            print(f"requests {proxy.requests}", flush=True)
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    threading.Thread(target=control, name="control", daemon=True).start()
    async with server:
        await done


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("upstream", help="http://HOST:PORT of the server to forward to")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="delay per request")
    args = parser.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        run = asyncio.run
    run(_main(args.upstream, args.delay_ms / 1000))
    os._exit(0)  # connections still open do not hold the exit


if __name__ == "__main__":
    main()
