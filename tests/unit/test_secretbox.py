"""Credentials sealed at rest: round trip, rotation, and a clear error for a wrong key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from crypto.secretbox import SecretBox, SecretBoxError, mask


def test_seal_is_not_plaintext_and_round_trips() -> None:
    box = SecretBox([Fernet.generate_key()])
    token = box.seal({"accesskey_secret": "s3cr3t-value"})
    assert b"s3cr3t-value" not in token
    assert box.open(token) == {"accesskey_secret": "s3cr3t-value"}


def test_rotation_keeps_old_tokens_readable() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    token = SecretBox([old]).seal({"k": "v"})
    rotated = SecretBox([new, old])
    assert rotated.open(token) == {"k": "v"}
    assert SecretBox([new]).open(rotated.rotate(token)) == {"k": "v"}


def test_wrong_key_is_a_clear_error() -> None:
    token = SecretBox([Fernet.generate_key()]).seal({"k": "v"})
    with pytest.raises(SecretBoxError, match="BAYPORT_SECRET_KEY"):
        SecretBox([Fernet.generate_key()]).open(token)


def test_mask() -> None:
    assert mask("AKIAABCDEFGHWXYZ") == "AKIA…WXYZ"
    assert "secret" not in mask("short")
