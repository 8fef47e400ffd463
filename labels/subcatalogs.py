"""The parts of TensorBay's catalog JSON: one subcatalog class per kind of label type, and the
category, attribute (JSON-schema-like) and keypoint rules they list. Key spellings follow the
tensorbay SDK (tensorbay/label/supports.py, attributes.py, label_*.py)."""

from __future__ import annotations

import math
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    field_validator,
    model_validator,
)

from labels.checks import is_number, show


def _finite_number(value: Any) -> int | float:
    # Kept as given (1 stays 1, not 1.0), so a catalog's JSON comes back as it was sent.
    if not is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"must be a finite number, not {show(value)}")
    return value


Number = Annotated[int | float, PlainValidator(_finite_number, json_schema_input_type=float)]
ATTRIBUTE_TYPES = ("array", "boolean", "integer", "number", "string", "null", "instance")


class CatalogPart(BaseModel):
    # Only TensorBay's keys, spelt its way: a misspelt key is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def dumps(self) -> dict[str, Any]:
        """The catalog JSON again: the keys given, optional ones absent when absent."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class CategoryInfo(CatalogPart):
    name: str = Field(min_length=1)
    description: str | None = None


class MaskCategoryInfo(CategoryInfo):
    # The pixel value of this category in the mask images.
    category_id: int = Field(alias="categoryId", ge=0)


def _check_json(value: Any, where: str) -> None:
    """An enum value: a string, finite number, boolean, null, or an array of them."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {show(value)} is not a finite number")
    elif value is not None and not isinstance(value, str | int | float):
        raise ValueError(f"{where}: {show(value)} is not a string, number, boolean, null or array")


class Items(CatalogPart):
    """The rule for an attribute's value (or, as `items`, for an array attribute's elements)."""

    type: str | list[str] | None = None
    enum: list[Any] | None = None
    minimum: Number | None = None
    maximum: Number | None = None
    items: Items | None = None

    @field_validator("type")
    @classmethod
    def _known_types(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not value:
            raise ValueError("an empty list of types allows no value")
        for name in [value] if isinstance(value, str) else value or ():
            if name not in ATTRIBUTE_TYPES:
                raise ValueError(f"{name!r} is not one of {', '.join(ATTRIBUTE_TYPES)}")
        return value

    @field_validator("enum")
    @classmethod
    def _json_enum(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None:
            if not value:
                raise ValueError("an empty enum allows no value")
            _check_json(value, "enum")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Items:
        if self.type is None and self.enum is None:
            raise ValueError("needs a type or an enum")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is greater than maximum {self.maximum}")
        if self.items is not None and "array" not in self.types():
            raise ValueError("items is only for attributes whose type includes array")
        return self

    def types(self) -> tuple[str, ...]:
        return self._types

    @cached_property
    def _types(self) -> tuple[str, ...]:
        return (self.type,) if isinstance(self.type, str) else tuple(self.type or ())


class AttributeInfo(Items):
    name: str = Field(min_length=1)
    # The categories the attribute is for; absent (or empty) for every category.
    parent_categories: list[str] | None = Field(default=None, alias="parentCategories")
    description: str | None = None


class KeypointsInfo(CatalogPart):
    number: int = Field(ge=1)
    names: list[str] | None = None
    skeleton: list[list[int]] | None = None
    # What a keypoint's v may be: BINARY 0 or 1, TERNARY 0, 1 or 2.
    visible: Literal["BINARY", "TERNARY"] | None = None
    parent_categories: list[str] | None = Field(default=None, alias="parentCategories")
    description: str | None = None

    @model_validator(mode="after")
    def _fits_number(self) -> KeypointsInfo:
        if self.names is not None and len(self.names) != self.number:
            raise ValueError(f"names has {len(self.names)} names for {self.number} keypoints")
        for i, line in enumerate(self.skeleton or ()):
            if len(line) != 2 or not all(0 <= index < self.number for index in line):
                raise ValueError(
                    f"skeleton[{i}]: {line} is not a pair of keypoint indexes 0..{self.number - 1}"
                )
        return self


def is_under(category: str, parents: list[str], delimiter: str | None) -> bool:
    """`category` is one of `parents` or, with a category delimiter, a subcategory of one
    (`vehicle.car` is under `vehicle` with delimiter `.`)."""
    return any(
        category == parent or (delimiter is not None and category.startswith(parent + delimiter))
        for parent in parents
    )


def _once(values: list[Any], where: str, key: str) -> None:
    seen: dict[Any, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            raise ValueError(
                f"{where}[{i}].{key}: {value!r} is also {where}[{seen[value]}]'s {key}"
            )
        seen[value] = i


class Subcatalog(CatalogPart):
    """What every subcatalog has. Subclasses with categories override `category_names`."""

    description: str | None = None
    attributes: list[AttributeInfo] | None = None

    # Indexes for checking labels, built on first use (a plain attribute read after that).
    @cached_property
    def _attribute_index(self) -> dict[str, AttributeInfo]:
        return {rule.name: rule for rule in self.attributes or ()}

    @cached_property
    def _category_index(self) -> frozenset[str] | None:
        names = self.category_names()
        return None if names is None else frozenset(names)

    @property
    def delimiter(self) -> str | None:
        return None

    def category_names(self) -> list[str] | None:
        """The categories its labels may have; None for a type whose labels have none."""
        return None

    def has_category(self, name: str) -> bool:
        index = self._category_index
        return index is not None and name in index

    def attribute(self, name: str) -> AttributeInfo | None:
        return self._attribute_index.get(name)

    def _parent_rules(self) -> list[tuple[str, list[str] | None]]:
        rules = self.attributes or ()
        return [(f"attributes[{i}]", rule.parent_categories) for i, rule in enumerate(rules)]

    @model_validator(mode="after")
    def _names_known_once(self) -> Subcatalog:
        _once([rule.name for rule in self.attributes or ()], "attributes", "name")
        names = self.category_names() or []
        _once(names, "categories", "name")
        for where, parents in self._parent_rules():
            for parent in parents or ():
                if not any(is_under(name, [parent], self.delimiter) for name in names):
                    raise ValueError(f"{where}.parentCategories: {parent!r} is not a category")
        return self


class CategorizedSubcatalog(Subcatalog):
    """CLASSIFICATION's subcatalog, and the base of the geometric types'. Without
    `categories` its labels may have no category."""

    categories: list[CategoryInfo] | None = None
    category_delimiter: str | None = Field(default=None, alias="categoryDelimiter", min_length=1)

    @property
    def delimiter(self) -> str | None:
        return self.category_delimiter

    def category_names(self) -> list[str] | None:
        return [category.name for category in self.categories or ()]


class TrackedSubcatalog(CategorizedSubcatalog):
    """BOX2D, BOX3D, POLYGON, MULTI_POLYGON, RLE and MULTI_POLYLINE2D."""

    is_tracking: bool | None = Field(default=None, alias="isTracking")


class Polyline2DSubcatalog(TrackedSubcatalog):
    # When true, every POLYLINE2D label needs beizerPointTypes.
    is_beizer_curve: bool | None = Field(default=None, alias="isBeizerCurve")


class Keypoints2DSubcatalog(TrackedSubcatalog):
    keypoints: list[KeypointsInfo] | None = None

    def _parent_rules(self) -> list[tuple[str, list[str] | None]]:
        sets = self.keypoints or ()
        rules = [(f"keypoints[{i}]", rule.parent_categories) for i, rule in enumerate(sets)]
        return super()._parent_rules() + rules


class SentenceSubcatalog(Subcatalog):
    is_sample: bool | None = Field(default=None, alias="isSample")
    sample_rate: Number | None = Field(default=None, alias="sampleRate")
    lexicon: list[list[str]] | None = None

    @model_validator(mode="after")
    def _rate_for_samples(self) -> SentenceSubcatalog:
        if self.is_sample and self.sample_rate is None:
            raise ValueError("sampleRate is required when isSample is true")
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ValueError(f"sampleRate: {show(self.sample_rate)} is not positive")
        return self


class MaskSubcatalog(Subcatalog):
    """SEMANTIC_MASK and PANOPTIC_MASK: each category has its pixel value (categoryId)."""

    categories: list[MaskCategoryInfo]
    category_delimiter: str | None = Field(default=None, alias="categoryDelimiter", min_length=1)

    @cached_property
    def _name_by_id(self) -> dict[int, str]:
        return {category.category_id: category.name for category in self.categories}

    @property
    def delimiter(self) -> str | None:
        return self.category_delimiter

    def category_names(self) -> list[str] | None:
        return [category.name for category in self.categories]

    def category_of(self, category_id: int) -> str | None:
        return self._name_by_id.get(category_id)

    @model_validator(mode="after")
    def _ids_once(self) -> MaskSubcatalog:
        _once([c.category_id for c in self.categories], "categories", "categoryId")
        return self


class InstanceMaskSubcatalog(MaskSubcatalog):
    # Optional here: its categories are the pixel values that are no instance (background...).
    categories: list[MaskCategoryInfo] = Field(default_factory=list)
    is_tracking: bool | None = Field(default=None, alias="isTracking")
