"""Per-process cache of the catalog data that every call reads.

A call needs the aliases its team may use, the alias rows with their
routing settings and prices, and the decrypted provider credentials of the
team's organization. Administrators change these rarely, so each process
keeps them in memory and, per call, reads one row instead of running two
or three catalog queries.

Invalidation: ``CatalogVersion`` has one row with a random token, and every
change of the catalog replaces the token in the change's own transaction.
The catalog services replace it as their first statement, so concurrent
service calls queue on that one row lock before they lock any other row,
which rules out deadlocks between them. Signal receivers
(``catalog.signals``) replace it again after every save, delete and many-to-many change of
aliases, access groups, credentials and team membership, which covers the
Django admin and direct ORM saves. Each call reads the token with one
primary-key query before it uses the cache, and a token that differs from
the cached one drops the cache. So in every process of every instance, a
call uses every change that committed before it read the token.

The token is a database row rather than a Redis key because the check is
one round trip either way, while the row commits or rolls back together
with the change. So no invalidation is lost when Redis is down or a
process dies between the commit and a publish, and it works on SQLite
without Redis.

``QuerySet.update()``, ``bulk_create()`` and raw SQL send no signals, so
code that changes the catalog that way must call ``bump_catalog_version``.
As a safety net for such writes, a cache older than MAX_AGE_SECONDS is
dropped anyway.

Key validity and team or organization status are never cached: the key
lookup of each request reads them.
"""

import functools
import time
import uuid
from dataclasses import dataclass, field

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from catalog.crypto import DecryptionFailed, decrypt_secret
from catalog.models import AccessGroup, CatalogVersion, ModelAlias, ProviderCredential
from catalog.pricing import Prices, prices_for_alias

# Seconds after which a process reloads the catalog even if the token did
# not change, so a write that skipped bump_catalog_version is seen by then.
MAX_AGE_SECONDS = 60.0


def read_catalog_version() -> uuid.UUID | None:
    """Return the current catalog token, or None when the row is missing.

    Every call runs this, so it is written as SQL rather than compiled from
    a queryset each time.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute(version_sql(connection.vendor), [CatalogVersion.SINGLETON_ID])
        row = cursor.fetchone()
    # SQLite returns the token as text, PostgreSQL as a UUID.
    return None if row is None else uuid.UUID(str(row[0]))


@functools.cache
def version_sql(vendor: str) -> str:
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    meta = CatalogVersion._meta
    return (
        f"SELECT {quote(meta.get_field('token').column)} "
        f"FROM {quote(meta.db_table)} WHERE {quote(meta.pk.column)} = %s"
    )


def bump_catalog_version(*, using: str | None = None) -> None:
    """Give the catalog a new token, in the caller's transaction if there is one.

    One upsert statement, so it also recreates the row after a flush. It
    holds the row's lock until the caller's transaction ends.
    """
    CatalogVersion.objects.using(using or DEFAULT_DB_ALIAS).bulk_create(
        [
            CatalogVersion(
                id=CatalogVersion.SINGLETON_ID,
                token=uuid.uuid4(),
                changed_at=timezone.now(),
            )
        ],
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=["token", "changed_at"],
    )


@dataclass(frozen=True)
class CachedCredential:
    """An active provider credential with its key decrypted.

    ``api_key`` is None when the stored ciphertext does not decrypt under
    ENCRYPTION_KEY. It is left out of ``repr``, so logging a credential
    does not print it.
    """

    id: uuid.UUID
    api_key: str | None = field(repr=False)
    api_base: str
    api_version: str


class CatalogSnapshot:
    """The catalog as of one token, loaded piece by piece on first use.

    Each piece is loaded after the token was read, so it is at least as new
    as the token. Two threads may load the same piece at once, but both
    results are valid and the last one stays, so no lock is needed.
    """

    def __init__(self, token: uuid.UUID | None):
        self.token = token
        self.loaded_at = time.monotonic()
        self._aliases: dict[str, ModelAlias] | None = None
        self._team_aliases: dict[str, frozenset[str]] = {}
        self._credentials: dict[str, dict[str, CachedCredential]] = {}
        self._prices: dict[str, Prices] = {}

    def is_expired(self) -> bool:
        return time.monotonic() - self.loaded_at > MAX_AGE_SECONDS

    def active_aliases(self) -> dict[str, ModelAlias]:
        """Return every active alias by name.

        The instances are shared by concurrent calls and must not be changed.
        """
        if self._aliases is None:
            active = ModelAlias.objects.filter(status=ModelAlias.Status.ACTIVE)
            self._aliases = {alias.alias: alias for alias in active}
        return self._aliases

    def team_alias_names(self, team_id: str) -> frozenset[str]:
        """Return the names of the active aliases the team's active groups grant."""
        names = self._team_aliases.get(team_id)
        if names is None:
            granted = ModelAlias.objects.filter(
                status=ModelAlias.Status.ACTIVE,
                access_groups__status=AccessGroup.Status.ACTIVE,
                access_groups__teams=team_id,
            ).values_list("alias", flat=True)
            names = frozenset(granted)
            self._team_aliases[team_id] = names
        return names

    def credentials(self, organization_id: str) -> dict[str, CachedCredential]:
        """Return the organization's active credentials by provider."""
        by_provider = self._credentials.get(organization_id)
        if by_provider is None:
            active = ProviderCredential.objects.filter(
                organization_id=organization_id, is_active=True
            ).only("id", "provider", "encrypted_api_key", "api_base", "api_version")
            by_provider = {
                credential.provider: _decrypted(credential) for credential in active
            }
            self._credentials[organization_id] = by_provider
        return by_provider

    def prices(self, alias: ModelAlias) -> Prices:
        """Return the prices of an alias of this snapshot."""
        prices = self._prices.get(alias.alias)
        if prices is None:
            prices = prices_for_alias(alias)
            self._prices[alias.alias] = prices
        return prices


def _decrypted(credential: ProviderCredential) -> CachedCredential:
    try:
        api_key = decrypt_secret(credential.encrypted_api_key)
    except DecryptionFailed:
        api_key = None
    return CachedCredential(
        id=credential.id,
        api_key=api_key,
        api_base=credential.api_base,
        api_version=credential.api_version,
    )


_current: CatalogSnapshot | None = None


def current_catalog() -> CatalogSnapshot:
    """Return this process's snapshot of the current catalog.

    Runs one query, which reads the token. Without the version row (a test database just flushed) nothing is
    cached: each call gets a snapshot of its own.
    """
    global _current
    token = read_catalog_version()
    if token is None:
        return CatalogSnapshot(None)
    snapshot = _current
    if snapshot is None or snapshot.token != token or snapshot.is_expired():
        snapshot = CatalogSnapshot(token)
        _current = snapshot
    return snapshot


def clear_catalog_cache() -> None:
    """Drop this process's snapshot, so the next call reloads the catalog."""
    global _current
    _current = None
