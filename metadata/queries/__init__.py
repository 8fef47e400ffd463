"""Queries on the metadata DB, one module per aggregate (workspaces, storage configs, datasets
and segments, jobs, leases, the ledger, job reports, labels, notes, drafts, schedules). Helpers
take a session and keyword arguments; none commits (only the unit of work does, metadata/db.py)."""
