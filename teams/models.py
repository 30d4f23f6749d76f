import uuid

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q

slug_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
    "Use 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit.",
)


class Organization(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    id = models.CharField(primary_key=True, max_length=100, validators=[slug_validator])
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status, default=Status.ACTIVE)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status"], name="organization_status_idx")]

    def __str__(self):
        return self.id


class Team(models.Model):
    """A team and its credit account.

    Credits are whole units. ``credits_remaining`` is derived as allocated
    minus used; ``credits_held`` counts the holds of open jobs, which the
    team cannot spend elsewhere. Balance fields change only through
    ``teams.services``, with a ledger row for every change of the remaining
    balance.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"
        PAUSED = "paused"

    class RefillPeriod(models.TextChoices):
        DAILY = "daily"
        WEEKLY = "weekly"
        MONTHLY = "monthly"

    class BudgetMode(models.TextChoices):
        JOB_BASED = "job_based"
        CONSUMPTION_USD = "consumption_usd"
        CONSUMPTION_TOKENS = "consumption_tokens"

    id = models.CharField(primary_key=True, max_length=100, validators=[slug_validator])
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="teams"
    )
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status, default=Status.ACTIVE)
    access_groups = models.ManyToManyField(
        "catalog.AccessGroup", related_name="teams", blank=True
    )
    metadata = models.JSONField(default=dict, blank=True)
    credits_allocated = models.BigIntegerField(default=0)
    credits_used = models.BigIntegerField(default=0)
    credits_held = models.BigIntegerField(default=0)
    budget_mode = models.CharField(
        max_length=30, choices=BudgetMode, default=BudgetMode.JOB_BASED
    )
    credits_per_dollar = models.DecimalField(
        max_digits=12, decimal_places=4, default=10
    )
    tokens_per_credit = models.PositiveIntegerField(default=10000)
    markup_percent = models.DecimalField(max_digits=7, decimal_places=2, default=0)
    max_calls_per_job = models.PositiveIntegerField(default=500)
    # Rate limits; empty means unlimited.
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_concurrent_calls = models.PositiveIntegerField(null=True, blank=True)
    auto_refill_enabled = models.BooleanField(default=False)
    refill_amount = models.PositiveIntegerField(null=True, blank=True)
    refill_period = models.CharField(
        max_length=10, choices=RefillPeriod, blank=True, default=""
    )
    last_refill_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["organization", "id"], name="team_org_idx"),
            models.Index(fields=["status"], name="team_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(credits_held__gte=0), name="team_credits_held_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(credits_per_dollar__gt=0),
                name="team_credits_per_dollar_positive",
            ),
            models.CheckConstraint(
                condition=Q(tokens_per_credit__gt=0),
                name="team_tokens_per_credit_positive",
            ),
            models.CheckConstraint(
                condition=Q(markup_percent__gte=0), name="team_markup_non_negative"
            ),
        ]

    def __str__(self):
        return self.id

    @property
    def credits_remaining(self) -> int:
        return self.credits_allocated - self.credits_used

    @property
    def credits_available(self) -> int:
        return self.credits_allocated - self.credits_used - self.credits_held


# Expression for the spendable balance, for atomic conditional updates.
CREDITS_AVAILABLE = F("credits_allocated") - F("credits_used") - F("credits_held")


class VirtualKey(models.Model):
    """A team's API key, stored only as a keyed digest.

    The whole key is shown once, when it is issued. ``prefix`` and
    ``last_four`` identify it afterwards in lists, logs and the admin.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16)
    last_four = models.CharField(max_length=4)
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["team_id", "created_at"]
        indexes = [
            models.Index(fields=["team", "created_at"], name="virtualkey_team_idx")
        ]
        constraints = [
            # The prefix is the key's public id in URLs and commands.
            models.UniqueConstraint(fields=["prefix"], name="virtualkey_prefix_unique"),
        ]

    def __str__(self):
        return self.display

    @property
    def display(self) -> str:
        return f"sk-{self.prefix}...{self.last_four}"


class CreditTransaction(models.Model):
    """One append-only ledger row per change of a team's remaining balance.

    ``amount`` is the signed change of the remaining balance, so the sum of a
    team's rows equals its remaining balance. ``balance_before`` and
    ``balance_after`` are the remaining balance around the change.
    """

    class Type(models.TextChoices):
        ALLOCATION = "allocation"
        DEDUCTION = "deduction"
        REFUND = "refund"
        ADJUSTMENT = "adjustment"
        SUBSCRIPTION_PAYMENT = "subscription_payment"
        ONE_TIME_PAYMENT = "one_time_payment"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(
        Team, on_delete=models.PROTECT, related_name="transactions"
    )
    job = models.ForeignKey(
        "jobs.Job",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="transactions",
    )
    type = models.CharField(max_length=30, choices=Type)
    amount = models.BigIntegerField()
    balance_before = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    reason = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=150, blank=True)
    payment_amount_usd = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True
    )
    # Identifies the refill period ("monthly:2026-12") of an automatic
    # refill; unique per team, so a period is refilled at most once.
    refill_period_key = models.CharField(max_length=30, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="credittx_created_idx"),
            models.Index(
                fields=["team", "-created_at"], name="credittx_team_created_idx"
            ),
            models.Index(fields=["job"], name="credittx_job_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(balance_after=F("balance_before") + F("amount")),
                name="credittx_balance_consistent",
            ),
            models.UniqueConstraint(
                fields=["job"],
                condition=Q(type="deduction"),
                name="credittx_one_deduction_per_job",
            ),
            models.UniqueConstraint(
                fields=["job"],
                condition=Q(type="refund"),
                name="credittx_one_refund_per_job",
            ),
            models.UniqueConstraint(
                fields=["team", "refill_period_key"],
                condition=~Q(refill_period_key=""),
                name="credittx_one_refill_per_period",
            ),
        ]

    def __str__(self):
        return f"{self.type} {self.amount:+d} ({self.team_id})"
