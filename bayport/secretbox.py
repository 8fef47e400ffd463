"""Encryption of provider credentials at rest (Fernet; several keys allow rotation)."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBoxError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


class SecretBox:
    """Encrypts with the first key, decrypts with any: add a new key in front to rotate."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one secret key is required")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def seal(self, values: dict[str, str]) -> bytes:
        return self._fernet.encrypt(json.dumps(values, sort_keys=True).encode())

    def open(self, token: bytes) -> dict[str, str]:
        try:
            data = json.loads(self._fernet.decrypt(token))
        except InvalidToken as exc:
            raise SecretBoxError(
                "stored credentials cannot be decrypted: BAYPORT_SECRET_KEY does not hold "
                "the key they were sealed with"
            ) from exc
        return {str(k): str(v) for k, v in data.items()}

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt a token under the newest key."""
        return self._fernet.rotate(token)


def mask(value: str) -> str:
    """A display hint of an identifier that is not itself secret ("AKIA…WXYZ")."""
    if len(value) <= 8:
        return "…" if value else ""
    return f"{value[:4]}…{value[-4:]}"
