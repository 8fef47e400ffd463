"""The container a request reaches: the composition root's, held in the application's state
(a mounted sub-application holds the same one)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bootstrap import Container


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]
