"""Fixtures for the azure test server (filled in with its adapter)."""
