"""Planning a job: list the source page by page and write shards, resumably.

`plan` takes the planning's lease and picks the source; `listing` plans a listing page by
page (with `walk`, the cursor kept between pages), `sync` compares each page with the ledger,
`deletions` plans what is gone from the source, `sources` plans a retry's failures, an object
list or a TensorBay client's objects, `coco` reads a COCO file once, and `writer` writes the
planned objects as shards. `notes` names the notes a planning leaves on a job.
"""

from importer.planner.coco import load_coco_labels
from importer.planner.deletions import deletion_guard
from importer.planner.listing import add_left_out
from importer.planner.notes import (
    COMPARED_WITHOUT_ETAG,
    DELETE_CANDIDATE,
    FOLDER_KEY_WITH_DATA,
    LABEL_CHANGED,
    REJECTED_ROW,
    SHARED_LABEL,
    UNIMPORTED_KEY,
    UNSAFE_KEY,
)
from importer.planner.plan import plan_import
from importer.planner.sync import Verdict

__all__ = [
    "COMPARED_WITHOUT_ETAG",
    "DELETE_CANDIDATE",
    "FOLDER_KEY_WITH_DATA",
    "LABEL_CHANGED",
    "REJECTED_ROW",
    "SHARED_LABEL",
    "UNIMPORTED_KEY",
    "UNSAFE_KEY",
    "Verdict",
    "add_left_out",
    "deletion_guard",
    "load_coco_labels",
    "plan_import",
]
