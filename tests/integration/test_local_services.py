"""The local server launchers: each starts a real server that answers, and stops it again."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import services as local_services
from devstack.services import RunningService, ServiceStartError, wait_until_ready


def ping(url: str) -> bool:
    return local_services.redis_reachable(url)


def test_valkey_starts_answers_ping_and_stops(tmp_path: Path) -> None:
    with local_services.start_valkey(data_dir=tmp_path / "valkey") as valkey:
        assert valkey.url.startswith("redis://127.0.0.1:")
        assert ping(valkey.url)
        port = int(valkey.url.rsplit(":", 1)[1].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert sock.recv(16) == b"+PONG\r\n"
    assert valkey.process is not None and valkey.process.poll() is not None
    assert not ping(valkey.url)


def test_ensure_redis_gives_a_reachable_url(tmp_path: Path) -> None:
    url, started = local_services.ensure_redis(tmp_path)
    try:
        assert ping(url)
    finally:
        if started is not None:
            started.stop()


def test_a_taken_port_is_refused(tmp_path: Path) -> None:
    with local_services.start_valkey(data_dir=tmp_path / "first") as first:
        port = int(first.url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(ServiceStartError, match="already in use"):
            local_services.start_valkey(port=port, data_dir=tmp_path / "second")


def test_a_server_that_dies_at_start_reports_its_output(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; print('cannot bind: boom'); sys.exit(3)"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    service = RunningService(name="doomed", url="tcp://nowhere", process=process, log_path=log)
    with pytest.raises(ServiceStartError) as caught:
        wait_until_ready(service, lambda: False, timeout=30)
    assert "doomed exited with status 3" in str(caught.value)
    assert "cannot bind: boom" in str(caught.value)


def test_a_server_never_ready_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    service = RunningService(name="sleepy", url="tcp://nowhere", process=process)
    with pytest.raises(ServiceStartError, match="sleepy was not ready within 1s"):
        wait_until_ready(service, lambda: False, timeout=1)
    assert process.poll() is not None


def test_moto_and_rclone_s3_servers_answer_http(tmp_path: Path) -> None:
    import http.client

    with (
        local_services.start_moto_s3() as moto,
        local_services.start_rclone_s3(
            tmp_path / "s3", access_key="testkey1", secret_key="testsecret1"
        ) as rclone,
    ):
        for service in (moto, rclone):
            host, port = service.url.removeprefix("http://").split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.request("GET", "/")
            assert conn.getresponse().status < 600
            conn.close()


def test_env_command_prints_urls_that_answer(tmp_path: Path) -> None:
    work_dir = tmp_path / "services"
    done = subprocess.run(
        [sys.executable, "-m", "devstack.services", "env", "--work-dir", str(work_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    try:
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in done.stdout.splitlines()
            if line.startswith("export ")
        )
        assert set(exports) == {"BAYPORT_TEST_REDIS_URL", "BAYPORT_TEST_POSTGRES_URL"}
        assert ping(exports["BAYPORT_TEST_REDIS_URL"].strip("'"))
        assert local_services.postgres_reachable(exports["BAYPORT_TEST_POSTGRES_URL"].strip("'"))
    finally:
        subprocess.run(
            [sys.executable, "-m", "devstack.services", "stop", "--work-dir", str(work_dir)],
            capture_output=True,
            timeout=60,
            check=False,
        )
