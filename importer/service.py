"""The import use cases, one import away for the entry points (API, Celery tasks, CLI).

Each takes its collaborators (an ImportContext: a Database, a StoreResolver, an Enqueuer and
the settings) as arguments; the modules behind it hold the logic:
`jobs` (submit, finalize, cancel, retry), `planner` (list and shard), `shards` (copy),
`object_import` (one object of a shard), `rules` (pure planning rules), `copier` (one object
between two stores).
"""

from importer.context import ImportContext
from importer.finish import abandon_planning
from importer.jobs import (
    cancel_import,
    job_progress,
    ledger_row_public,
    retry_import,
    submit_import,
)
from importer.planner import plan_import
from importer.shards import ShardResult, abandon_shard, copy_shard

__all__ = [
    "ImportContext",
    "ShardResult",
    "abandon_planning",
    "abandon_shard",
    "cancel_import",
    "copy_shard",
    "job_progress",
    "ledger_row_public",
    "plan_import",
    "retry_import",
    "submit_import",
]
