"""Which folders a workspace's `local` storage configs may name: its own sub-folder
`<root>/<workspace id>/` of each of the operator's BAYPORT_LOCAL_ROOTS, never Bayport's own.

A workspace sees only what is in its sub-folders; another workspace's sub-folder, the rest
of the root and anything else on the machine are refused alike, before the file system is
asked anything about them (a refusal says nothing about whether a folder exists). A root
that contains or lies inside Bayport's data dir (`secret.key`, the SQLite DB) or its default
storage is refused outright: at startup, and at every config create or open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bayport.settings import Settings, SettingsError


class LocalFolderRefused(Exception):
    """A folder a workspace's local config may not name; the message says where it may."""


@dataclass(frozen=True)
class LocalRoots:
    # (the root as configured, the same root resolved), for the roots that are safe.
    roots: tuple[tuple[Path, Path], ...]
    # What no root may contain or lie inside: name -> resolved path.
    protected: tuple[tuple[str, Path], ...]
    # One line per unsafe root (they are left out of `roots`).
    unsafe: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalRoots:
        protected = [
            ("the data dir (BAYPORT_DATA_DIR)", settings.data_dir.resolve()),
            ("the default storage", settings.resolved_default_storage_dir),
        ]
        database = settings.resolved_database_url
        if database.startswith("sqlite:///"):
            protected.append(("the SQLite DB", Path(database.removeprefix("sqlite:///")).resolve()))
        roots: list[tuple[Path, Path]] = []
        unsafe: list[str] = []
        for root in settings.local_roots:
            resolved = Path(root).resolve()
            clash = next((name for name, p in protected if _overlap(resolved, p)), None)
            nested = next((str(r) for r, other in roots if _overlap(resolved, other)), None)
            if not Path(root).is_absolute():
                unsafe.append(f"{root} is not an absolute path")
            elif clash is not None:
                unsafe.append(f"{root} contains or lies inside {clash}")
            elif nested is not None:  # one workspace's folder would hold another's
                unsafe.append(f"{root} contains or lies inside the root {nested}")
            else:
                roots.append((Path(os.path.normpath(root)), resolved))
        return cls(roots=tuple(roots), protected=tuple(protected), unsafe=tuple(unsafe))

    def check_settings(self) -> None:
        """Refuse to start with a root that would expose Bayport's own files."""
        if self.unsafe:
            raise SettingsError(f"BAYPORT_LOCAL_ROOTS: {'; '.join(self.unsafe)}")

    def folders(self, workspace_id: str) -> list[Path]:
        """The folders the workspace's local configs may lie in (as configured)."""
        if not workspace_id.isalnum():  # (ids are hex: never a path of their own)
            return []
        return [root / workspace_id for root, _resolved in self.roots]

    def check(self, workspace_id: str, folder: str) -> Path:
        """`folder` resolved, if the workspace may use it; LocalFolderRefused otherwise."""
        allowed = self.folders(workspace_id)
        path = PurePosixPath(folder)
        # Named inside one of its folders, as written (no '..'): decided before the file
        # system is asked, so an answer cannot depend on what exists elsewhere.
        inside = (
            bool(allowed)
            and path.is_absolute()
            and ".." not in path.parts
            and "\0" not in folder
            and any(
                Path(path).is_relative_to(base / workspace_id)
                for pair in self.roots
                for base in pair
            )
        )
        if inside:
            # ...and still inside once its symlinks are followed, clear of Bayport's files.
            try:
                resolved = Path(path).resolve()
            except (OSError, RuntimeError):  # a symlink loop: no folder at all
                resolved = Path("/")
            if any(resolved.is_relative_to(r / workspace_id) for _, r in self.roots) and not any(
                _overlap(resolved, p) for _, p in self.protected
            ):
                return resolved
        if not allowed:
            raise LocalFolderRefused(
                "local storage is not enabled for this workspace: the operator's "
                "BAYPORT_LOCAL_ROOTS names no folder"
            )
        raise LocalFolderRefused(
            "a local storage folder must be an absolute path inside this workspace's own "
            "folder of BAYPORT_LOCAL_ROOTS (<root>/<workspace id>): "
            + ", ".join(str(f) for f in allowed)
        )


def _overlap(a: Path, b: Path) -> bool:
    return a.is_relative_to(b) or b.is_relative_to(a)
