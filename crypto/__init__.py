"""Secrets at rest: the Fernet box that seals provider credentials in the DB (secretbox.py)."""
