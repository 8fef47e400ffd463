"""What every import use case is handed: the DB, stores, task queue and settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

from bayport.settings import Settings
from importer.copier import CopyLimits
from importer.part_uploads import PartSlots
from importer.ports import Enqueuer, MetricsSink, NullMetrics, RequestCaps, StoreResolver
from metadata.db import Database
from storage_adapters.retry import RetryPolicy
from stores.throttle import Throttle

log = logging.getLogger("bayport.importer")


@dataclass(frozen=True)
class ImportContext:
    """Everything the use cases need, wired once by the composition root."""

    db: Database
    stores: StoreResolver
    enqueue: Enqueuer
    settings: Settings
    metrics: MetricsSink = field(default_factory=NullMetrics)
    # Jobs' caps (manifest options): held in Redis across all workers by the composition
    # root's Throttle; this default holds them per process.
    caps: RequestCaps = field(default_factory=lambda: Throttle(redis_url=None))

    @property
    def retry(self) -> RetryPolicy:
        s = self.settings
        metrics = self.metrics
        return RetryPolicy(
            attempts=s.retry_attempts,
            initial_wait=s.retry_initial_wait,
            max_wait=s.retry_max_wait,
            observer=lambda error, _attempt: metrics.retry(error.kind.value),
        )

    @cached_property
    def part_slots(self) -> PartSlots:
        """The process's one bound on the parts its streamed copies hold at once."""
        return PartSlots(self.settings.multipart_parts_in_flight)

    @property
    def copy_limits(self) -> CopyLimits:
        s = self.settings
        return CopyLimits(
            multipart_threshold=s.multipart_threshold,
            part_size=s.multipart_part_size,
            max_single_copy_size=s.max_single_copy_size,
            slots=self.part_slots,
        )
