"""The labels package's one error: a label that cannot be used, or breaks its catalog."""

from __future__ import annotations


class LabelError(ValueError):
    """A label file that cannot be used; the message names the path and the value at fault,
    e.g. ``BOX2D[3].box2d.xmax: 12.5 is less than xmin 20.0``."""
