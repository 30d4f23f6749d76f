"""Encryption of provider credentials at rest (Fernet, rotatable).

ENCRYPTION_KEY is a comma list of Fernet keys. New ciphertexts use the first
entry; every entry can decrypt, so a new key can be put in front while old
ciphertexts are re-encrypted.
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionFailed(Exception):
    """A ciphertext does not decrypt under any ENCRYPTION_KEY entry."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt_secret(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt_secret(ciphertext: str) -> str:
    try:
        return _current().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed(
            "The credential does not decrypt under any ENCRYPTION_KEY entry."
        ) from None


def reencrypt_secret(ciphertext: str) -> str:
    """Return the ciphertext encrypted under the newest key."""
    try:
        return _current().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed(
            "The credential does not decrypt under any ENCRYPTION_KEY entry."
        ) from None
