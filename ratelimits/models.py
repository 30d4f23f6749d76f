"""Rows of the database rate-limit backend, used while REDIS_URL is empty.

Only ``saasllm.ratelimit`` reads or writes these rows.
"""

import uuid

from django.db import models


class RateLimitCounter(models.Model):
    """Units a team used in one fixed one-minute window: requests or tokens.

    ``used_count`` changes only through an atomic upsert, so concurrent
    workers and instances never lose an increment.
    """

    class Kind(models.TextChoices):
        REQUESTS = "requests"
        TOKENS = "tokens"

    team = models.ForeignKey(
        "teams.Team", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=10, choices=Kind)
    window_started_at = models.DateTimeField()
    used_count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "kind", "window_started_at"],
                name="ratelimitcounter_window_unique",
            )
        ]

    def __str__(self):
        return f"{self.team_id} {self.kind} {self.window_started_at}: {self.used_count}"


class CallSlot(models.Model):
    """A provider call in progress, counted against ``max_concurrent_calls``.

    The slot is deleted when the call ends. A slot whose process died stops
    counting at ``expires_at``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(
        "teams.Team", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(
                fields=["team", "expires_at"], name="callslot_team_expires_idx"
            )
        ]

    def __str__(self):
        return f"{self.team_id} slot {self.id}"
