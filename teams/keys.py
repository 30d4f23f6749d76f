"""Virtual key format, digests and lifecycle states.

A key is ``sk-`` + an 8-character public prefix + a 43-character secret
(256 bits from ``secrets``). Only a keyed digest of the whole key is stored;
the prefix and the last four characters identify it for people.

A stored digest reads ``<secret id>:<HMAC-SHA256, base64url>``. The secret id
is a short fingerprint of the digest secret that produced it, so the gateway
can tell which keys still carry a digest under a previous secret, much as
Django's password hashes name their hasher. The fingerprint is an HMAC
output and reveals nothing usable about the secret.
"""

import base64
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

KEY_SCHEME = "sk-"
PREFIX_LENGTH = 8
SECRET_BYTES = 32
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
# Characters of secrets.token_urlsafe, and so of a key's last four.
SECRET_ALPHABET = string.ascii_letters + string.digits + "-_"
# Keys the gateway issues are 54 characters long. Anything much longer is not
# a key and is rejected before hashing.
MAX_KEY_LENGTH = 128
SECRET_ID_LENGTH = 8
SECRET_ID_MESSAGE = b"saasllm virtual key digest secret id"

# How long a rotated key keeps working next to its successor by default, and
# at most. A longer overlap would defeat the point of rotating.
DEFAULT_GRACE_PERIOD = timedelta(hours=24)
MAX_GRACE_PERIOD = timedelta(days=30)


@dataclass(frozen=True)
class NewKey:
    plaintext: str
    prefix: str
    last_four: str
    digest: str


def digest_secret_id(secret: str) -> str:
    """Return the fingerprint that marks digests made under ``secret``."""
    mac = hmac.new(secret.encode(), SECRET_ID_MESSAGE, hashlib.sha256)
    return mac.hexdigest()[:SECRET_ID_LENGTH]


def digest_key(plaintext: str, secret: str | None = None) -> str:
    """Return the stored form of a key's digest under ``secret``.

    The default secret is KEY_DIGEST_SECRET. The result is 52 characters,
    which fits the 64-character digest column.
    """
    secret = secret if secret is not None else settings.KEY_DIGEST_SECRET
    mac = hmac.new(secret.encode(), plaintext.encode(), hashlib.sha256).digest()
    encoded = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    return f"{digest_secret_id(secret)}:{encoded}"


def previous_digest_secrets() -> list[str]:
    """Return the secrets of KEY_DIGEST_PREVIOUS_SECRETS other than the current one."""
    current = settings.KEY_DIGEST_SECRET
    configured = getattr(settings, "KEY_DIGEST_PREVIOUS_SECRETS", [])
    return [secret for secret in configured if secret and secret != current]


def candidate_digests(plaintext: str) -> list[str]:
    """Return the key's digest under the current secret, then under each previous one."""
    secrets_in_order = [settings.KEY_DIGEST_SECRET, *previous_digest_secrets()]
    return [digest_key(plaintext, secret) for secret in secrets_in_order]


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


def parse_key_reference(reference: str) -> tuple[str, str | None]:
    """Split a prefix (``ab12cd34``), ``sk-ab12cd34`` or a display into its parts.

    A display such as ``sk-ab12cd34...wxyz`` also yields the last four
    characters; the other forms yield None for them. Anything else, a whole
    key included, raises ValueError with a message that does not repeat it.
    """
    text = reference.strip().removeprefix(KEY_SCHEME)
    prefix, separator, last_four = text.partition("...")
    is_prefix = len(prefix) == PREFIX_LENGTH and set(prefix) <= set(PREFIX_ALPHABET)
    is_last_four = len(last_four) == 4 and set(last_four) <= set(SECRET_ALPHABET)
    if not is_prefix or (separator and not is_last_four):
        raise ValueError(
            "Expected a key prefix such as ab12cd34 or a key display such as "
            "sk-ab12cd34...wxyz."
        )
    return prefix, last_four or None


class KeyState(models.TextChoices):
    """The stage of a key's life, derived from its dates at a given moment.

    ``expiring`` is a key that still works but has an expiry date, such as
    a rotated key in its grace period or a key issued with ``expires_at``.
    """

    ACTIVE = "active"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    REVOKED = "revoked"


def key_state(key, now: datetime) -> KeyState:
    if key.revoked_at is not None:
        return KeyState.REVOKED
    if key.expires_at is None:
        return KeyState.ACTIVE
    if key.expires_at <= now:
        return KeyState.EXPIRED
    return KeyState.EXPIRING


def key_state_filter(state: str, now: datetime) -> Q:
    """Return the VirtualKey filter that selects keys in ``state`` at ``now``."""
    unrevoked = Q(revoked_at__isnull=True)
    if state == KeyState.ACTIVE:
        return unrevoked & Q(expires_at__isnull=True)
    if state == KeyState.EXPIRING:
        return unrevoked & Q(expires_at__gt=now)
    if state == KeyState.EXPIRED:
        return unrevoked & Q(expires_at__lte=now)
    if state == KeyState.REVOKED:
        return Q(revoked_at__isnull=False)
    raise ValueError(f"Unknown key state '{state}'.")


def usable_key_filter(now: datetime) -> Q:
    """Return the filter of keys that authenticate at ``now``: active or expiring."""
    return key_state_filter(KeyState.ACTIVE, now) | key_state_filter(
        KeyState.EXPIRING, now
    )
