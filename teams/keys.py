"""Virtual key format and digests.

A key is ``sk-`` + an 8-character public prefix + a 43-character secret
(256 bits from ``secrets``). Only an HMAC-SHA256 digest of the whole key is
stored; the prefix and the last four characters identify it for people.
"""

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from django.conf import settings

KEY_SCHEME = "sk-"
PREFIX_LENGTH = 8
SECRET_BYTES = 32
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
# Longest key the gateway ever issues is 54 characters; anything much longer
# is not a key and is rejected before hashing.
MAX_KEY_LENGTH = 128


@dataclass(frozen=True)
class NewKey:
    plaintext: str
    prefix: str
    last_four: str
    digest: str


def digest_key(plaintext: str, secret: str | None = None) -> str:
    secret = secret if secret is not None else settings.KEY_DIGEST_SECRET
    return hmac.new(secret.encode(), plaintext.encode(), hashlib.sha256).hexdigest()


def generate_key() -> NewKey:
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    plaintext = f"{KEY_SCHEME}{prefix}{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewKey(
        plaintext=plaintext,
        prefix=prefix,
        last_four=plaintext[-4:],
        digest=digest_key(plaintext),
    )


def looks_like_key(candidate: str) -> bool:
    return (
        candidate.startswith(KEY_SCHEME)
        and len(candidate) <= MAX_KEY_LENGTH
        and candidate.isascii()
        and candidate.isprintable()
    )
