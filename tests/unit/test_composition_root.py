"""One composition root: the Celery app is built once per process (and kept across a fork),
the worker runs the very app the root built, and importing the API builds nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import bootstrap.root as root
from bootstrap import build_container, get_container, set_container
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_container_holds_the_celery_app_its_enqueuer_sends_with(tmp_path: Path) -> None:
    container = build_container(make_settings(tmp_path))
    try:
        assert container.celery.conf.broker_url == container.settings.broker_url
        assert container.ctx.enqueue._app is container.celery  # type: ignore[attr-defined]
    finally:
        container.db.dispose()


def test_after_a_fork_the_container_is_rebuilt_around_the_same_celery_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(root, "get_settings", lambda: make_settings(tmp_path))
    first = build_container(make_settings(tmp_path))
    set_container(first)
    try:
        assert get_container() is first
        pid = root._container[0]  # type: ignore[index]
        # A forked child sees another pid: its container is built again...
        monkeypatch.setattr(root.os, "getpid", lambda: pid + 1)
        child = get_container()
        assert child is not first and child.db is not first.db
        # ...around the app whose tasks the worker registered before forking.
        assert child.celery is first.celery
        child.db.dispose()
    finally:
        set_container(None)
        first.db.dispose()


def _fresh_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_worker_runs_the_app_the_root_built() -> None:
    said = _fresh_python(
        "import bootstrap, workers.celery_app as w;"
        "print(w.app is bootstrap.get_container().celery,"
        " 'workers.tasks' in w.app.conf.include,"
        " any('Sweeper' in s.__name__ for s in w.app.steps['worker']))"
    )
    assert said == "True True True"


def test_importing_the_api_builds_no_celery_app_and_reads_no_settings() -> None:
    said = _fresh_python(
        "import sys, api.app, api.routes_metrics, bayport.settings as s;"
        "print('workers.celery_app' in sys.modules, s.get_settings.cache_info().currsize)"
    )
    assert said == "False 0"


def test_the_worker_parent_imports_the_storage_sdks_before_it_forks_its_pool() -> None:
    """Celery's worker_init runs in the parent before the pool starts: the adapters (and
    their SDKs) imported there are shared by every pool process, and no job's first
    request waits for them."""
    said = _fresh_python(
        "import sys, workers.celery_app;"
        "from celery.signals import worker_init;"
        "names = ('storage_adapters.s3', 'storage_adapters.azure_blob', 'storage_adapters.oss');"
        "before = [n in sys.modules for n in names];"
        "worker_init.send(sender=None);"
        "print(before, [n in sys.modules for n in names])"
    )
    assert said == "[False, False, False] [True, True, True]"
