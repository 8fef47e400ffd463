"""The kinds of notes a planning leaves on a job, the reasons it counts, its error codes."""

from __future__ import annotations

LABEL_CHANGED = "label_changed"
# Counted with the job's left_out: objects a sync could not compare by ETag, copied again.
COMPARED_WITHOUT_ETAG = "copied_again_without_etag"
# Noted (kind UNIMPORTED_KEY, listed at /v1/imports/{id}/unimported) and counted, not lost
# unseen: keys ending in '/' that hold data, and objects that share one label file.
UNIMPORTED_KEY = "unimported_key"
FOLDER_KEY_WITH_DATA = "folder_keys_with_data"
SHARED_LABEL = "objects_sharing_a_label_file"

DELETE_CANDIDATE = "delete_candidate"
REJECTED_ROW = "rejected_row"
# The error code of a source key no dataset should hold (see importer.rules.key_problem).
UNSAFE_KEY = "unsafe_key"
