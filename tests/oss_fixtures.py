"""Fixtures for the oss test server (filled in with its adapter)."""
