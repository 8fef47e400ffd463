"""YOLO (Darknet / Ultralytics) txt labels as TensorBay BOX2D labels.

Each line is `class cx cy w h`: a class index into the dataset's class list (`classes.txt`,
`obj.names`: one name a line) and the box's centre and size as fractions (0..1) of the image's
width and height. With the image's size the box comes out in pixels, as VOC and COCO give it;
without it, in the same normalized 0..1 units (xmin = cx - w/2, ...), which the label cannot
tell apart from pixels: a dataset should use one or the other throughout.

The arithmetic is exact: each value is read as the decimal fraction it is written as, and
each corner is rounded to a float once, so `0.1 0.2 ...` in a 640-pixel image gives 64.0, not
64.00000000000001.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from labels.formats.entries import box2d, labeled
from labels.formats.imagesize import image_size, png_size
from labels.parse import JsonObject, LabelError

__all__ = ["image_size", "parse_class_names", "parse_yolo", "png_size"]

_FIELDS = ("cx", "cy", "w", "h")


def parse_class_names(raw: bytes) -> list[str]:
    """The class list of a `classes.txt` / `obj.names` file: one name a line, line N being
    class N - 1. Trailing blank lines are ignored; a blank line before a name is an error,
    since skipping it would shift every class after it."""
    lines = _decode(raw, "the class list").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    for number, name in enumerate(names, 1):
        if not name:
            raise LabelError(f"the class list's line {number} is empty")
    if not names:
        raise LabelError("the class list is empty")
    return names


def parse_yolo(
    raw: bytes, *, classes: Sequence[str], image_size: tuple[int, int] | None
) -> JsonObject:
    """The label `{"BOX2D": [...]}` of one YOLO txt file, an entry per line (an empty list for
    an empty file: an image with no objects). `image_size` is (width, height) in pixels; None
    keeps the coordinates normalized (see the module's docstring)."""
    if image_size is not None:
        width, height = image_size
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise LabelError(f"image size {image_size!r} is not two positive integers")
        scale_x, scale_y = Fraction(width), Fraction(height)
    else:
        scale_x = scale_y = Fraction(1)
    boxes: list[JsonObject] = []
    for number, line in enumerate(_decode(raw, "the YOLO file").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {number}"
        if len(fields) != 5:
            hint = " (a segmentation polygon? only boxes are read)" if len(fields) > 6 else ""
            raise LabelError(
                f"{where}: expected 5 values (class cx cy w h), got {len(fields)}{hint}"
            )
        category = _category(fields[0], classes, where)
        cx, cy, w, h = (
            _fraction(text, name, where) for name, text in zip(_FIELDS, fields[1:], strict=True)
        )
        corners = (
            (cx - w / 2) * scale_x,
            (cy - h / 2) * scale_y,
            (cx + w / 2) * scale_x,
            (cy + h / 2) * scale_y,
        )
        xmin, ymin, xmax, ymax = (float(v) for v in corners)
        boxes.append(labeled("box2d", box2d(xmin, ymin, xmax, ymax), category=category))
    return {"BOX2D": boxes}


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(f"{what} is not UTF-8 text: {exc}") from exc


def _category(text: str, classes: Sequence[str], where: str) -> str:
    if not text.isdecimal():
        raise LabelError(f"{where}: class {text!r} is not a class index (0, 1, ...)")
    index = int(text)
    if index >= len(classes):
        raise LabelError(f"{where}: class {index} is not in the {len(classes)} classes")
    return classes[index]


def _fraction(text: str, name: str, where: str) -> Fraction:
    """A normalized value, exactly as written; it must lie in 0..1 (as Ultralytics checks)."""
    try:
        if "/" in text:  # Fraction reads "1/2"; a YOLO file holds decimals
            raise ValueError(text)
        value = Fraction(text)  # refuses nan and inf too
    except ValueError:
        raise LabelError(f"{where}: {name} {text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise LabelError(f"{where}: {name} {text} is outside 0..1 (YOLO values are normalized)")
    return value
