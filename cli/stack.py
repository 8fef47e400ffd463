"""A whole Bayport on one machine: broker, metadata DB, worker processes and the API.

`bayport standalone` and `bayport demo` run it; end-to-end tests use it too. Settings come
from the environment as everywhere; what the caller overrides is passed to the worker
processes through their environment, so every process sees the same configuration.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import uvicorn
from pydantic import SecretStr

from bayport.settings import Settings
from bootstrap import build_container, set_container
from cli.tls import local_tls
from devstack.services import RunningService, redis_reachable, start_valkey
from metadata.db import migrate

# The user name of a generated Flower login.
FLOWER_USER = "bayport"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FlowerDidNotStart(RuntimeError):
    """Flower exited or did not answer (its port in use, most often)."""


@dataclass
class LocalStack:
    url: str
    access_key: str
    settings: Settings
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # More API processes (`bayport api`, plain HTTP) beside the stack's own, as a deployment
    # runs several: `start_api`.
    apis: list[subprocess.Popen[bytes]] = field(default_factory=list)
    flower: subprocess.Popen[bytes] | None = None
    flower_url: str | None = None
    # With TLS: the CA that signed the API's certificate, for clients to trust.
    ca_file: Path | None = None

    def start_worker(
        self, *, processes: int | None = None, log_path: Path | None = None
    ) -> subprocess.Popen[bytes]:
        n = processes or self.settings.worker_processes
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--processes", str(n)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)
        return proc

    def start_api(self, *, log_path: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
        """Start another API process on the stack's configuration; it and its URL, once it
        answers /healthz. Stopped with the stack."""
        port = free_port()
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "api", "--port", str(port), "--no-migrate"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.apis.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"`bayport api` did not start on port {port}")

    def start_flower(
        self,
        *,
        port: int,
        basic_auth: str | None = None,
        log_path: Path | None = None,
        wait: bool = True,
    ) -> str:
        """Start `bayport flower` on 127.0.0.1:`port` (and, with `wait`, wait until it
        answers); its URL. The credentials (default: the stack's BAYPORT_FLOWER_BASIC_AUTH)
        reach it through its environment, never its command line, which others can read."""
        env = dict(self.env)
        if basic_auth is not None:
            env["BAYPORT_FLOWER_BASIC_AUTH"] = basic_auth
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "flower", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.flower = proc
        self.flower_url = url = f"http://127.0.0.1:{port}"
        if not wait:
            return url
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:  # /healthcheck needs no credentials
                if httpx.get(f"{url}/healthcheck", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop_flower()
        raise FlowerDidNotStart(f"Flower did not start on port {port}")

    def stop_flower(self) -> None:
        proc, self.flower, self.flower_url = self.flower, None, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_workers(self) -> None:
        _stop_all(self.workers, timeout=20)

    def stop_apis(self) -> None:
        _stop_all(self.apis, timeout=10)


def _stop_all(procs: list[subprocess.Popen[bytes]], *, timeout: float) -> None:
    """SIGTERM them all, then wait for each (SIGKILL after `timeout`); the list is emptied."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    procs.clear()


@contextlib.contextmanager
def local_stack(
    *,
    data_dir: Path,
    port: int | None = None,
    overrides: dict[str, str] | None = None,
    worker_processes: int | None = None,
    worker_log: Path | None = None,
    start_workers: bool = True,
    flower_port: int | None = None,
    flower_log: Path | None = None,
    allow_endpoints: Sequence[str] = (),
    tls: bool = False,
) -> Iterator[LocalStack]:
    """Start the stack; stop everything it started on exit. With `flower_port`, Flower too,
    behind BAYPORT_FLOWER_BASIC_AUTH (generated when unset, like the access key), without
    waiting for it: the stack does not need it (`stack.flower` exits if its port is taken).
    `allow_endpoints`: URLs of storage servers the caller started on this machine (a demo's
    S3 server), added to BAYPORT_ALLOWED_PRIVATE_ENDPOINTS: storage configs may name them
    though they are loopback addresses. `tls`: the API serves HTTPS with a certificate from
    a CA generated in `data_dir/tls` (`stack.ca_file`; cli/tls.py)."""
    # The stack's settings are read once (the environment and `overrides`), completed here,
    # and exported into this process's environment (and so its children's, `stack.env`) for
    # the stack's lifetime: every process reads the same BAYPORT_ variables.
    saved_env = dict(os.environ)
    os.environ.update(overrides or {})
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir)
    updates: dict[str, object] = {}
    if allow_endpoints:
        updates["allowed_private_endpoints"] = list(
            dict.fromkeys(
                settings.allowed_private_endpoints
                + [urlsplit(url).hostname or url for url in allow_endpoints]
            )
        )
    broker: RunningService | None = None
    if not redis_reachable(settings.broker_url):
        broker = start_valkey(data_dir=data_dir / "broker")
        updates["broker_url"] = broker.url
    if settings.bootstrap_access_key is None:
        updates["bootstrap_access_key"] = SecretStr("bp_" + secrets.token_urlsafe(32))
    if flower_port is not None and settings.flower_basic_auth is None:
        updates["flower_basic_auth"] = SecretStr(f"{FLOWER_USER}:{secrets.token_urlsafe(18)}")
    settings = settings.model_copy(update=updates)
    os.environ.update(settings.to_env("data_dir", *updates))
    env = dict(os.environ)
    migrate(settings.resolved_database_url)
    container = build_container(settings)
    set_container(container)

    from api.app import create_app

    app = create_app(container)
    port = port or free_port()
    certs = local_tls(data_dir / "tls") if tls else None
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ssl_certfile=str(certs.cert_file) if certs else None,
            ssl_keyfile=str(certs.key_file) if certs else None,
        )
    )
    thread = threading.Thread(target=server.run, name="bayport-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    stack = LocalStack(
        url=f"{'https' if certs else 'http'}://127.0.0.1:{port}",
        access_key=settings.bootstrap_access_key.get_secret_value()
        if settings.bootstrap_access_key
        else "",
        settings=settings,
        env=env,
        ca_file=certs.ca_file if certs else None,
    )
    try:
        if start_workers:
            stack.start_worker(processes=worker_processes, log_path=worker_log)
        if flower_port is not None:
            stack.start_flower(port=flower_port, log_path=flower_log, wait=False)
        yield stack
    finally:
        stack.stop_flower()
        stack.stop_apis()
        stack.stop_workers()
        server.should_exit = True
        thread.join(timeout=10)
        set_container(None)
        container.db.dispose()
        if broker is not None:
            broker.stop()
        os.environ.clear()
        os.environ.update(saved_env)
