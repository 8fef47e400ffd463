"""Pascal VOC XML annotations (one file per image) as TensorBay BOX2D labels.

The XML is untrusted (it comes from a user's bucket), so it is parsed with defusedxml, which
refuses entity expansion and external references; the standard library's parser is never used.

Coordinates are kept as written: VOC's pixel coordinates (1-based in the original VOC
devkit) become `xmin`/`ymin`/`xmax`/`ymax` unchanged, as floats. Objects are counted from 1
in error messages (`object[2]` is the file's second `<object>`), as in XPath.
"""

from __future__ import annotations

import math
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from labels.formats.entries import box2d, labeled
from labels.parse import JsonObject, LabelError

_FLAGS = {"0": False, "1": True, "false": False, "true": True}
_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def parse_voc(raw: bytes) -> JsonObject:
    """The label `{"BOX2D": [...]}` of one VOC annotation file, an entry per `<object>` in
    file order (an empty list when it has none). `<difficult>`, `<truncated>` (0/1) and
    `<pose>` become the entry's attributes only when the object has them."""
    try:
        root = SafeET.fromstring(raw)
    except SafeET.ParseError as exc:
        raise LabelError(f"not well-formed XML: {exc}") from exc
    except DefusedXmlException as exc:
        raise LabelError(f"XML refused as unsafe: {exc}") from exc
    if root.tag != "annotation":
        raise LabelError(f"the root element is <{root.tag}>, not <annotation>")
    boxes = [_object(obj, f"object[{n}]") for n, obj in enumerate(root.findall("object"), 1)]
    return {"BOX2D": boxes}


def _object(obj: Any, where: str) -> JsonObject:
    name = _text(obj, "name")
    if not name:
        raise LabelError(f"{where}.name is missing or empty")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise LabelError(f"{where}.bndbox is missing")
    xmin, ymin, xmax, ymax = (_coordinate(bndbox, c, f"{where}.bndbox.{c}") for c in _CORNERS)
    if xmin > xmax or ymin > ymax:
        raise LabelError(f"{where}.bndbox: ({xmin:g}, {ymin:g})-({xmax:g}, {ymax:g}) has min > max")
    attributes: JsonObject = {}
    for flag in ("difficult", "truncated"):
        text = _text(obj, flag)
        if text is not None:
            if text.lower() not in _FLAGS:
                raise LabelError(f"{where}.{flag}: {text!r} is not 0 or 1")
            attributes[flag] = _FLAGS[text.lower()]
    pose = _text(obj, "pose")
    if pose:
        attributes["pose"] = pose
    return labeled("box2d", box2d(xmin, ymin, xmax, ymax), category=name, attributes=attributes)


def _text(parent: Any, tag: str) -> str | None:
    """The stripped text of `parent`'s child `tag`; None when there is no such child."""
    child = parent.find(tag)
    if child is None:
        return None
    return (child.text or "").strip()


def _coordinate(bndbox: Any, tag: str, where: str) -> float:
    text = _text(bndbox, tag)
    if text is None:
        raise LabelError(f"{where} is missing")
    try:
        value = float(text)
    except ValueError:
        raise LabelError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise LabelError(f"{where}: {text!r} is not a finite number")
    return value
