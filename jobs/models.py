import uuid

from django.db import models
from django.db.models import Q


class Job(models.Model):
    """One business operation of a team, grouping its LLM calls."""

    class Status(models.TextChoices):
        PENDING = "pending"
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    OPEN_STATUSES = (Status.PENDING, Status.IN_PROGRESS)
    CLOSED_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(
        "teams.Team", on_delete=models.PROTECT, related_name="jobs"
    )
    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.PROTECT, related_name="jobs"
    )
    user_id = models.CharField(max_length=255, blank=True)
    job_type = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=Status, default=Status.PENDING)
    metadata = models.JSONField(default=dict, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    credits_held = models.BigIntegerField(default=0)
    credit_applied = models.BooleanField(default=False)
    credits_charged = models.BigIntegerField(default=0)
    # Call admission: calls admitted so far, calls waiting on a provider, and
    # the credits the job's successful calls have accrued (consumption modes,
    # unrounded). Changed only by jobs.services under the job's row lock.
    call_count = models.PositiveIntegerField(default=0)
    calls_in_flight = models.PositiveIntegerField(default=0)
    accrued_credits = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    # Estimated credits of the calls in flight, reserved within the hold.
    credits_reserved = models.DecimalField(max_digits=20, decimal_places=10, default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="job_created_idx"),
            models.Index(fields=["team", "-created_at"], name="job_team_created_idx"),
            models.Index(
                fields=["team", "status", "-created_at"], name="job_team_status_idx"
            ),
            models.Index(
                fields=["organization", "-created_at"], name="job_org_created_idx"
            ),
            models.Index(
                fields=["created_at"],
                condition=Q(status__in=["pending", "in_progress"]),
                name="job_open_created_idx",
            ),
        ]

    def __str__(self):
        return f"{self.job_type} {self.id}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


# Columns of a call that the reports count and sum. "id" is there because
# Count("id") reads it.
TOTALS_COLUMNS = (
    "id",
    "error_code",
    "total_tokens",
    "client_cost_usd",
    "provider_cost_usd",
)


class LLMCall(models.Model):
    """One provider request made inside a job.

    ``provider`` and ``provider_model`` are for operators only: team-facing
    responses name the alias. Prices are the USD per million tokens in force
    when the call was made, so later price changes never rewrite history.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="calls")
    team = models.ForeignKey(
        "teams.Team", on_delete=models.PROTECT, related_name="calls"
    )
    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.PROTECT, related_name="calls"
    )
    alias = models.CharField(max_length=100)
    provider = models.CharField(max_length=30)
    provider_model = models.CharField(max_length=200)
    purpose = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    input_price_per_million = models.DecimalField(
        max_digits=14, decimal_places=6, default=0
    )
    output_price_per_million = models.DecimalField(
        max_digits=14, decimal_places=6, default=0
    )
    provider_cost_usd = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    client_cost_usd = models.DecimalField(max_digits=20, decimal_places=10, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    attempt_count = models.PositiveSmallIntegerField(default=1)
    # The alias whose provider produced the reply, or the last one tried when
    # the call failed: the requested alias unless a fallback served it.
    served_by = models.CharField(max_length=100, blank=True)
    streamed = models.BooleanField(default=False)
    # True when the provider reported no usage and the tokens were counted
    # by the gateway.
    usage_estimated = models.BooleanField(default=False)
    finish_reason = models.CharField(max_length=50, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    # The provider's own error text, for operators only; never sent to teams.
    error_detail = models.TextField(blank=True)
    request_data = models.JSONField(null=True, blank=True)
    response_data = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            # The INCLUDE columns are the ones the dashboard and analytics
            # reports sum, so PostgreSQL runs them as index-only scans.
            models.Index(
                fields=["-created_at"],
                include=TOTALS_COLUMNS,
                name="llmcall_created_totals_idx",
            ),
            # A team's usage report reaches calls through their jobs, and its
            # sums then read only this index.
            models.Index(
                fields=["job", "created_at"],
                include=(
                    *TOTALS_COLUMNS,
                    "prompt_tokens",
                    "completion_tokens",
                    "latency_ms",
                    "team",
                ),
                name="llmcall_job_totals_idx",
            ),
            models.Index(
                fields=["team", "-created_at"], name="llmcall_team_created_idx"
            ),
            models.Index(
                fields=["organization", "-created_at"],
                include=(
                    *TOTALS_COLUMNS,
                    "team",
                    "alias",
                    "provider",
                    "provider_model",
                ),
                name="llmcall_org_totals_idx",
            ),
        ]
        verbose_name = "LLM call"

    def __str__(self):
        return f"{self.alias} call {self.id}"

    @property
    def succeeded(self) -> bool:
        return not self.error_code
