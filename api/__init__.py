"""The submission and query HTTP API (FastAPI): a thin entry point over the import logic."""
