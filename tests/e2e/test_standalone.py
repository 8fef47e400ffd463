"""`bayport standalone`: one command brings up API + worker + SQLite and prints URL and key."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cli.stack import free_port


def test_standalone_serves_the_api_with_the_printed_key(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BAYPORT_DATA_DIR": str(tmp_path / "data"),
        "BAYPORT_BROKER_URL": redis_url,
        "COLUMNS": "200",
    }
    env.pop("BAYPORT_BOOTSTRAP_ACCESS_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "standalone", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its worker and Flower in its process group
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("export ") or not line:
                break
        match = re.search(r"BAYPORT_API_URL=(\S+) BAYPORT_ACCESS_KEY=(\S+)", line)
        assert match, f"no URL/key line; last line: {line!r}"
        url, key = match.groups()
        assert url == f"http://127.0.0.1:{port}"
        r = httpx.get(f"{url}/v1/datasets", headers={"Authorization": f"Bearer {key}"})
        assert (r.status_code, r.json()) == (200, [])
        assert httpx.get(f"{url}/v1/datasets").status_code == 401
        assert (tmp_path / "data" / "bayport.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        # Whatever of its worker and Flower is left would go on taking the next tests'
        # tasks from the same broker: the whole group goes.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
