"""Encryption of provider credentials at rest (Fernet; several keys allow rotation)."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBoxError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


class SecretKeyError(ValueError):
    """A configured secret key is not a Fernet key. The message says which one (by position),
    never the value."""


class SecretBox:
    """Encrypts with the first key, decrypts with any: add a new key in front to rotate.

    Rotation without downtime (README "Rotating the secret key"): every process first gets
    "old,new" (still sealing with old, opening both), then "new,old"; `bayport rotate-secrets`
    re-seals the stored rows under new; then old is dropped."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one secret key is required")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except ValueError:
                # `from None`: the cause's traceback would show the key.
                raise SecretKeyError(
                    f"BAYPORT_SECRET_KEY: key {position} of {len(keys)} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes)"
                ) from None
        self._newest = fernets[0]
        self._fernet = MultiFernet(fernets)

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

    def is_current(self, token: bytes) -> bool:
        """Whether the token is sealed with the newest key (rotation leaves it alone)."""
        try:
            self._newest.decrypt(token)
        except InvalidToken:
            return False
        return True

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt a token under the newest key."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise SecretBoxError(
                "stored credentials cannot be re-sealed: BAYPORT_SECRET_KEY does not hold "
                "the key they were sealed with"
            ) from exc


def mask(value: str) -> str:
    """A display hint of an identifier that is not itself secret ("AKIA…WXYZ")."""
    if len(value) <= 8:
        return "…" if value else ""
    return f"{value[:4]}…{value[-4:]}"
