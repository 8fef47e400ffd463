"""The real TensorBay SDK (tensorbay 1.24.2) in a venv of its own, for the tests that drive
Bayport as a TensorBay user would: its numpy<2 pin must never reach the project's venv.

`sdk_python()` makes the venv once (a stamp records the recipe; a file lock keeps two pytest
processes from building it at the same time) and returns its python. `./dev test` runs this
module first (`python -m tests.tensorbay_sdk`), so a fresh clone installs it before pytest.
The venv is `.venv-tensorbay` at the project root, or `$BAYPORT_TENSORBAY_VENV`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TENSORBAY_VERSION = "1.24.2"

# numpy-quaternion 2021.11.4.15.26.3 (pinned by tensorbay 1.24.2) has no wheel and builds only
# against numpy<2, with that numpy already installed: hence three steps and no build isolation.
# Every version is pinned, tensorbay's own dependencies too, so each machine gets the same SDK.
RECIPE: tuple[tuple[str, ...], ...] = (
    ("numpy==1.26.4", "wheel==0.48.0", "setuptools==84.2.1"),
    ("--no-build-isolation", "numpy-quaternion==2021.11.4.15.26.3"),
    (
        f"tensorbay=={TENSORBAY_VERSION}",
        "certifi==2026.10.18",
        "charset-normalizer==3.5.2",
        "click==8.5.1",
        "filetype==1.2.0",
        "idna==3.20",
        "packaging==26.3",
        "requests==2.34.2",
        "requests-toolbelt==1.0.0",
        "tqdm==4.70.1",
        "typing_extensions==4.16.0",
        "ulid-py==1.1.0",
        "urllib3==2.8.0",
    ),
)
STAMP = ".bayport-tensorbay.json"
STEP_TIMEOUT = 900  # seconds; the whole recipe takes about 15 s with a warm network


def venv_dir() -> Path:
    return Path(os.environ.get("BAYPORT_TENSORBAY_VENV") or PROJECT_ROOT / ".venv-tensorbay")


def sdk_python() -> Path:
    """The python of the TensorBay SDK's venv, made and installed first if needed."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    if _installed(venv):
        return python
    with _locked(venv.with_name(venv.name + ".lock")):
        if not _installed(venv):  # another process may have made it while we waited
            _install(venv)
    return python


def _wanted() -> dict[str, object]:
    return {"python": sys.version.split()[0], "recipe": [list(step) for step in RECIPE]}


def _installed(venv: Path) -> bool:
    try:
        stamp = json.loads((venv / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return stamp == _wanted() and (venv / "bin" / "python").exists()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install(venv: Path) -> None:
    if venv.exists():
        # A stale or half-made venv: start again, but never delete a folder that is not one.
        if not (venv / "pyvenv.cfg").exists() and any(venv.iterdir()):
            raise RuntimeError(f"{venv} exists and is not a venv: move it or set another path")
        shutil.rmtree(venv)
    print(
        f"installing the TensorBay SDK {TENSORBAY_VERSION} into {venv} (once)",
        file=sys.stderr,
        flush=True,
    )
    _run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    for step in RECIPE:
        _run([*pip, *step])
    _run([python, "-c", f"import tensorbay; assert tensorbay.__version__ == {TENSORBAY_VERSION!r}"])
    (venv / STAMP).write_text(json.dumps(_wanted()))


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output, code = (exc.output or ""), f"timed out after {STEP_TIMEOUT} s"
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
    else:
        if done.returncode == 0:
            return
        output, code = done.stdout, f"exit {done.returncode}"
    tail = "\n".join(output.splitlines()[-40:])
    raise RuntimeError(f"installing the TensorBay SDK failed ({code}): {' '.join(command)}\n{tail}")


if __name__ == "__main__":
    sdk_python()
