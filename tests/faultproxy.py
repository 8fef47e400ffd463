"""A fault-injecting HTTP/1.1 reverse proxy for the storage drills (tests only).

It sits in front of one storage server (rclone serve s3, the OSS test server, Azurite) and
forwards each request unchanged (the Host header too: SigV4 signs it), streaming bodies both
ways over kept-alive connections. A seeded plan picks about `rate` of the requests and spoils
them in one of these ways, as a flaky provider or network would:

- `slowdown_503`: 503 with the provider's own throttling error (S3 SlowDown, OSS ServerBusy,
  Azure ServerBusy with its x-ms-error-code header); the request never reaches the server;
- `internal_error_500`: 500 InternalError, in the provider's words; never reaches the server;
- `reset_before_answer`: the request is read, then the connection is reset (TCP RST);
- `reset_mid_answer`: the server answers, the client gets the head and part of the body (or
  part of the head when there is no body), then a reset;
- `slow_answer`: the server's answer, held back 0.5-2 s (below any storage timeout);
- `truncated_body`: the server's head with its Content-Length, part of the body, then the
  connection closes (FIN). A response without a body gets half its head instead.

`injected` counts what was done, by kind. Parsing is h11's; the proxy only moves its events.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
import struct
import threading
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

import h11

Flavor = Literal["s3", "oss", "azure"]
FAULT_KINDS = (
    "slowdown_503",
    "internal_error_500",
    "reset_before_answer",
    "reset_mid_answer",
    "slow_answer",
    "truncated_body",
)
_READ = 64 * 1024
# Request headers the proxy answers itself instead of forwarding (no signature covers them).
_NOT_FORWARDED = frozenset({b"expect"})


@dataclass
class FaultPlan:
    """Which requests to spoil: a seeded draw per request, so a run's sequence of decisions is
    the same every time (which request gets which depends on the clients' timing)."""

    rate: float = 0.1
    seed: int = 0
    kinds: Sequence[str] = FAULT_KINDS
    slow_seconds: tuple[float, float] = (0.5, 2.0)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        self._rng = random.Random(self.seed)

    def draw(self) -> str | None:
        if self._rng.random() >= self.rate:
            return None
        return self._rng.choice(list(self.kinds))

    def delay(self) -> float:
        return self._rng.uniform(*self.slow_seconds)


class FaultProxy:
    """`with FaultProxy(upstream_endpoint, flavor="s3") as proxy:` ... `proxy.endpoint` is the
    upstream endpoint with the proxy's address in it (Azurite's account path kept).

    Faults start switched on; `enabled = False` forwards everything untouched (setup, checks).
    """

    def __init__(
        self,
        upstream: str,
        *,
        flavor: Flavor,
        plan: FaultPlan | None = None,
        enabled: bool = True,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"the proxy forwards to http://HOST:PORT[/path] only: {upstream!r}")
        self.upstream = upstream
        self.flavor = flavor
        self.plan = plan or FaultPlan()
        self.enabled = enabled
        self.requests = 0  # requests seen while enabled
        self.injected: Counter[str] = Counter()
        # Every request seen, faults on or off, by method ("COPY" for a PUT naming a copy
        # source: S3's x-amz-copy-source, OSS's x-oss-copy-source, Azure's x-ms-copy-source).
        self.seen: Counter[str] = Counter()
        self._upstream_addr = (parts.hostname, parts.port)
        self._upstream_path = parts.path.rstrip("/")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}{self._upstream_path}"

    def start(self) -> FaultProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, "127.0.0.1", 0)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"faultproxy-{self.flavor}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not loop.is_running():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def counts(self) -> dict[str, int]:
        """What was injected so far, by kind (every kind present, zero or not)."""
        with self._lock:
            return {kind: self.injected[kind] for kind in FAULT_KINDS}

    # -- one client connection ------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        down = h11.Connection(h11.SERVER)
        upstream = _Upstream(self._upstream_addr)
        try:
            while True:
                request = await _next_event(down, reader)
                if not isinstance(request, h11.Request):
                    return
                self._see(request)
                fault = self._draw()
                keep_going = await self._exchange(request, fault, down, reader, writer, upstream)
                if not keep_going:
                    return
                if down.our_state is h11.MUST_CLOSE or down.their_state is h11.MUST_CLOSE:
                    return
                down.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError, OSError):
            return
        except asyncio.CancelledError:
            return
        finally:
            upstream.close()
            _close(writer)
            self._connections.discard(task)

    def writes(self) -> int:
        """Requests seen so far that write or delete (PUT, POST, DELETE, copies)."""
        with self._lock:
            return sum(n for method, n in self.seen.items() if method not in ("GET", "HEAD"))

    def _see(self, request: h11.Request) -> None:
        method = request.method.decode()
        if method == "PUT" and any(name.endswith(b"-copy-source") for name, _ in request.headers):
            method = "COPY"
        with self._lock:
            self.seen[method] += 1

    def _draw(self) -> str | None:
        if not self.enabled:
            return None
        with self._lock:
            self.requests += 1
            return self.plan.draw()

    def _count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    async def _exchange(
        self,
        request: h11.Request,
        fault: str | None,
        down: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: _Upstream,
    ) -> bool:
        """One request and its answer, spoilt as `fault` says. False: the connection is gone."""
        if down.they_are_waiting_for_100_continue:
            writer.write(down.send(h11.InformationalResponse(status_code=100, headers=[])))
        if fault in ("slowdown_503", "internal_error_500", "reset_before_answer"):
            async for _ in _body(down, reader):  # read and drop: the server never sees it
                pass
            if fault == "reset_before_answer":
                self._count(fault)
                _reset(writer)
                return False
            status = 503 if fault == "slowdown_503" else 500
            self._count(fault)
            await _send_error(down, writer, request, _error(self.flavor, status))
            return True

        response, body = await upstream.forward(request, _body(down, reader))
        headers = list(response.headers)
        if fault == "slow_answer":
            self._count(fault)
            await asyncio.sleep(self.plan.delay())
        if fault in ("reset_mid_answer", "truncated_body"):
            data = b"".join([chunk async for chunk in body])
            head = _response(response.status_code, _with_length(headers, len(data)), response)
            head_bytes = down.send(head)
            if not data or request.method == b"HEAD":
                # No body to cut: half of the head, then the connection ends.
                self._count("reset_mid_answer")
                writer.write(head_bytes[: len(head_bytes) // 2])
                await writer.drain()
                _reset(writer)
                return False
            self._count(fault)
            writer.write(head_bytes + down.send(h11.Data(data=data[: len(data) // 2])))
            await writer.drain()
            if fault == "reset_mid_answer":
                _reset(writer)
            else:
                writer.close()
            return False
        writer.write(down.send(_response(response.status_code, headers, response)))
        async for chunk in body:
            writer.write(down.send(h11.Data(data=chunk)))
            await writer.drain()
        writer.write(down.send(h11.EndOfMessage()))
        await writer.drain()
        return True


class _Upstream:
    """The proxy's own kept-alive connection to the server, for one client connection."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self._addr = addr
        self._conn: h11.Connection | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def forward(
        self, request: h11.Request, body: AsyncIterator[bytes]
    ) -> tuple[h11.Response, AsyncIterator[bytes]]:
        """Send `request` with `body`; the server's response head and its body, streamed."""
        stale = self._reader is None or self._reader.at_eof()  # e.g. the server's idle timeout
        if stale or self._conn is None or self._conn.our_state is not h11.IDLE:
            self.close()
            self._reader, self._writer = await asyncio.open_connection(*self._addr)
            self._conn = h11.Connection(h11.CLIENT)
        conn, reader, writer = self._conn, self._reader, self._writer
        assert reader is not None and writer is not None
        headers = [
            (k, v) for k, v in request.headers.raw_items() if k.lower() not in _NOT_FORWARDED
        ]
        writer.write(
            conn.send(h11.Request(method=request.method, target=request.target, headers=headers))
        )
        async for chunk in body:
            writer.write(conn.send(h11.Data(data=chunk)))
            await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        while True:
            event = await _next_event(conn, reader)
            if isinstance(event, h11.Response):
                return event, self._response_body(conn, reader)
            if not isinstance(event, h11.InformationalResponse):
                raise ConnectionError(f"the server answered {event!r}")

    async def _response_body(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> AsyncGenerator[bytes, None]:
        async for chunk in _body(conn, reader):
            yield chunk
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            self.close()

    def close(self) -> None:
        if self._writer is not None:
            _close(self._writer)
        self._conn = self._reader = self._writer = None


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(_READ))


async def _body(conn: h11.Connection, reader: asyncio.StreamReader) -> AsyncGenerator[bytes, None]:
    """The body of the message `conn` is receiving, as it arrives."""
    while True:
        event = await _next_event(conn, reader)
        if isinstance(event, h11.Data):
            yield bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return
        else:
            raise ConnectionError(f"the body ended with {event!r}")


def _response(
    status: int, headers: Iterable[tuple[bytes, bytes]], like: h11.Response
) -> h11.Response:
    return h11.Response(status_code=status, headers=list(headers), reason=like.reason)


def _with_length(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    """The head of a buffered body: its Content-Length (the server's own when it sent one)."""
    kept = [
        (k, v) for k, v in headers if k.lower() not in (b"content-length", b"transfer-encoding")
    ]
    stated = next((v for k, v in headers if k.lower() == b"content-length"), None)
    return [*kept, (b"content-length", stated or str(length).encode())]


@dataclass(frozen=True)
class _ErrorAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _error(flavor: Flavor, status: int) -> _ErrorAnswer:
    """The provider's own error answer for a throttled (503) or failed (500) request."""
    request_id = secrets.token_hex(12).upper()
    if flavor == "azure":
        code = "ServerBusy" if status == 503 else "InternalError"
        text = (
            "The server is currently unable to receive requests. Please retry your request."
            if status == 503
            else "The server encountered an internal error. Please retry the request."
        )
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f"<Error><Code>{code}</Code><Message>{text}\nRequestId:{request_id}</Message></Error>"
        ).encode()
        headers = [
            (b"x-ms-error-code", code.encode()),
            (b"x-ms-request-id", request_id.encode()),
            (b"x-ms-version", b"2021-12-02"),
        ]
    elif flavor == "oss":
        code = "ServerBusy" if status == 503 else "InternalError"
        text = "Please reduce your request rate." if status == 503 else "Internal error."
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{text}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>oss.test</HostId></Error>"
        ).encode()
        headers = [(b"x-oss-request-id", request_id.encode())]
    else:
        code = "SlowDown" if status == 503 else "InternalError"
        text = (
            "Please reduce your request rate."
            if status == 503
            else "We encountered an internal error. Please try again."
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{text}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers = [(b"x-amz-request-id", request_id.encode())]
    headers += [
        (b"content-type", b"application/xml"),
        (b"content-length", str(len(body)).encode()),
    ]
    return _ErrorAnswer(status, headers, body)


async def _send_error(
    down: h11.Connection, writer: asyncio.StreamWriter, request: h11.Request, answer: _ErrorAnswer
) -> None:
    reason = b"Service Unavailable" if answer.status == 503 else b"Internal Server Error"
    writer.write(
        down.send(h11.Response(status_code=answer.status, headers=answer.headers, reason=reason))
    )
    if request.method != b"HEAD":  # a HEAD's answer states the length, sends no body
        writer.write(down.send(h11.Data(data=answer.body)))
    writer.write(down.send(h11.EndOfMessage()))
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """End the connection with a TCP RST (SO_LINGER 0), not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
