"""Probe servers for tests, each on 127.0.0.1 in daemon threads: one that records every
request and answers as it is told, a hostile listing that never ends, a tarpit that never
finishes an answer, and the API itself on a real uvicorn."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from api.app import create_app
from bootstrap import Container

MiB = 1024 * 1024
Answer = Callable[[http.server.BaseHTTPRequestHandler], None]


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that keeps the test output clean of its access log."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HTTPProbe:
    """`handler` served by a ThreadingHTTPServer on `host`, on a port the kernel picks,
    until close()."""

    def __init__(
        self, handler: type[http.server.BaseHTTPRequestHandler], host: str = "127.0.0.1"
    ) -> None:
        self.httpd = http.server.ThreadingHTTPServer((host, 0), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def forbidden(handler: http.server.BaseHTTPRequestHandler) -> None:
    """An empty 403: what an internal service that must never be reached answers."""
    handler.send_response(403)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


class RecordingServer(HTTPProbe):
    """Records each request it gets (`hits`: "METHOD host/path") and reads its body;
    `answer` makes each answer (an empty 403 unless told)."""

    def __init__(self, answer: Answer = forbidden, host: str = "127.0.0.1") -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                hits.append(f"{self.command} {self.headers.get('Host')}{self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                answer(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

        super().__init__(Handler, host)


class EndlessListing(HTTPProbe):
    """A hostile "S3 server": any GET is answered 200 with a listing that never ends
    (chunked, until 96 MiB or the client hangs up); `sent` counts the padding bytes."""

    LIMIT = 96 * MiB

    def __init__(self) -> None:
        sent = self.sent = [0]
        limit = self.LIMIT

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                head = b'<?xml version="1.0"?><ListBucketResult><IsTruncated>false</IsTruncated>'
                pad = b" " * MiB
                try:
                    self._chunk(head)
                    while sent[0] < limit:
                        self._chunk(pad)
                        sent[0] += len(pad)
                    self._chunk(b"</ListBucketResult>")
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        super().__init__(Handler)


class Tarpit:
    """A storage endpoint that accepts and never finishes an answer: with `trickle`, the
    start of a response a byte a second (a per-read timeout never fires); without, nothing.
    Counts connections, and those the client cut."""

    def __init__(self, *, trickle: bool = True) -> None:
        self.trickle = trickle
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.accepted = 0
        self.cut = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        answer = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000
        sent, next_byte = 0, time.monotonic() + 0.5
        conn.settimeout(0.1)
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                try:
                    if conn.recv(65536) == b"":  # the client shut the connection
                        with self._lock:
                            self.cut += 1
                        return
                except TimeoutError:
                    pass
                if self.trickle and time.monotonic() >= next_byte and sent < len(answer):
                    conn.send(answer[sent : sent + 1])
                    sent, next_byte = sent + 1, next_byte + 1.0

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()
        self.server.close()


@contextlib.contextmanager
def serve_api(container: Container, *, log_level: str = "warning") -> Iterator[str]:
    """The API on a real uvicorn in a thread (so responses stream, and sync routes run on
    anyio's thread pool as deployed), on a port the kernel picks: its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(container), host="127.0.0.1", port=0, log_level=log_level)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
