"""The import manifest a user submits: what to import from where, into which dataset segment."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from importer.rules import is_control, key_problem

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$"
# TensorBay's default segment is named '' (the SDK's `create_segment()`): its objects lie in
# the dataset's folder itself. Only the TensorBay API makes it.
SEGMENT_PATTERN = r"^(?:[A-Za-z0-9][A-Za-z0-9_.\-]{0,199})?$"
LABEL_SUFFIXES = {"tensorbay": ".json", "voc": ".xml", "yolo": ".txt", "coco": ".json"}
# Every YOLO label a shard parses looks its classes up in the list: bounded, as obj.names is.
MAX_YOLO_CLASSES = 10_000
MAX_CLASS_NAME = 256


def normalize_prefix(value: str) -> str:
    """'data/images' and '/data/images/' both become 'data/images/'; '' stays ''. A folder
    with control characters or a '.' or '..' segment is refused (a ValueError)."""
    if any(is_control(c) for c in value):
        raise ValueError("must not contain control characters (NUL, C0, DEL or C1)")
    value = value.strip().strip("/")
    problem = key_problem(value)
    if problem is not None:
        raise ValueError(f"must be a folder path: this one {problem}")
    return f"{value}/" if value else ""


def normalize_key(value: str) -> str:
    """An object key named in a manifest: a leading '/' is dropped ('/labels/coco.json' is
    'labels/coco.json'); an unsafe key is refused (a ValueError)."""
    if any(is_control(c) for c in value):
        raise ValueError("must not contain control characters (NUL, C0, DEL or C1)")
    value = value.strip().lstrip("/")
    if not value or value.endswith("/"):
        raise ValueError("must be an object key (not empty, not a folder)")
    problem = key_problem(value)
    if problem is not None:
        raise ValueError(f"must be an object key: this one {problem}")
    return value


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config_name: str = Field(min_length=1, max_length=200)
    data_prefix: str = Field(
        default="", description="Folder of the objects, relative to the config's file_path"
    )
    label_prefix: str | None = Field(
        default=None,
        description="Folder of the label files, mirrored from data_prefix (labels/a/1.json "
        "for images/a/1.png); equal to data_prefix: each label file beside its object "
        "(images/a/1.png with images/a/1.json)",
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
    include: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Glob patterns (below data_prefix; '*' within a folder, '**' across, "
        "{a,b}); only matching objects are imported. Empty: all",
    )
    exclude: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Glob patterns of objects to leave out (wins over include). Excluded "
        "objects are never deleted by a sync",
    )
    modified_since: datetime | None = Field(
        default=None,
        description="Only objects modified at or after this time (ISO 8601, with a zone)",
    )
    object_list: str | None = Field(
        default=None,
        description="Key of an object list in the source (as S3 Batch Operations' "
        'manifests): CSV rows \'key[,label_key]\' or JSON lines {"key", "label_key"}; '
        "imported instead of listing data_prefix. Keys are relative to the config's path "
        "and must lie below data_prefix",
    )
    object_list_format: Literal["csv", "jsonl"] | None = Field(
        default=None, description="Default: by the file's extension (.csv, .jsonl/.ndjson)"
    )
    draft: int | None = Field(
        default=None,
        ge=1,
        description="Set by the TensorBay-compatible API, not by a submitted manifest: the "
        "job imports the objects a client registered into this draft of the dataset, each "
        "under the name the client gave it and with the label it sent",
    )

    @field_validator("include", "exclude")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        from importer.rules import check_globs

        return check_globs(value)

    @field_validator("modified_since")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone (e.g. '2026-01-31T00:00:00Z')")
        return value

    @field_validator("object_list", "coco_file")
    @classmethod
    def _object_key(cls, value: str | None) -> str | None:
        return None if value is None else normalize_key(value)

    @property
    def list_format(self) -> Literal["csv", "jsonl"]:
        if self.object_list_format is not None:
            return self.object_list_format
        name = (self.object_list or "").lower()
        return "jsonl" if name.endswith((".jsonl", ".ndjson", ".json")) else "csv"

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

    @field_validator("label_prefix")
    @classmethod
    def _label_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        data = info.data.get("data_prefix")
        if value is not None and data is not None and value != data and data.startswith(value):
            raise ValueError(
                f"{value!r} holds data_prefix {data!r}, so every object would be listed as "
                "a label file: name the label folder itself (e.g. 'data/labels/'), or "
                "data_prefix for label files beside their objects"
            )
        return value

    @field_validator("mask_prefix")
    @classmethod
    def _mask_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        data, labels = info.data.get("data_prefix"), info.data.get("label_prefix")
        if value is not None and data is not None and data.startswith(value):
            raise ValueError(
                f"{value!r} is or holds data_prefix {data!r}: a mask pairs with its object "
                "by stem, so the masks need a folder of their own (e.g. 'data/masks/')"
            )
        if value is not None and value == labels:
            raise ValueError(f"{value!r} is also label_prefix: masks need a folder of their own")
        return value

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
        if self.object_list_format is not None and self.object_list is None:
            raise ValueError("object_list_format goes with object_list")
        if self.draft is not None and (
            self.labelled or self.object_list is not None or self.data_prefix
        ):
            raise ValueError("a draft's objects carry their own names and labels")
        return self

    @field_validator("yolo_classes")
    @classmethod
    def _yolo_classes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if len(value) > MAX_YOLO_CLASSES:
            raise ValueError(
                f"{len(value)} class names: yolo_classes holds at most {MAX_YOLO_CLASSES}"
            )
        for index, name in enumerate(value):
            if not name or len(name) > MAX_CLASS_NAME or any(is_control(c) for c in name):
                raise ValueError(
                    f"class name {index} must be 1 to {MAX_CLASS_NAME} characters, "
                    "without control characters"
                )
        return value

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
    delete: bool = Field(
        default=False,
        description="Sync deletions: objects the ledger holds from this source that are "
        "gone from it become tombstones and are deleted from the dataset, within the limits",
    )
    max_delete: int = Field(
        default=1000,
        ge=0,
        description="With delete: a run that would delete more objects deletes none and "
        "ends needs_review",
    )
    max_delete_percent: float = Field(
        default=10.0,
        ge=0,
        le=100,
        description="With delete: the same, as a percentage of the objects the segment "
        "holds from this source",
    )
    max_requests_per_second: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="Cap on the job's storage requests per second (source and destination "
        "together), held across all workers",
    )
    max_bytes_per_second: int | None = Field(
        default=None,
        gt=0,
        le=10**15,  # 1 PB/s
        description="Cap on the bytes per second the job's requests move (reads, writes; "
        "a server-side copy counts its object's size), held across all workers",
    )


class ImportManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=200)
    segment: str = Field(default="default", pattern=SEGMENT_PATTERN)
    source: SourceSpec
    options: ImportOptions = Field(default_factory=ImportOptions)

    @model_validator(mode="after")
    def _delete_needs_listing(self) -> ImportManifest:
        if not self.segment and self.source.draft is None:
            raise ValueError(
                "segment must be a name (TensorBay's default segment '' is "
                "made by the TensorBay API only)"
            )
        if self.options.delete and (
            self.source.object_list is not None or self.source.draft is not None
        ):
            raise ValueError(
                "options.delete needs a listing of data_prefix: an object list names what "
                "to import, not what the source holds"
            )
        if self.options.delete and self.options.move:
            raise ValueError("options.delete and options.move do not go together")
        if self.options.delete and self.options.overwrite == "always":
            # Deletions are found by walking the ledger beside the listing, which an
            # overwrite-always import does not do: it would delete nothing, silently.
            raise ValueError(
                "options.delete needs options.overwrite 'skip_existing': an import that "
                "copies everything again does not compare the source with the ledger, so "
                "it cannot tell what is gone"
            )
        return self
