"""Where a listing stands between pages: the cursor a planning resumes from, kept in the job."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass

from importer.rules import remote_path
from storage_adapters.base import ObjectInfo


@dataclass(frozen=True)
class Walk:
    """Where a listing stands: the provider's cursor, the last key planned (a sync walks
    the ledger beside the listing, in the same byte order), and whether the listing has
    kept that order (if not, comparisons look keys up one by one and nothing is deleted)."""

    cursor: str | None = None
    last: str | None = None  # remote path of the last listed object
    ordered: bool = True
    upto: str | None = None  # this page's last remote path; None on the last page
    fresh: bool = True
    done: bool = False  # the last page is planned: the listing is over

    @classmethod
    def decode(cls, raw: str | None) -> Walk:
        if raw is None:
            return cls()
        cursor, last, ordered, *rest = json.loads(raw)
        return cls(
            cursor=cursor, last=last, ordered=ordered, fresh=False, done=bool(rest[:1] == [True])
        )

    def encode(self) -> str:
        return json.dumps([self.cursor, self.upto, self.ordered, self.done])

    def next(self) -> Walk:
        """The walk for the page after this one."""
        return Walk(cursor=self.cursor, last=self.upto, ordered=self.ordered, fresh=False)

    def advance(self, objects: Sequence[ObjectInfo], prefix: str, cursor: str | None) -> Walk:
        """The walk after `objects`, a page that `cursor` resumes after."""
        rels = [remote_path(o.key, prefix) for o in objects]
        seq = ([self.last] if self.last is not None else []) + rels
        ordered = self.ordered and all(a < b for a, b in itertools.pairwise(seq))
        upto = rels[-1] if rels else self.last
        return Walk(
            cursor=cursor,
            last=self.last,
            ordered=ordered,
            upto=upto if cursor is not None else None,
            fresh=False,
            done=cursor is None,
        )
