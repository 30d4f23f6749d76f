"""Team-facing credit endpoints: balance, ledger and a credit check.

Each takes the team from the URL and accepts only the key's own team.
"""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from jobs.report_views import TEAM_ERRORS, OwnTeamView, validated_query
from saasllm.pagination import LimitOffsetPagination
from teams.billing_serializers import (
    BalanceSerializer,
    CreditCheckQuerySerializer,
    CreditCheckResponse,
    TransactionPageResponse,
    TransactionQuerySerializer,
    TransactionSerializer,
)
from teams.models import CreditTransaction

BILLING_TAG = "credits"


@extend_schema(tags=[BILLING_TAG])
class BalanceView(OwnTeamView):
    @extend_schema(
        responses={200: BalanceSerializer, **TEAM_ERRORS},
        description=(
            "The team's credits. credits_available is what new jobs can use: the "
            "remaining credits minus those held by open jobs."
        ),
    )
    def get(self, request, team_id: str):
        return Response(BalanceSerializer(request.user).data)


@extend_schema(tags=[BILLING_TAG])
class TransactionListView(OwnTeamView):
    @extend_schema(
        parameters=[TransactionQuerySerializer],
        responses={200: TransactionPageResponse, **TEAM_ERRORS},
        description="The team's credit ledger, newest first.",
    )
    def get(self, request, team_id: str):
        validated_query(TransactionQuerySerializer, request)

        paginator = LimitOffsetPagination()
        transactions = CreditTransaction.objects.filter(
            team_id=request.user.id
        ).order_by("-created_at", "-id")
        page = paginator.paginate_queryset(transactions, request, view=self)

        return Response(
            {
                "team_id": request.user.id,
                "count": paginator.count,
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "results": TransactionSerializer(page, many=True).data,
            }
        )


@extend_schema(tags=[BILLING_TAG])
class CreditCheckView(OwnTeamView):
    @extend_schema(
        request=None,
        parameters=[CreditCheckQuerySerializer],
        responses={200: CreditCheckResponse, **TEAM_ERRORS},
        description=(
            "Whether the team's available credits (remaining minus those held by "
            "open jobs) cover credits_needed. Always 200 for a valid request."
        ),
    )
    def post(self, request, team_id: str):
        needed = validated_query(CreditCheckQuerySerializer, request)["credits_needed"]

        team = request.user
        return Response(
            {
                "team_id": team.id,
                "has_credits": team.credits_available >= needed,
                "credits_available": team.credits_available,
                "credits_remaining": team.credits_remaining,
                "credits_needed": needed,
            }
        )
