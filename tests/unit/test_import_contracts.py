"""The layering holds: `lint-imports` keeps every contract of [tool.importlinter] in
pyproject.toml (the layers from the entry points down to settings, no cycle between the modules
of any package, product code never imports devstack, tests or the CLI), so `./dev test` in CI
checks it as `./dev lint` does; and the contracts do break on a layer breach and on a cycle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout


PRODUCT = [
    "api", "bayport", "bootstrap", "cli", "crypto", "devstack", "edge", "importer", "labels",
    "metadata", "scheduler", "services", "storage_adapters", "stores", "taskqueue", "telemetry",
    "tensorbay_api", "workers",
]  # fmt: skip


def _lint_copy(tmp_path: Path, breach: dict[str, str]) -> str:
    """lint-imports on a copy of the product with `breach` lines appended to modules."""
    import shutil

    for name in [*PRODUCT, "tests", "bench"]:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for module, line in breach.items():
        path = tmp_path / (module.replace(".", "/") + ".py")
        path.write_text(path.read_text() + f"\n{line}\n")
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stdout
    return " ".join(result.stdout.split())


def test_a_layer_breach_breaks_the_layers_contract(tmp_path: Path) -> None:
    # The import logic reaching up to the composition root.
    out = _lint_copy(tmp_path, {"importer.rules": "import bootstrap  # noqa"})
    assert "settings BROKEN" in out  # (the layers contract's name ends "... > settings")
    assert "importer.rules -> bootstrap" in out


def test_a_cycle_between_two_modules_breaks_the_acyclic_contract(tmp_path: Path) -> None:
    # importer.finish imports importer.jobs; the way back closes a cycle.
    out = _lint_copy(tmp_path, {"importer.jobs": "import importer.finish  # noqa"})
    assert "No import cycles between the modules of any package BROKEN" in out
    assert "Layers: entry points > root > use cases > import logic" in out  # the rest still ran
