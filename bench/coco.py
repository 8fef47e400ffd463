"""Indexing a COCO file with flat memory: time and peak RSS of `CocoIndex.build`.

Writes a COCO instances file (20,000 images and 100,000 annotations, and a tenth of that) to a
temporary folder one item at a time, never as one dict: each annotation has a bbox and, as in
COCO, mostly polygon segmentations, some uncompressed RLE (crowds) and some compressed RLE
strings. Then each size is indexed in a fresh Python process, which reports the seconds and
the peak RSS of `CocoIndex.build` (the kernel's VmHWM, reset just before, checked against a
sampling thread), then reads every image's label back with `label_for`.

Memory is flat when the growth is about the same at both sizes: the annotations go to the
SQLite file as they stream by.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from rich.console import Console

from bench.harness import new_table, peak_rss, timed
from bench.procstat import MiB, child_json
from labels.formats.coco import CocoIndex, encode_rle_counts

SIZES = (10_000, 100_000)
ANNOTATIONS_PER_IMAGE = 5
CATEGORIES = 80
WIDTH, HEIGHT = 640, 480
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CocoResult:
    annotations: int
    images: int
    file_bytes: int
    seconds: float  # CocoIndex.build
    rss_before: int
    peak_rss: int  # VmHWM reset just before build (or the sampler's peak if higher)
    index_bytes: int
    indexed: int  # annotations the index holds, as a check
    lookup_seconds: float  # label_for of every image, after build
    labels_read: int  # BOX2D entries label_for gave back, as a check


def write_coco(path: Path, *, annotations: int, seed: int = 0) -> int:
    """A COCO instances file with `annotations` annotations over a fifth as many images,
    written item by item; its size in bytes."""
    rng = random.Random(seed)
    images = max(1, annotations // ANNOTATIONS_PER_IMAGE)
    with path.open("w", encoding="utf-8") as out:
        out.write('{"info": {"description": "bayport bench"}, "images": [')
        _write_items(
            out,
            (
                {"id": i, "file_name": f"{i:012d}.jpg", "width": WIDTH, "height": HEIGHT}
                for i in range(1, images + 1)
            ),
        )
        out.write('], "annotations": [')
        _write_items(out, (_annotation(rng, n, 1 + n % images) for n in range(1, annotations + 1)))
        out.write('], "categories": [')
        _write_items(
            out,
            (
                {"id": c, "name": f"category-{c}", "supercategory": "thing"}
                for c in range(1, CATEGORIES + 1)
            ),
        )
        out.write("]}")
    return path.stat().st_size


def _write_items(out: TextIO, items: Iterable[object]) -> None:
    for n, item in enumerate(items):
        out.write(("," if n else "") + json.dumps(item, separators=(",", ":")))


def _annotation(rng: random.Random, n: int, image_id: int) -> dict[str, object]:
    w, h = round(rng.uniform(8, 300), 2), round(rng.uniform(8, 300), 2)
    x, y = round(rng.uniform(0, WIDTH - w), 2), round(rng.uniform(0, HEIGHT - h), 2)
    kind = rng.random()
    segmentation: object
    if kind < 0.85:  # polygons, as most COCO objects: one or two of 8-24 points
        segmentation = [
            [round(rng.uniform(0, WIDTH if i % 2 == 0 else HEIGHT), 2) for i in range(points * 2)]
            for points in rng.choices(range(8, 25), k=rng.choice((1, 1, 1, 2)))
        ]
    else:  # crowds: RLE over the image, uncompressed or as COCO's compressed string
        counts = _runs(rng, WIDTH * HEIGHT)
        size = [HEIGHT, WIDTH]
        packed = encode_rle_counts(counts) if kind < 0.95 else counts
        segmentation = {"size": size, "counts": packed}
    return {
        "id": n,
        "image_id": image_id,
        "category_id": 1 + n % CATEGORIES,
        "bbox": [x, y, w, h],
        "area": round(w * h, 2),
        "iscrowd": int(kind >= 0.85),
        "segmentation": segmentation,
    }


def _runs(rng: random.Random, pixels: int) -> list[int]:
    """20-60 alternating runs adding up to `pixels`."""
    cuts = sorted(rng.sample(range(1, pixels), rng.randrange(20, 60)))
    return [b - a for a, b in zip([0, *cuts], [*cuts, pixels], strict=True)]


def index_once(coco_path: Path, annotations: int, images: int) -> CocoResult:
    """Build the index of `coco_path` and read every label back; meant for a fresh process."""
    with tempfile.TemporaryDirectory(prefix="bayport-bench-coco-index-") as tmp:
        db_path = Path(tmp) / "coco.sqlite"
        with peak_rss() as memory, coco_path.open("rb") as stream:
            index = CocoIndex.build(stream, db_path)
        labels_read = 0
        with timed() as lookups:
            for name in index.file_names():
                label = index.label_for(name) or {}
                labels_read += len(label.get("BOX2D", []))
        indexed = index.annotation_count
        index.close()
        return CocoResult(
            annotations=annotations,
            images=images,
            file_bytes=coco_path.stat().st_size,
            seconds=memory.seconds,
            rss_before=memory.rss_before,
            peak_rss=memory.peak_rss,
            index_bytes=db_path.stat().st_size,
            indexed=indexed,
            lookup_seconds=lookups.seconds,
            labels_read=labels_read,
        )


def measure(annotations: int, workdir: Path) -> CocoResult:
    """Write a COCO file of `annotations` annotations, then index it in a fresh interpreter."""
    coco_path = workdir / f"instances-{annotations}.json"
    write_coco(coco_path, annotations=annotations)
    result = child_json(
        "bench.coco",
        "--child",
        str(coco_path),
        str(annotations),
        what=f"indexing {annotations} annotations",
    )
    coco_path.unlink()
    return CocoResult(**result)


def render(results: list[CocoResult], console: Console) -> None:
    table = new_table(
        "CocoIndex.build of a generated COCO file (ijson → SQLite)",
        ("annotations", "images", "file MB", "seconds", "annotations/s", "peak RSS growth (MiB)",
         "index MB", "label_for all images (s)"),
    )  # fmt: skip
    for r in results:
        table.add_row(
            f"{r.annotations:,}",
            f"{r.images:,}",
            f"{r.file_bytes / 1e6:.1f}",
            f"{r.seconds:.2f}",
            f"{r.annotations / r.seconds:,.0f}",
            f"{(r.peak_rss - r.rss_before) / MiB:.1f}",
            f"{r.index_bytes / 1e6:.1f}",
            f"{r.lookup_seconds:.2f}",
        )
    console.print(table)
    for r in results:
        if r.indexed != r.annotations or r.labels_read != r.annotations:
            console.print(
                f"[red]warning: {r.annotations:,} annotations: indexed {r.indexed:,}, "
                f"label_for gave {r.labels_read:,} boxes"
            )
    console.print(
        "peak RSS growth = the kernel's high-water mark (VmHWM) reset just before build, "
        "minus RSS then. Flat memory: about the same growth at every size."
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=SIZES,
        help="annotation counts, comma-separated (default 10000,100000)",
    )


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    results = []
    with tempfile.TemporaryDirectory(prefix="bayport-bench-coco-") as tmp:
        for annotations in args.sizes:
            console.print(f"indexing {annotations:,} annotations in a fresh process ...")
            results.append(measure(annotations, Path(tmp)))
    render(results, console)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.coco", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child is not None:
        path, count = Path(arguments.child[0]), int(arguments.child[1])
        result = index_once(path, count, max(1, count // ANNOTATIONS_PER_IMAGE))
        print(json.dumps(asdict(result)))
    else:
        sys.exit(run(arguments, Console(width=max(Console().width, 120))))
