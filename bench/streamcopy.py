"""Memory of streamed copies: peak RSS of a process copying objects below the multipart
threshold (one buffer each), `concurrency` at a time, against the bound object size ×
concurrency (issue 19 item 13). Each row runs in a fresh process.

    python -m bench streamcopy [--size-mb 32] [--concurrency 1 4 8] [--objects 16]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rich.console import Console

from bench.harness import new_table
from bench.procstat import MiB, child_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-mb", type=int, default=32, help="object size (MiB)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--objects", type=int, default=16)


def _child(size: int, concurrency: int, objects: int) -> dict[str, Any]:
    from importer.copier import CopyLimits, copy_object
    from storage_adapters.base import ObjectInfo
    from storage_adapters.memory import MemoryStore

    src = MemoryStore()
    block = os.urandom(size)
    for i in range(objects):  # one buffer shared by every source object: the baseline
        src.put(f"o{i}", block)

    class Discard:  # keeps nothing: only the copies' own memory counts
        capabilities = src.capabilities

        def can_copy_from(self, _source: object) -> bool:
            return False

        def put(self, key: str, data: bytes | bytearray) -> ObjectInfo:
            return ObjectInfo(key=key, size=len(data), md5=hashlib.md5(data).hexdigest())

    limits = CopyLimits(multipart_threshold=1 << 40, part_size=16 * MiB, max_single_copy_size=1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    infos = [src.head(f"o{i}") for i in range(objects)]
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda info: copy_object(src, Discard(), info, info.key, limits), infos))  # type: ignore[arg-type]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"extra": peak - base}


def run(args: argparse.Namespace, console: Console) -> int:
    size = args.size_mb * MiB
    table = new_table(
        f"streamed single copies of {args.size_mb} MiB objects",
        (
            "concurrency",
            "objects",
            "peak RSS added (MiB)",
            "bound size×conc (MiB)",
            "added ÷ bound",
        ),
    )
    for concurrency in args.concurrency:
        extra = child_json(
            "bench.streamcopy",
            "--child",
            str(size),
            str(concurrency),
            str(args.objects),
            what=f"streamed copies at concurrency {concurrency}",
        )["extra"]
        bound = size * concurrency
        table.add_row(
            str(concurrency),
            str(args.objects),
            f"{extra / MiB:.0f}",
            f"{bound / MiB:.0f}",
            f"{extra / bound:.2f}",
        )
    console.print(table)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    print(json.dumps(_child(*(int(a) for a in sys.argv[2:5]))))
