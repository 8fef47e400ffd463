"""Settings are read once and passed on: `to_env()` spells them as the `BAYPORT_` variables a
child process reads back to the same values (cli/stack.py hands its workers and API processes
its settings so)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from bayport.settings import Settings


def _read_back(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [n for n in os.environ if n.startswith("BAYPORT_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_to_env_reads_back_to_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        broker_url="redis://127.0.0.1:6390/3",
        worker_processes=3,
        shared_throttle=False,
        allowed_private_endpoints=["minio.internal", "10.0.0.8"],
        local_roots=[tmp_path / "roots" / "a", tmp_path / "roots" / "b"],
        azure_account_urls={"devstoreaccount1": "http://127.0.0.1:10000/devstoreaccount1"},
        bootstrap_access_key=SecretStr("bp_" + "k" * 40),
        retry_max_wait=2.5,
    )
    env = settings.to_env()
    assert env["BAYPORT_BOOTSTRAP_ACCESS_KEY"] == "bp_" + "k" * 40  # the secret, not '**********'
    again = _read_back(env, monkeypatch)
    for name in settings.model_fields_set:
        assert getattr(again, name) == getattr(settings, name), name


def test_to_env_names_only_what_it_is_asked_for_and_leaves_out_none(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, flower_basic_auth=None)
    updated = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    assert updated.to_env("broker_url", "flower_basic_auth") == {
        "BAYPORT_BROKER_URL": "redis://127.0.0.1:1/0"
    }
