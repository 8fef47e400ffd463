"""Bayport: the composition root, settings and shared plumbing of the import service."""
