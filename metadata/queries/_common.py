"""What the query modules share: the job states that are final, the ledger outcomes that
leave an object present in its segment."""

from __future__ import annotations

from metadata.models import FINAL_STATES, Outcome

FINAL_STATE_VALUES = [s.value for s in FINAL_STATES]

PRESENT = [
    Outcome.COPIED.value,
    Outcome.REGISTERED.value,
    Outcome.SKIPPED.value,
    Outcome.RELABELLED.value,
]
PRESENT_OUTCOMES = frozenset(PRESENT)
