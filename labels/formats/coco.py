"""COCO instances files (one JSON for a whole segment) indexed on disk, read per image.

A COCO file can hold millions of annotations, so it is never loaded whole: ijson streams the
items of `images`, `categories` and `annotations` (one pass per array, since they may come in
any order) into a small SQLite file, and `CocoIndex.label_for` reads one image's annotations
back. Memory stays flat in the number of annotations; disk holds about the file's size.

Each annotation becomes TensorBay entries that share its id as their `instance`: `bbox`
[x, y, w, h] a BOX2D (xmin=x, ymin=y, xmax=x+w, ymax=y+h, the sums exact in decimal), each
polygon of a polygon `segmentation` a POLYGON, an RLE `segmentation` an RLE whose `rle` is the
uncompressed counts list (COCO's column-major runs, zeros first; a compressed counts string is
decoded). `category_id` becomes the category's name; `iscrowd` 1 becomes the attributes
`{"iscrowd": true}`. The whole file is checked while indexing: a malformed annotation, an
unknown category, an annotation of an image the file does not list are LabelErrors naming it.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import shutil
import sqlite3
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import ijson

from labels.formats.entries import box2d, labeled, polygon
from labels.parse import JsonObject, LabelError

Source = BinaryIO | Callable[[], BinaryIO]
"""The COCO file: a stream, or a callable that opens it afresh (called once per pass)."""

JsonLabel = dict[str, list[JsonObject]]

_FORMAT = "bayport-coco-index-1"
_BATCH = 1000
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value);
CREATE TABLE images (file_name TEXT NOT NULL, id NOT NULL, w INTEGER, h INTEGER);
CREATE TABLE categories (id NOT NULL, name TEXT NOT NULL);
CREATE TABLE annotations (
    image_id NOT NULL, position INTEGER NOT NULL, category_id NOT NULL, instance TEXT,
    crowd INTEGER NOT NULL, bbox BLOB, polygon_lengths BLOB, polygons BLOB, rle BLOB
);
"""
# Geometry is stored as machine arrays (float64 coordinates, int64 counts), not JSON: writing
# floats as JSON text took more time than the rest of indexing together.
_ANNOTATIONS_OF_IMAGE = (
    "SELECT category_id, instance, crowd, bbox, polygon_lengths, polygons, rle"
    " FROM annotations WHERE image_id = ? ORDER BY position"
)
_ALL_LABELS = (
    "SELECT i.file_name, a.category_id, a.instance, a.crowd, a.bbox, a.polygon_lengths,"
    " a.polygons, a.rle FROM images i LEFT JOIN annotations a ON a.image_id = i.id"
    " ORDER BY i.rowid, a.position"
)
# (index, the query finding a value the unique index refuses, what that value is)
_UNIQUE_IMAGES = (
    (
        "CREATE UNIQUE INDEX images_file_name ON images (file_name)",
        "SELECT file_name FROM images GROUP BY file_name HAVING count(*) > 1 LIMIT 1",
        "file_name",
    ),
    (
        "CREATE UNIQUE INDEX images_id ON images (id)",
        "SELECT id FROM images GROUP BY id HAVING count(*) > 1 LIMIT 1",
        "id",
    ),
)
_ORPHANS = "FROM annotations WHERE image_id NOT IN (SELECT id FROM images)"


class CocoIndex:
    """A COCO file's images and annotations in a SQLite file, looked up by image file name.

    Not shared between threads: open one per thread with `CocoIndex.open(path)`."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        """Use `build` or `open`."""
        self._db = db
        self.path = path
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError:
            meta = {}
        if meta.get("format") != _FORMAT:
            db.close()
            raise ValueError(f"{path} is not a complete COCO index")
        self.annotation_count = int(meta["annotations"])
        self._categories: dict[Any, str] = dict(db.execute("SELECT id, name FROM categories"))

    @classmethod
    def build(cls, source: Source, db_path: Path) -> CocoIndex:
        """Index the COCO file `source` into a new SQLite file at `db_path` (replacing one
        there). A stream that cannot seek is first copied to a file beside `db_path`, since
        the file is read once per array."""
        db_path = Path(db_path)
        db_path.unlink(missing_ok=True)
        db = sqlite3.connect(db_path)
        try:
            # A scratch file rebuilt from the COCO file on failure: no journal, no fsync.
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            db.executescript(_SCHEMA)
            with contextlib.ExitStack() as stack:
                reopen = _reopener(source, stack, db_path.parent)
                counts = _load(db, reopen)
            _finish(db, counts)
            db.commit()
            return cls(db, db_path)
        except BaseException:
            db.close()
            db_path.unlink(missing_ok=True)
            raise

    @classmethod
    def open(cls, db_path: Path) -> CocoIndex:
        """An index `build` made earlier, read-only."""
        db_path = Path(db_path)
        if not db_path.is_file():
            raise FileNotFoundError(db_path)
        return cls(sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True), db_path)

    def label_for(self, file_name: str) -> JsonObject | None:
        """The TensorBay label of the image `file_name` (as the COCO file spells it): None when
        the file does not list that image, `{}` when it lists it without annotations, else
        `{"BOX2D": [...], "POLYGON": [...], "RLE": [...]}` with only the non-empty types."""
        row = self._db.execute("SELECT id FROM images WHERE file_name = ?", (file_name,)).fetchone()
        if row is None:
            return None
        label: JsonLabel = {"BOX2D": [], "POLYGON": [], "RLE": []}
        for stored in self._db.execute(_ANNOTATIONS_OF_IMAGE, (row[0],)):
            _expand(stored, self._categories, label)
        return {kind: entries for kind, entries in label.items() if entries}

    def labels(self) -> Iterator[tuple[str, JsonObject]]:
        """Every image the file lists, in file order, with its label as `label_for` gives it
        (`{}` without annotations): one pass over the index instead of a lookup per image."""
        rows = self._db.execute(_ALL_LABELS)
        for name, group in itertools.groupby(rows, key=lambda row: row[0]):
            label: JsonLabel = {"BOX2D": [], "POLYGON": [], "RLE": []}
            for row in group:
                if row[1] is not None:  # (an image without annotations: one row of NULLs)
                    _expand(row[1:], self._categories, label)
            yield name, {kind: entries for kind, entries in label.items() if entries}

    def file_names(self) -> Iterator[str]:
        """Every image the file lists, in file order, annotated or not."""
        for (name,) in self._db.execute("SELECT file_name FROM images ORDER BY rowid"):
            yield name

    def __contains__(self, file_name: object) -> bool:
        query = "SELECT 1 FROM images WHERE file_name = ?"
        return self._db.execute(query, (file_name,)).fetchone() is not None

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM images").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CocoIndex:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def decode_rle_counts(text: str) -> list[int]:
    """COCO's compressed RLE counts (pycocotools' rleFrString) as the counts list.

    Each count is a signed LEB128-like number in 5-bit groups, least significant first, each
    group + 48 one ASCII character, 0x20 meaning "more groups follow" and 0x10 in the last
    group the sign. From the fourth count on, what is stored is the difference from the count
    two before. Raises ValueError for a string that is not such an encoding."""
    counts: list[int] = []
    value = shift = 0
    for position, char in enumerate(text):
        group = ord(char) - 48
        if not 0 <= group < 64:
            raise ValueError(f"character {char!r} at {position} is not in '0'..'o'")
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:  # negative: extend the sign bit of the last group
            value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            raise ValueError(f"count {len(counts) + 1} is negative ({value})")
        counts.append(value)
        value = shift = 0
    if shift:
        raise ValueError("it ends inside a count")
    return counts


def encode_rle_counts(counts: Sequence[int]) -> str:
    """The inverse of decode_rle_counts (pycocotools' rleToString)."""
    out: list[str] = []
    for i, count in enumerate(counts):
        value = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic: a negative value ends at -1
            more = value != -1 if group & 0x10 else value != 0
            out.append(chr((group | 0x20 if more else group) + 48))
    return "".join(out)


def _reopener(
    source: Source, stack: contextlib.ExitStack, spill_dir: Path
) -> Callable[[], AbstractContextManager[BinaryIO]]:
    """A callable giving the COCO file from its start, once per pass, as a context manager
    (which closes what the pass opened, not the stream the caller gave)."""
    if callable(source):
        return source
    stream = source
    try:
        start = stream.tell() if stream.seekable() else None
    except (AttributeError, OSError):
        start = None
    if start is None:
        # The stack closes (and so deletes) it when indexing ends.
        spill = stack.enter_context(tempfile.TemporaryFile(dir=spill_dir, suffix=".json"))  # noqa: SIM115
        shutil.copyfileobj(stream, spill, 1024 * 1024)
        stream, start = spill, 0

    def rewind() -> AbstractContextManager[BinaryIO]:
        stream.seek(start)
        return contextlib.nullcontext(stream)

    return rewind


def _items(reopen: Callable[[], AbstractContextManager[BinaryIO]], key: str) -> Iterator[Any]:
    """The items of the top-level array `key`, one at a time (ijson's C parser)."""
    try:
        with reopen() as stream:
            yield from ijson.items(stream, f"{key}.item", use_float=True)
    except ijson.JSONError as exc:
        raise LabelError(f"not valid JSON: {exc}") from exc


def _load(
    db: sqlite3.Connection, reopen: Callable[[], AbstractContextManager[BinaryIO]]
) -> dict[str, int]:
    images = _insert(
        db,
        "INSERT INTO images VALUES (?, ?, ?, ?)",
        (_image(item, n) for n, item in enumerate(_items(reopen, "images"))),
    )
    if not images:
        raise LabelError('the file lists no images (a COCO file has an "images" array)')
    categories: dict[Any, str] = {}
    for n, item in enumerate(_items(reopen, "categories")):
        category_id, name = _category(item, n)
        if category_id in categories:
            raise LabelError(f"categories[{n}]: id {category_id!r} is used twice")
        categories[category_id] = name
    db.executemany("INSERT INTO categories VALUES (?, ?)", categories.items())
    annotations = _insert(
        db,
        "INSERT INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (_annotation(item, n, categories) for n, item in enumerate(_items(reopen, "annotations"))),
    )
    return {"images": images, "categories": len(categories), "annotations": annotations}


def _insert(db: sqlite3.Connection, sql: str, rows: Iterable[tuple[Any, ...]]) -> int:
    """Insert `rows` a batch at a time; how many there were."""
    total, iterator = 0, iter(rows)
    while batch := list(itertools.islice(iterator, _BATCH)):
        db.executemany(sql, batch)
        total += len(batch)
    return total


def _finish(db: sqlite3.Connection, counts: dict[str, int]) -> None:
    """Index the tables and check what needs the whole file: unique image names and ids,
    annotations of listed images only."""
    for ddl, duplicates, column in _UNIQUE_IMAGES:
        try:
            db.execute(ddl)
        except sqlite3.IntegrityError:
            twice = db.execute(duplicates).fetchone()
            raise LabelError(f"images: {column} {twice[0]!r} is listed twice") from None
    db.execute("CREATE INDEX annotations_image ON annotations (image_id, position)")
    first = db.execute(f"SELECT position, image_id {_ORPHANS} ORDER BY position").fetchone()
    if first is not None:
        more = db.execute(f"SELECT count(*) - 1 {_ORPHANS}").fetchone()[0]
        also = f" (and {more} more annotations)" if more else ""
        raise LabelError(f"annotations[{first[0]}]: image_id {first[1]!r} is not in images{also}")
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", _FORMAT), *sorted(counts.items())])


def _image(item: Any, n: int) -> tuple[Any, ...]:
    where = f"images[{n}]"
    image = _mapping(item, where)
    file_name = image.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        raise LabelError(f"{where}.file_name: {file_name!r} is not a file name")
    size = [image.get(key) for key in ("width", "height")]
    for key, value in zip(("width", "height"), size, strict=True):
        if value is not None and not _positive_int(value):
            raise LabelError(f"{where}.{key}: {value!r} is not a positive integer")
    return (file_name, _id(image.get("id"), f"{where}.id"), *size)


def _category(item: Any, n: int) -> tuple[Any, str]:
    where = f"categories[{n}]"
    category = _mapping(item, where)
    name = category.get("name")
    if not isinstance(name, str) or not name:
        raise LabelError(f"{where}.name: {name!r} is not a category name")
    return _id(category.get("id"), f"{where}.id"), name


def _annotation(item: Any, n: int, categories: dict[Any, str]) -> tuple[Any, ...]:
    """One annotation, checked, as a row of the annotations table."""
    where = f"annotations[{n}]"
    annotation = _mapping(item, where)
    instance = None
    if "id" in annotation:
        instance = str(_id(annotation["id"], f"{where}.id"))
        where = f"{where} (id {instance})"
    image_id = _id(annotation.get("image_id"), f"{where}.image_id")
    category_id = _id(annotation.get("category_id"), f"{where}.category_id")
    if category_id not in categories:
        raise LabelError(f"{where}.category_id: {category_id!r} is not in categories")
    crowd = annotation.get("iscrowd", 0)
    if crowd not in (0, 1):  # True and False compare equal to 1 and 0
        raise LabelError(f"{where}.iscrowd: {crowd!r} is not 0 or 1")
    bbox = annotation.get("bbox")
    if bbox is not None:
        bbox = array("d", _bbox(bbox, f"{where}.bbox")).tobytes()
    lengths = polygons = rle = None
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list):
        if segmentation:
            flats = [_polygon(f, f"{where}.segmentation[{k}]") for k, f in enumerate(segmentation)]
            lengths = array("q", map(len, flats)).tobytes()
            polygons = b"".join(flat.tobytes() for flat in flats)
    elif isinstance(segmentation, dict):
        rle = array("q", _rle(segmentation, f"{where}.segmentation")).tobytes()
    elif segmentation is not None:
        raise LabelError(f"{where}.segmentation is neither polygons nor RLE")
    if bbox is None and polygons is None and rle is None:
        raise LabelError(f"{where} has neither a bbox nor a segmentation")
    return (image_id, n, category_id, instance, int(crowd), bbox, lengths, polygons, rle)


def _bbox(value: Any, where: str) -> list[float]:
    if not (isinstance(value, list) and len(value) == 4 and _numbers(value)):
        raise LabelError(f"{where}: {value!r} is not 4 numbers [x, y, width, height]")
    x, y, w, h = value
    if w < 0 or h < 0:
        raise LabelError(f"{where}: {value!r} has a negative width or height")
    return [float(x), float(y), _exact_sum(x, w), _exact_sum(y, h)]


def _exact_sum(a: float, b: float) -> float:
    """a + b as the decimals the file wrote (repr gives them back), rounded once: 0.1 + 0.2
    gives 0.3, not 0.30000000000000004."""
    if type(a) is int and type(b) is int:
        return float(a + b)
    return float(Decimal(repr(a)) + Decimal(repr(b)))


def _polygon(value: Any, where: str) -> array[float]:
    if not (isinstance(value, list) and _numbers(value)):
        raise LabelError(f"{where} is not a list of numbers [x1, y1, x2, y2, ...]")
    if len(value) % 2 or len(value) < 6:
        raise LabelError(f"{where} has {len(value)} numbers, not x, y pairs of 3 or more points")
    return array("d", value)


def _rle(value: JsonObject, where: str) -> list[int]:
    size = value.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(map(_positive_int, size))):
        raise LabelError(f"{where}.size: {size!r} is not [height, width]")
    pixels = size[0] * size[1]
    if pixels >= 2**63:  # counts are stored as 64-bit integers
        raise LabelError(f"{where}.size: {size!r} is too large for a mask")
    counts = value.get("counts")
    if isinstance(counts, str):
        try:
            counts = decode_rle_counts(counts)
        except ValueError as exc:
            raise LabelError(f"{where}.counts is not COCO's compressed RLE: {exc}") from None
    elif not (isinstance(counts, list) and all(_count(c) for c in counts)):
        raise LabelError(f"{where}.counts is neither a string nor a list of counts")
    if sum(counts) != pixels:
        raise LabelError(
            f"{where}: the counts add up to {sum(counts)}, not {size[0]}×{size[1]} = {pixels}"
        )
    return [int(c) for c in counts]


def _expand(stored: tuple[Any, ...], categories: dict[Any, str], label: JsonLabel) -> None:
    """Append one stored annotation's TensorBay entries to `label`."""
    category_id, instance, crowd, bbox, lengths, polygons, rle = stored
    category = categories[category_id]

    def entry(key: str, value: Any) -> JsonObject:
        attributes = {"iscrowd": True} if crowd else None
        return labeled(key, value, category=category, attributes=attributes, instance=instance)

    if bbox is not None:
        label["BOX2D"].append(entry("box2d", box2d(*_unpack("d", bbox))))
    if polygons is not None:
        coordinates, start = _unpack("d", polygons), 0
        for length in _unpack("q", lengths):
            flat = coordinates[start : start + length]
            label["POLYGON"].append(entry("polygon", polygon(flat)))
            start += length
    if rle is not None:
        label["RLE"].append(entry("rle", _unpack("q", rle)))


def _unpack(typecode: str, blob: bytes) -> list[Any]:
    values = array(typecode)
    values.frombytes(blob)
    return values.tolist()


def _mapping(value: Any, where: str) -> JsonObject:
    if not isinstance(value, dict):
        raise LabelError(f"{where} must be a JSON object, not {type(value).__name__}")
    return value


def _id(value: Any, where: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise LabelError(f"{where}: {value!r} is not an id (an integer or a string)")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:  # SQLite's integers
        raise LabelError(f"{where}: {value!r} is not an id (an integer or a string)")
    return value


def _numbers(values: list[Any]) -> bool:
    """Whether every value is a finite JSON number (bools are not numbers here); a number too
    large for a float parses as infinity."""
    if not set(map(type, values)) <= {int, float}:
        return False
    try:
        return all(map(math.isfinite, values))
    except OverflowError:  # an integer beyond any float
        return False


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
