"""The layering holds: `lint-imports` keeps every contract of [tool.importlinter] in
pyproject.toml (product code never imports devstack, tests or the CLI; the adapters, labels and
the metadata DB import nothing above them), so `./dev test` in CI checks it as `./dev lint` does."""

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
