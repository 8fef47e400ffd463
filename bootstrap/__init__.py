"""The composition root (root.py): `build(settings) -> Container`, and each process's own."""

from bootstrap.root import Container, build, build_container, get_container, set_container

__all__ = ["Container", "build", "build_container", "get_container", "set_container"]
