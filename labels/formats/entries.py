"""TensorBay label entries (BOX2D, POLYGON, RLE) as the format readers build them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labels.parse import JsonObject


def labeled(
    key: str,
    value: Any,
    *,
    category: str,
    attributes: JsonObject | None = None,
    instance: str | None = None,
) -> JsonObject:
    """One entry of a TensorBay label list; optional keys are absent, never null."""
    entry: JsonObject = {key: value, "category": category}
    if attributes:
        entry["attributes"] = attributes
    if instance is not None:
        entry["instance"] = instance
    return entry


def box2d(xmin: float, ymin: float, xmax: float, ymax: float) -> JsonObject:
    return {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}


def polygon(flat: Sequence[float]) -> list[JsonObject]:
    """COCO's `[x1, y1, x2, y2, ...]` as TensorBay's `[{"x": x1, "y": y1}, ...]`."""
    return [{"x": flat[i], "y": flat[i + 1]} for i in range(0, len(flat), 2)]
