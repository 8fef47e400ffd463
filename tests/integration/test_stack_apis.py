"""More API processes beside the local stack's own (cli/stack.py `start_api`), as a
deployment runs several: one configuration, one database, stopped with the stack."""

from __future__ import annotations

from pathlib import Path

from cli.client import BayportClient
from cli.stack import local_stack


def test_api_processes_share_the_stack_and_stop_with_it(tmp_path: Path, redis_url: str) -> None:
    with local_stack(
        data_dir=tmp_path / "bayport",
        overrides={"BAYPORT_BROKER_URL": redis_url},
        start_workers=False,
    ) as stack:
        started = [stack.start_api() for _ in range(2)]
        procs = [proc for proc, _ in started]
        clients = [BayportClient(url, stack.access_key) for _, url in started]
        own = BayportClient(stack.url, stack.access_key)
        try:
            clients[0].create_dataset("Made-In-One")
            for client in (clients[1], own):
                names = [d["name"] for d in client.request("GET", "/v1/datasets")]
                assert names == ["Made-In-One"]
        finally:
            for client in (*clients, own):
                client.close()
        assert all(proc.poll() is None for proc in procs)
    assert all(proc.poll() is not None for proc in procs)  # stopped with the stack
