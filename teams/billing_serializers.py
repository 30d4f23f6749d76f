"""Team-facing shapes of a team's credit balance and ledger.

Nothing here shows the team's markup or any provider price.
"""

from rest_framework import serializers

from saasllm.pagination import LimitOffsetPagination
from teams.models import CreditTransaction, Team


class BalanceSerializer(serializers.ModelSerializer):
    team_id = serializers.CharField(source="id")
    organization_id = serializers.CharField()
    credits_remaining = serializers.IntegerField()
    credits_available = serializers.IntegerField()
    refill_period = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = [
            "team_id",
            "organization_id",
            "status",
            "credits_allocated",
            "credits_used",
            "credits_remaining",
            "credits_held",
            "credits_available",
            "budget_mode",
            "credits_per_dollar",
            "tokens_per_credit",
            "auto_refill_enabled",
            "refill_amount",
            "refill_period",
            "last_refill_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_refill_period(self, team: Team) -> str | None:
        return team.refill_period or None


class TransactionSerializer(serializers.ModelSerializer):
    """A ledger row, whose ``credits_amount`` is the signed change of the balance."""

    transaction_id = serializers.UUIDField(source="id")
    transaction_type = serializers.CharField(source="type")
    credits_amount = serializers.IntegerField(source="amount")
    credits_before = serializers.IntegerField(source="balance_before")
    credits_after = serializers.IntegerField(source="balance_after")
    job_id = serializers.UUIDField(allow_null=True)

    class Meta:
        model = CreditTransaction
        fields = [
            "transaction_id",
            "transaction_type",
            "credits_amount",
            "credits_before",
            "credits_after",
            "job_id",
            "reason",
            "created_at",
        ]
        read_only_fields = fields


class TransactionQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1,
        max_value=LimitOffsetPagination.max_limit,
        default=LimitOffsetPagination.default_limit,
    )
    offset = serializers.IntegerField(min_value=0, default=0)


class CreditCheckQuerySerializer(serializers.Serializer):
    credits_needed = serializers.IntegerField(min_value=1, default=1)


# Response shapes, for the OpenAPI schema, of the bodies the views build.


class TransactionPageResponse(serializers.Serializer):
    team_id = serializers.CharField()
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = TransactionSerializer(many=True)


class CreditCheckResponse(serializers.Serializer):
    team_id = serializers.CharField()
    has_credits = serializers.BooleanField(
        help_text="Whether credits_available covers credits_needed."
    )
    credits_available = serializers.IntegerField()
    credits_remaining = serializers.IntegerField()
    credits_needed = serializers.IntegerField()
