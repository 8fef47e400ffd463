"""Devstack: the servers and sample data for development, tests, benchmarks and `bayport demo`.

Product code (api, tensorbay_api, importer, metadata, storage_adapters, labels, scheduler,
workers, bayport) never imports it; the CLI's demo and standalone commands, tests/ and bench/ do
(the import-linter contracts in pyproject.toml hold that line).
"""
