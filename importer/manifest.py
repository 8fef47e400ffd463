"""The import manifest a user submits: what to import from where, into which dataset segment."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$"
LABEL_SUFFIXES = {"tensorbay": ".json", "voc": ".xml", "yolo": ".txt", "coco": ".json"}


def normalize_prefix(value: str) -> str:
    """'data/images' and '/data/images/' both become 'data/images/'; '' stays ''."""
    value = value.strip().strip("/")
    if ".." in value.split("/"):
        raise ValueError("must not contain '..'")
    return f"{value}/" if value else ""


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config_name: str = Field(min_length=1, max_length=200)
    data_prefix: str = Field(
        default="", description="Folder of the objects, relative to the config's file_path"
    )
    label_prefix: str | None = Field(
        default=None, description="Folder of the label files, mirrored from data_prefix"
    )
    label_format: Literal["tensorbay", "voc", "yolo", "coco"] = Field(
        default="tensorbay",
        description="tensorbay: TensorBay JSON; voc: Pascal VOC XML; yolo: YOLO txt "
        "(needs yolo_classes); coco: one COCO instances file for the segment (coco_file). "
        "VOC/YOLO become BOX2D, COCO BOX2D/POLYGON/RLE",
    )
    coco_file: str | None = Field(
        default=None,
        description="With label_format coco: the COCO instances JSON's key; each image's "
        "file_name is its path below data_prefix",
    )
    label_suffix: str | None = Field(
        default=None,
        pattern=r"^\.[A-Za-z0-9_.\-]{1,20}$",
        description="Extension of the label files (default by format: .json, .xml, .txt)",
    )
    mask_prefix: str | None = Field(
        default=None,
        description="Folder of mask files (PNG), paired by stem like labels; each is copied "
        "with its object and becomes the label's mask (mask_type) with its remotePath",
    )
    mask_type: Literal["SEMANTIC_MASK", "INSTANCE_MASK", "PANOPTIC_MASK"] | None = None
    mask_suffix: str = Field(default=".png", pattern=r"^\.[A-Za-z0-9_.\-]{1,20}$")
    yolo_classes: list[str] | None = Field(
        default=None, description="YOLO class names, index 0 first (as in obj.names)"
    )
    label_type: str | None = Field(
        default=None,
        description="Type of the label files' inner object (e.g. 'classification'); "
        "omit when each file is a full {TYPE: ...} dict",
    )

    @property
    def labelled(self) -> bool:
        """Do the objects come with labels (a label folder or a COCO file)?"""
        return any(p is not None for p in (self.label_prefix, self.coco_file, self.mask_prefix))

    @field_validator("mask_type", mode="before")
    @classmethod
    def _mask_type(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("data_prefix", "label_prefix", "mask_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        return None if value is None else normalize_prefix(value)

    @property
    def suffix(self) -> str:
        """The label files' extension, as given or as the format's."""
        return self.label_suffix or LABEL_SUFFIXES[self.label_format]

    @model_validator(mode="after")
    def _format_needs(self) -> SourceSpec:
        if (self.mask_prefix is None) != (self.mask_type is None):
            raise ValueError("mask_prefix and mask_type go together")
        if (self.label_format == "coco") != (self.coco_file is not None):
            raise ValueError("coco_file goes with label_format 'coco', and needs it")
        if self.label_format == "coco" and self.label_prefix is not None:
            raise ValueError("label_format 'coco' reads coco_file, not a label_prefix")
        if self.label_format == "yolo" and not self.yolo_classes:
            raise ValueError("label_format 'yolo' needs yolo_classes (the class names)")
        if self.label_format != "tensorbay" and self.label_type not in (None, "BOX2D"):
            raise ValueError(f"{self.label_format} label files hold BOX2D labels")
        return self

    @field_validator("label_type")
    @classmethod
    def _label_type(cls, value: str | None) -> str | None:
        from labels.parse import SUPPORTED_TYPES

        if value is None:
            return None
        upper = value.upper()
        if upper not in SUPPORTED_TYPES:
            raise ValueError(
                f"unknown label type {value!r}; supported: {', '.join(sorted(SUPPORTED_TYPES))}"
            )
        return upper


class ImportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(default=16, ge=1, le=256, description="Parallel copies per shard")
    shard_size: int = Field(default=1000, ge=1, le=10000, description="Objects per shard")
    overwrite: Literal["skip_existing", "always"] = "skip_existing"
    dry_run: bool = False
    move: bool = Field(
        default=False,
        description="Delete each source object once its copy is verified (an import "
        "otherwise doubles the storage used); not for in-place imports",
    )
    missing_label: Literal["fail", "import"] = Field(
        default="fail",
        description="With a label_prefix: fail an object whose label file is missing, "
        "or import it without a label",
    )


class ImportManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=200)
    segment: str = Field(default="default", pattern=NAME_PATTERN)
    source: SourceSpec
    options: ImportOptions = Field(default_factory=ImportOptions)
