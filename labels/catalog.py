"""A dataset's catalog (TensorBay's catalog JSON: one subcatalog per label type the dataset
uses) and `validate_label`, which checks a parsed label against it.

The rules `validate_label` applies, each failure a `LabelError` naming the path and value:
- An empty catalog constrains nothing. A non-empty one lists every type the dataset uses
  (as TensorBay's does), so a label of a type it lacks is an error.
- A category must be in the type's `categories`; a subcatalog without `categories` allows
  labels without a category only. Mask labels' `categoryId`s must be the categories' ids.
- An attribute must be in the type's `attributes`, apply to the label's category
  (`parentCategories`; with a `categoryDelimiter`, subcategories count), and its value must
  match the rule: `type` (one or a list; integer also takes 2.0, instance is a string), `enum`
  (true is not 1), `minimum`/`maximum` for numbers, `items` for an array's elements.
- KEYPOINTS2D: the keypoint count must be the `number` of a keypoints set for the label's
  category (sets with matching `parentCategories` first, else those without); BINARY sets
  allow v 0 or 1 only. POLYLINE2D with `isBeizerCurve` needs `beizerPointTypes`.
- `isTracking` is not enforced: TensorBay uses it to describe a dataset, not to reject labels.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from labels.checks import JsonObject, fail, is_number, key_path, show
from labels.model import MASK_TYPES, SINGLE_TYPES
from labels.subcatalogs import (
    AttributeInfo,
    CatalogPart,
    CategorizedSubcatalog,
    CategoryInfo,
    InstanceMaskSubcatalog,
    Items,
    Keypoints2DSubcatalog,
    KeypointsInfo,
    MaskCategoryInfo,
    MaskSubcatalog,
    Polyline2DSubcatalog,
    SentenceSubcatalog,
    Subcatalog,
    TrackedSubcatalog,
    is_under,
)

__all__ = [
    "AttributeInfo",
    "Catalog",
    "CategoryInfo",
    "Fact",
    "Items",
    "KeypointsInfo",
    "MaskCategoryInfo",
    "Subcatalog",
    "label_facts",
    "validate_label",
]

Fact = tuple[str, str | None]


class Catalog(CatalogPart):
    """`{TYPE: subcatalog}` for the label types a dataset uses; the keys are upper-case."""

    classification: CategorizedSubcatalog | None = Field(default=None, alias="CLASSIFICATION")
    box2d: TrackedSubcatalog | None = Field(default=None, alias="BOX2D")
    box3d: TrackedSubcatalog | None = Field(default=None, alias="BOX3D")
    polygon: TrackedSubcatalog | None = Field(default=None, alias="POLYGON")
    multi_polygon: TrackedSubcatalog | None = Field(default=None, alias="MULTI_POLYGON")
    rle: TrackedSubcatalog | None = Field(default=None, alias="RLE")
    polyline2d: Polyline2DSubcatalog | None = Field(default=None, alias="POLYLINE2D")
    multi_polyline2d: TrackedSubcatalog | None = Field(default=None, alias="MULTI_POLYLINE2D")
    keypoints2d: Keypoints2DSubcatalog | None = Field(default=None, alias="KEYPOINTS2D")
    sentence: SentenceSubcatalog | None = Field(default=None, alias="SENTENCE")
    semantic_mask: MaskSubcatalog | None = Field(default=None, alias="SEMANTIC_MASK")
    instance_mask: InstanceMaskSubcatalog | None = Field(default=None, alias="INSTANCE_MASK")
    panoptic_mask: MaskSubcatalog | None = Field(default=None, alias="PANOPTIC_MASK")

    def subcatalog(self, type_name: str) -> Subcatalog | None:
        """The subcatalog of a label type (`BOX2D`, ...); None when the catalog lacks it."""
        value = getattr(self, type_name.lower(), None) if type_name.isupper() else None
        return value if isinstance(value, Subcatalog) else None

    def types(self) -> list[str]:
        """The label types the catalog lists."""
        return [name.upper() for name in type(self).model_fields if getattr(self, name) is not None]


def validate_label(label: JsonObject, catalog: Catalog) -> None:
    """Check a label as `parse_label` returns it against the dataset's catalog (rules in the
    module docstring); raise `LabelError` naming the first offending value."""
    listed = catalog.types()
    if not listed:
        return
    for type_name, value in label.items():
        sub = catalog.subcatalog(type_name)
        if sub is None:
            fail(type_name, f": the catalog has no {type_name}; it lists {', '.join(listed)}")
        if type_name in MASK_TYPES:
            _mask(value, sub, type_name)
        elif type_name in SINGLE_TYPES:
            _annotation(value, sub, type_name, type_name)
        else:
            for i, annotation in enumerate(value):
                _annotation(annotation, sub, f"{type_name}[{i}]", type_name)


def _annotation(annotation: JsonObject, sub: Subcatalog, path: str, type_name: str) -> None:
    category = annotation.get("category")
    if category is not None and not sub.has_category(category):
        fail(f"{path}.category", f": {category!r} is not in the catalog's {type_name} categories")
    _attributes(annotation.get("attributes"), category, sub, f"{path}.attributes", type_name)
    if isinstance(sub, Keypoints2DSubcatalog):
        _keypoints(annotation, category, sub, path)
    beizer = isinstance(sub, Polyline2DSubcatalog) and sub.is_beizer_curve
    if beizer and "beizerPointTypes" not in annotation:
        fail(path, " has no beizerPointTypes, which POLYLINE2D needs (isBeizerCurve)")


def _mask(value: JsonObject, sub: Subcatalog, type_name: str) -> None:
    for i, row in enumerate(value.get("info", ())):
        path = f"{type_name}.info[{i}]"
        category = None
        if "categoryId" in row and isinstance(sub, MaskSubcatalog):
            category = sub.category_of(row["categoryId"])
            if category is None:
                fail(
                    f"{path}.categoryId",
                    f": {row['categoryId']} is not the categoryId of any of the catalog's "
                    f"{type_name} categories",
                )
        _attributes(row.get("attributes"), category, sub, f"{path}.attributes", type_name)


def _attributes(
    values: JsonObject | None, category: str | None, sub: Subcatalog, path: str, type_name: str
) -> None:
    for name, value in (values or {}).items():
        rule = sub.attribute(name)
        if rule is None:
            fail(key_path(path, name), f": {name!r} is not in the catalog's {type_name} attributes")
        parents = rule.parent_categories
        if parents and (category is None or not is_under(category, parents, sub.delimiter)):
            of = "a label without a category" if category is None else repr(category)
            where = key_path(path, name)
            fail(where, f": {name!r} is for categories {_listed(parents)} only, not {of}")
        _value(value, rule, path, name)


def _value(value: Any, rule: Items, path: str, key: str | int) -> None:
    """Check `value` (at `path`.`key`, or `path`[`key`] in an array) against its rule. The
    full path is spelt out only when needed: this runs for every attribute of every label."""
    types = rule.types()
    problem = None
    if types and not any(_is_type(value, name) for name in types):
        problem = f"is not of type {' or '.join(types)}"
    elif rule.enum is not None and not any(_same(value, option) for option in rule.enum):
        problem = f"is not one of {_listed(rule.enum)}"
    elif is_number(value) and rule.minimum is not None and value < rule.minimum:
        problem = f"is less than the minimum {show(rule.minimum)}"
    elif is_number(value) and rule.maximum is not None and value > rule.maximum:
        problem = f"is greater than the maximum {show(rule.maximum)}"
    if problem is not None:
        fail(_at(path, key), f": {show(value)} {problem}")
    if isinstance(value, list) and rule.items is not None:
        where = _at(path, key)
        for i, item in enumerate(value):
            _value(item, rule.items, where, i)


def _at(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else key_path(path, key)


def _is_type(value: Any, name: str) -> bool:
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return is_number(value) and (isinstance(value, int) or float(value).is_integer())
    if name == "number":
        return is_number(value)
    if name in ("string", "instance"):
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    return value is None  # null


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1 (as Python's == has it), 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if is_number(a) and is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _listed(values: list[Any], limit: int = 10) -> str:
    shown = ", ".join(show(value) for value in values[:limit])
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} in all)"


def _keypoints(
    annotation: JsonObject, category: str | None, sub: Keypoints2DSubcatalog, path: str
) -> None:
    if not sub.keypoints:
        return
    specific = [
        rule
        for rule in sub.keypoints
        if rule.parent_categories
        and category is not None
        and is_under(category, rule.parent_categories, sub.delimiter)
    ]
    candidates = specific or [rule for rule in sub.keypoints if not rule.parent_categories]
    if not candidates:
        of = "labels without a category" if category is None else f"category {category!r}"
        fail(path, f": the catalog's KEYPOINTS2D keypoints have no set for {of}")
    points = annotation["keypoints2d"]
    rule = next((rule for rule in candidates if rule.number == len(points)), None)
    if rule is None:
        numbers = " or ".join(str(rule.number) for rule in candidates)
        fail(
            f"{path}.keypoints2d",
            f": {len(points)} keypoints, but the catalog's KEYPOINTS2D number is {numbers}",
        )
    if rule.visible == "BINARY":
        for i, point in enumerate(points):
            if point.get("v") == 2:
                fail(f"{path}.keypoints2d[{i}].v", ": 2 is not 0 or 1 (the keypoints are BINARY)")


def label_facts(label: JsonObject, *, catalog: Catalog | None = None) -> list[Fact]:
    """`(TYPE, category)` per annotation of a parsed label, category None when it has none.

    CLASSIFICATION is one annotation; list types one per item (an empty list, none); a mask
    one per `info` row (one when it has no info). Mask rows name categories by id only: with
    the dataset's `catalog`, SEMANTIC_MASK and PANOPTIC_MASK rows get the category's name.
    """
    facts: list[Fact] = []
    for type_name, value in label.items():
        if type_name in MASK_TYPES:
            sub = catalog.subcatalog(type_name) if catalog is not None else None
            for row in value.get("info") or [{}]:
                category_id = row.get("categoryId")
                name = None
                if isinstance(sub, MaskSubcatalog) and category_id is not None:
                    name = sub.category_of(category_id)
                facts.append((type_name, name))
        elif type_name in SINGLE_TYPES:
            facts.append((type_name, value.get("category")))
        else:
            facts.extend((type_name, item.get("category")) for item in value)
    return facts
