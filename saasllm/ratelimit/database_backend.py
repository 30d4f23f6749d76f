"""Database backend for PostgreSQL and SQLite, used while REDIS_URL is empty.

Counters are rows incremented by one upsert statement, so concurrent
processes never lose an increment. Call slots are rows with an expiry,
counted and added under a per-team lock.
"""

import zlib
from datetime import UTC, datetime

from django.db import connection, transaction

from ratelimits.models import CallSlot, RateLimitCounter

# Class id (the first key) of the PostgreSQL advisory locks on call slots,
# which keeps them apart from advisory locks taken with other class ids.
SLOT_LOCK_CLASS_ID = 0x534C4F54


def _as_datetime(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC)


def _signed_int32(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


class DatabaseBackend:
    def count_request(
        self, *, team_id: str, limit: int, window_start: int
    ) -> int | None:
        kind = RateLimitCounter.Kind.REQUESTS
        with transaction.atomic():
            used = _add_to_counter(team_id, kind, window_start, 1, limit=limit)
            if used == 1:
                _delete_old_windows(team_id, kind, window_start)
        return used

    def read_tokens(self, *, team_id: str, window_start: int) -> int:
        used = (
            RateLimitCounter.objects.filter(
                team_id=team_id,
                kind=RateLimitCounter.Kind.TOKENS,
                window_started_at=_as_datetime(window_start),
            )
            .values_list("used_count", flat=True)
            .first()
        )
        return used or 0

    def add_tokens(self, *, team_id: str, tokens: int, window_start: int) -> None:
        kind = RateLimitCounter.Kind.TOKENS
        with transaction.atomic():
            used = _add_to_counter(team_id, kind, window_start, tokens)
            if used == tokens:
                _delete_old_windows(team_id, kind, window_start)

    def acquire_slot(
        self,
        *,
        team_id: str,
        limit: int,
        lease_id: str,
        now: float,
        expires_at: float,
        ttl_seconds: int,
    ) -> bool:
        with transaction.atomic():
            _lock_team_slots(team_id)
            slots = CallSlot.objects.filter(team_id=team_id)
            slots.filter(expires_at__lte=_as_datetime(now)).delete()
            if slots.count() >= limit:
                return False
            CallSlot.objects.create(
                id=lease_id,
                team_id=team_id,
                acquired_at=_as_datetime(now),
                expires_at=_as_datetime(expires_at),
            )
        return True

    def release_slot(self, *, team_id: str, lease_id: str) -> None:
        CallSlot.objects.filter(pk=lease_id, team_id=team_id).delete()


def _add_to_counter(
    team_id: str, kind: str, window_start: int, amount: int, *, limit: int | None = None
) -> int | None:
    """Add ``amount`` to the window's counter, creating it, and return the new count.

    With ``limit``, the counter is left unchanged and None returned when the
    sum would exceed it. ``amount`` alone must not exceed ``limit``.
    """
    meta = RateLimitCounter._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    team, kind_column, window, used = (
        quote(meta.get_field(name).column)
        for name in ("team", "kind", "window_started_at", "used_count")
    )
    condition = (
        f"WHERE {table}.{used} + excluded.{used} <= %s" if limit is not None else ""
    )
    # INSERT ... ON CONFLICT DO UPDATE ... RETURNING runs on PostgreSQL and
    # on SQLite 3.35 or later. The conflicting row is locked for the update,
    # so concurrent increments queue instead of overwriting each other.
    sql = (
        f"INSERT INTO {table} ({team}, {kind_column}, {window}, {used}) "
        "VALUES (%s, %s, %s, %s) "
        f"ON CONFLICT ({team}, {kind_column}, {window}) "
        f"DO UPDATE SET {used} = {table}.{used} + excluded.{used} {condition} "
        f"RETURNING {used}"
    )
    window_value = connection.ops.adapt_datetimefield_value(_as_datetime(window_start))
    params = [team_id, kind, window_value, amount]
    if limit is not None:
        params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else row[0]


def _delete_old_windows(team_id: str, kind: str, window_start: int) -> None:
    RateLimitCounter.objects.filter(
        team_id=team_id, kind=kind, window_started_at__lt=_as_datetime(window_start)
    ).delete()


def _lock_team_slots(team_id: str) -> None:
    """Serialize slot changes of one team until the transaction ends.

    PostgreSQL takes a transaction-scoped advisory lock keyed by the team.
    SQLite needs none: the project opens its transactions with BEGIN
    IMMEDIATE, which takes the database's write lock.
    """
    if connection.vendor != "postgresql":
        return
    team_key = _signed_int32(zlib.crc32(team_id.encode()))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [SLOT_LOCK_CLASS_ID, team_key]
        )
