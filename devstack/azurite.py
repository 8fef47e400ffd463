"""Azurite, Microsoft's Azure Blob emulator, on this machine: installed with npm on first use (a
pinned version) and started as a child process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from devstack.processes import (
    RunningService,
    ServiceStartError,
    claim_port,
    http_answers,
    spawn,
    wait_until_ready,
)

# Azurite's well-known development account: public, in Microsoft's documentation, no secret.
AZURITE_ACCOUNT_NAME = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# Pinned: the emulator's coverage of the Blob API changes between releases (see start_azurite).
AZURITE_VERSION = "3.35.0"


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
    port = claim_port(port)
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
    service = spawn("azurite", url, command, data_dir / "azurite.log")
    return wait_until_ready(service, lambda: http_answers(port), timeout=timeout)


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
