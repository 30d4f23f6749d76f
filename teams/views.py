"""Admin endpoints for organizations, teams, keys, credits and billing settings.

Every view here derives from ``TeamsAdminView``, an ``AdminView`` that admits
only the master key or a staff user with the model permission. The services
these views call record their own audit entries, inside the transaction of
the change, so the views record no request-level entry.
"""

from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from catalog.models import AccessGroup
from saasllm.errors import Conflict, NotFound
from saasllm.views import AdminView, query_filters, validated_data
from teams import serializers
from teams.keys import key_state_filter
from teams.models import Organization, Team, VirtualKey
from teams.services import (
    adjust_credits,
    allocate_credits,
    configure_auto_refill,
    create_organization,
    create_team,
    get_team_key,
    issue_key,
    pause_team,
    refund_job,
    replenish_credits,
    resume_team,
    revoke_key,
    rotate_key,
    set_organization_status,
    set_team_access_groups,
    suspend_team,
    update_organization,
    update_team,
)

ORGANIZATIONS_TAG = "admin: organizations"
TEAMS_TAG = "admin: teams"
CREDITS_TAG = "admin: credits"
KEYS_TAG = "admin: keys"
KEY_ID_PARAMETER = OpenApiParameter(
    "prefix",
    str,
    OpenApiParameter.PATH,
    description="The key's id: its prefix, the 8 characters after sk-.",
)


@contextmanager
def conflict_on_duplicate(message: str):
    """Turn a unique-constraint violation inside the block into 409.

    create_organization and create_team let the database reject a duplicate
    id, so the race between two identical requests ends in one 409 here.
    """
    try:
        with transaction.atomic():
            yield
    except IntegrityError:
        raise Conflict(message, code="already_exists") from None


def team_queryset() -> QuerySet:
    """Teams with everything TeamSerializer reads, in four queries per page."""
    groups = AccessGroup.objects.order_by("name").prefetch_related("aliases")
    keys = VirtualKey.objects.order_by("created_at", "id")
    return Team.objects.prefetch_related(
        Prefetch("access_groups", queryset=groups),
        Prefetch("keys", queryset=keys),
    ).order_by("id")


def get_team_or_404(team_id: str) -> Team:
    team = team_queryset().filter(pk=team_id).first()
    if team is None:
        raise NotFound(f"Team {team_id} not found.")
    return team


def require_team(team_id: str) -> None:
    if not Team.objects.filter(pk=team_id).exists():
        raise NotFound(f"Team {team_id} not found.")


class TeamsAdminView(AdminView):
    """Base of the views here, whose services record the audit entries."""

    record_request_audit = False


class OrganizationCreateView(TeamsAdminView):
    permission_model = "teams.Organization"
    audit_action = "organization.create"

    @extend_schema(
        tags=[ORGANIZATIONS_TAG],
        request=serializers.OrganizationCreateSerializer,
        responses={201: serializers.OrganizationSerializer},
    )
    def post(self, request):
        data = validated_data(serializers.OrganizationCreateSerializer, request.data)

        message = f"Organization {data['organization_id']} already exists."
        with conflict_on_duplicate(message):
            organization = create_organization(**data, actor=self.audit_actor)

        return Response(
            serializers.OrganizationSerializer(organization).data,
            status=status.HTTP_201_CREATED,
        )


class OrganizationListView(TeamsAdminView):
    permission_model = "teams.Organization"

    @extend_schema(
        tags=[ORGANIZATIONS_TAG],
        responses=serializers.OrganizationSerializer(many=True),
    )
    def get(self, request):
        organizations = Organization.objects.order_by("id")
        return self.paginated_response(
            organizations, serializers.OrganizationSerializer
        )


class OrganizationDetailView(TeamsAdminView):
    permission_model = "teams.Organization"

    @extend_schema(
        tags=[ORGANIZATIONS_TAG], responses=serializers.OrganizationSerializer
    )
    def get(self, request, organization_id: str):
        organization = Organization.objects.filter(pk=organization_id).first()
        if organization is None:
            raise NotFound(f"Organization {organization_id} not found.")
        return Response(serializers.OrganizationSerializer(organization).data)

    @extend_schema(
        tags=[ORGANIZATIONS_TAG],
        request=serializers.OrganizationUpdateSerializer,
        responses=serializers.OrganizationSerializer,
    )
    def patch(self, request, organization_id: str):
        data = validated_data(serializers.OrganizationUpdateSerializer, request.data)
        organization = update_organization(
            organization_id=organization_id, **data, actor=self.audit_actor
        )
        return Response(serializers.OrganizationSerializer(organization).data)

    @extend_schema(
        tags=[ORGANIZATIONS_TAG],
        request=serializers.OrganizationUpdateSerializer,
        responses=serializers.OrganizationSerializer,
    )
    def put(self, request, organization_id: str):
        return self.patch(request, organization_id)


class TeamCreateView(TeamsAdminView):
    permission_model = "teams.Team"
    audit_action = "team.create"

    @extend_schema(
        tags=[TEAMS_TAG],
        request=serializers.TeamCreateSerializer,
        responses={201: serializers.TeamCreatedSerializer},
        description=(
            "Create a team with its first key. The key is returned in "
            "`virtual_key` by this response only; store it now."
        ),
    )
    def post(self, request):
        data = validated_data(serializers.TeamCreateSerializer, request.data)

        with conflict_on_duplicate(f"Team {data['team_id']} already exists."):
            team, key, plaintext = create_team(
                organization=data["organization"],
                team_id=data["team_id"],
                name=data.get("name", ""),
                access_groups=data["access_groups"],
                credits=data["credits_allocated"],
                budget_mode=data.get("budget_mode", Team.BudgetMode.JOB_BASED),
                credits_per_dollar=data.get("credits_per_dollar"),
                tokens_per_credit=data.get("tokens_per_credit"),
                metadata=data.get("metadata"),
                actor=self.audit_actor,
            )

        context = {"virtual_key": plaintext, "key": key}
        response = serializers.TeamCreatedSerializer(
            get_team_or_404(team.id), context=context
        )
        return Response(response.data, status=status.HTTP_201_CREATED)


class TeamListView(TeamsAdminView):
    permission_model = "teams.Team"

    @extend_schema(
        tags=[TEAMS_TAG],
        parameters=[serializers.TeamFilterSerializer],
        responses=serializers.TeamSerializer(many=True),
    )
    def get(self, request):
        filters = query_filters(request, serializers.TeamFilterSerializer)

        teams = team_queryset()
        if "organization_id" in filters:
            teams = teams.filter(organization_id=filters["organization_id"])
        if "status" in filters:
            teams = teams.filter(status=filters["status"])
        return self.paginated_response(teams, serializers.TeamSerializer)


class TeamDetailView(TeamsAdminView):
    permission_model = "teams.Team"
    audit_action = "team.update"

    @extend_schema(tags=[TEAMS_TAG], responses=serializers.TeamSerializer)
    def get(self, request, team_id: str):
        return Response(serializers.TeamSerializer(get_team_or_404(team_id)).data)

    @extend_schema(
        tags=[TEAMS_TAG],
        request=serializers.TeamUpdateSerializer,
        responses=serializers.TeamSerializer,
        description=(
            "Change a team's settings; every field is optional. Balances are "
            "rejected: use the credits endpoints."
        ),
    )
    def put(self, request, team_id: str):
        team = get_team_or_404(team_id)
        data = validated_data(
            serializers.TeamUpdateSerializer, request.data, instance=team, partial=True
        )

        access_groups = data.pop("access_groups", None)
        update_team(
            team_id=team.id,
            fields=data,
            access_groups=access_groups,
            actor=self.audit_actor,
        )

        return Response(serializers.TeamSerializer(get_team_or_404(team.id)).data)

    @extend_schema(
        tags=[TEAMS_TAG],
        request=serializers.TeamUpdateSerializer,
        responses=serializers.TeamSerializer,
    )
    def patch(self, request, team_id: str):
        return self.put(request, team_id)


class TeamSuspendView(TeamsAdminView):
    permission_model = "teams.Team"
    required_permissions = {"POST": "teams.change_team"}
    audit_action = "team.suspend"

    @extend_schema(tags=[TEAMS_TAG], request=None, responses=serializers.TeamSerializer)
    def put(self, request, team_id: str):
        require_team(team_id)
        suspend_team(team_id=team_id, actor=self.audit_actor)
        return Response(serializers.TeamSerializer(get_team_or_404(team_id)).data)

    @extend_schema(tags=[TEAMS_TAG], request=None, responses=serializers.TeamSerializer)
    def post(self, request, team_id: str):
        return self.put(request, team_id)


class TeamResumeView(TeamsAdminView):
    permission_model = "teams.Team"
    required_permissions = {"POST": "teams.change_team"}
    audit_action = "team.resume"

    @extend_schema(
        tags=[TEAMS_TAG],
        request=None,
        responses=serializers.TeamSerializer,
        description="Make a suspended or paused team active; 409 for any other.",
    )
    def put(self, request, team_id: str):
        require_team(team_id)
        resume_team(team_id=team_id, actor=self.audit_actor)
        return Response(serializers.TeamSerializer(get_team_or_404(team_id)).data)

    @extend_schema(tags=[TEAMS_TAG], request=None, responses=serializers.TeamSerializer)
    def post(self, request, team_id: str):
        return self.put(request, team_id)


class TeamPauseView(TeamsAdminView):
    permission_model = "teams.Team"
    required_permissions = {"POST": "teams.change_team"}
    audit_action = "team.pause"

    @extend_schema(
        tags=[TEAMS_TAG],
        request=None,
        responses=serializers.TeamSerializer,
        description="Pause an active team: its keys get 403 team_paused until resumed.",
    )
    def put(self, request, team_id: str):
        require_team(team_id)
        pause_team(team_id=team_id, actor=self.audit_actor)
        return Response(serializers.TeamSerializer(get_team_or_404(team_id)).data)

    @extend_schema(tags=[TEAMS_TAG], request=None, responses=serializers.TeamSerializer)
    def post(self, request, team_id: str):
        return self.put(request, team_id)


class OrganizationStatusView(TeamsAdminView):
    """Suspend or resume an organization and with it the use of all its teams."""

    permission_model = "teams.Organization"
    required_permissions = {"POST": "teams.change_organization"}

    status: str = ""

    @extend_schema(
        tags=[ORGANIZATIONS_TAG],
        request=None,
        responses=serializers.OrganizationSerializer,
    )
    def put(self, request, organization_id: str):
        organization = set_organization_status(
            organization_id=organization_id,
            status=self.status,
            actor=self.audit_actor,
        )
        return Response(serializers.OrganizationSerializer(organization).data)

    @extend_schema(
        tags=[ORGANIZATIONS_TAG],
        request=None,
        responses=serializers.OrganizationSerializer,
    )
    def post(self, request, organization_id: str):
        return self.put(request, organization_id)


class TeamKeysView(TeamsAdminView):
    permission_model = "teams.VirtualKey"
    audit_action = "key.issue"

    @extend_schema(
        tags=[KEYS_TAG],
        parameters=[serializers.KeyFilterSerializer],
        responses=serializers.KeyDetailSerializer(many=True),
        description=(
            "List the team's keys, oldest first, without the keys themselves. "
            "`state` is active, expiring (still valid, with an expiry date), "
            "expired or revoked."
        ),
    )
    def get(self, request, team_id: str):
        require_team(team_id)
        filters = query_filters(request, serializers.KeyFilterSerializer)

        keys = VirtualKey.objects.filter(team_id=team_id).order_by("created_at", "id")
        if "state" in filters:
            keys = keys.filter(key_state_filter(filters["state"], timezone.now()))
        return self.paginated_response(keys, serializers.KeyDetailSerializer)

    @extend_schema(
        tags=[KEYS_TAG],
        request=serializers.KeyCreateSerializer,
        responses={201: serializers.IssuedKeySerializer},
        description=(
            "Issue another key for the team. The key is returned in "
            "`virtual_key` by this response only."
        ),
    )
    def post(self, request, team_id: str):
        team = Team.objects.filter(pk=team_id).first()
        if team is None:
            raise NotFound(f"Team {team_id} not found.")
        data = validated_data(serializers.KeyCreateSerializer, request.data)

        key, plaintext = issue_key(team=team, actor=self.audit_actor, **data)

        context = {"virtual_key": plaintext, "key": key}
        response = serializers.IssuedKeySerializer(team, context=context)
        return Response(response.data, status=status.HTTP_201_CREATED)


class TeamKeyDetailView(TeamsAdminView):
    permission_model = "teams.VirtualKey"

    @extend_schema(
        tags=[KEYS_TAG],
        parameters=[KEY_ID_PARAMETER],
        responses=serializers.KeyDetailSerializer,
    )
    def get(self, request, team_id: str, prefix: str):
        key = get_team_key(team_id=team_id, prefix=prefix)
        return Response(serializers.KeyDetailSerializer(key).data)


class TeamKeyRotateView(TeamsAdminView):
    permission_model = "teams.VirtualKey"
    required_permissions = {"POST": ("teams.add_virtualkey", "teams.change_virtualkey")}
    audit_action = "key.rotate"

    @extend_schema(
        tags=[KEYS_TAG],
        parameters=[KEY_ID_PARAMETER],
        request=serializers.KeyRotateSerializer,
        responses={201: serializers.RotatedKeySerializer},
        description=(
            "Issue a successor to the key. The new key is returned in "
            "`virtual_key` by this response only. The old key keeps working "
            "for `grace_period_hours` (default 24; 0 revokes it at once) "
            "unless it was due to expire sooner. The new key keeps the old "
            "key's expiry date. A revoked or expired key is 409."
        ),
    )
    def post(self, request, team_id: str, prefix: str):
        key = get_team_key(team_id=team_id, prefix=prefix)
        data = validated_data(serializers.KeyRotateSerializer, request.data)

        new_key, plaintext = rotate_key(
            key=key,
            grace_period=timedelta(hours=data["grace_period_hours"]),
            actor=self.audit_actor,
            name=data["name"],
        )

        key.refresh_from_db()
        rotation = {"new_key": new_key, "old_key": key, "virtual_key": plaintext}
        response = serializers.RotatedKeySerializer(rotation)
        return Response(response.data, status=status.HTTP_201_CREATED)


class TeamKeyRevokeView(TeamsAdminView):
    permission_model = "teams.VirtualKey"
    required_permissions = {"POST": "teams.change_virtualkey"}
    audit_action = "key.revoke"

    @extend_schema(
        tags=[KEYS_TAG],
        parameters=[KEY_ID_PARAMETER],
        request=None,
        responses=serializers.KeyDetailSerializer,
        description=(
            "Revoke the key: the next request with it gets 401 on every "
            "worker. Revoking a revoked key returns it unchanged."
        ),
    )
    def post(self, request, team_id: str, prefix: str):
        key = get_team_key(team_id=team_id, prefix=prefix)

        key = revoke_key(key=key, actor=self.audit_actor)

        return Response(serializers.KeyDetailSerializer(key).data)


class TeamAccessGroupsView(TeamsAdminView):
    permission_model = "teams.Team"
    audit_action = "team.update"

    @extend_schema(
        tags=[TEAMS_TAG],
        request=serializers.TeamAccessGroupsSerializer,
        responses=serializers.TeamSerializer,
        description=(
            "Replace the team's access groups. The body is a list of group "
            'names, or an object `{"access_groups": [...]}`.'
        ),
    )
    def put(self, request, team_id: str):
        require_team(team_id)
        body = request.data
        if isinstance(body, list):
            body = {"access_groups": body}
        data = validated_data(serializers.TeamAccessGroupsSerializer, body)

        set_team_access_groups(
            team_id=team_id,
            access_groups=data["access_groups"],
            actor=self.audit_actor,
        )

        return Response(serializers.TeamSerializer(get_team_or_404(team_id)).data)


class CreditAddView(TeamsAdminView):
    permission_model = "teams.CreditTransaction"
    audit_action = "credits.add"

    @extend_schema(
        tags=[CREDITS_TAG],
        request=serializers.CreditAddSerializer,
        responses=serializers.CreditAddResultSerializer,
        description="Add credits to a team; every grant is a ledger row.",
    )
    def post(self, request, team_id: str):
        require_team(team_id)
        data = validated_data(serializers.CreditAddSerializer, request.data)

        entry = allocate_credits(
            team_id=team_id,
            amount=data["credits"],
            reason=data["reason"] or "Credits added by an administrator",
            actor=self.audit_actor,
        )

        return Response(serializers.CreditAddResultSerializer(entry).data)


class CreditReplenishView(TeamsAdminView):
    permission_model = "teams.CreditTransaction"
    audit_action = "credits.replenish"

    @extend_schema(
        tags=[CREDITS_TAG],
        request=serializers.ReplenishSerializer,
        responses=serializers.ReplenishResultSerializer,
        description=(
            "Add paid credits to a team. The ledger row is a subscription_payment "
            "or one_time_payment with the USD amount; a subscription also sets "
            "last_refill_at. credits_before and credits_after are the remaining "
            "balance."
        ),
    )
    def post(self, request, team_id: str):
        require_team(team_id)
        data = validated_data(serializers.ReplenishSerializer, request.data)

        entry = replenish_credits(
            team_id=team_id,
            credits=data["credits"],
            payment_type=data["payment_type"],
            payment_amount_usd=data["payment_amount_usd"],
            reason=data["reason"],
            actor=self.audit_actor,
        )

        return Response(serializers.ReplenishResultSerializer(entry).data)


class CreditRefundView(TeamsAdminView):
    permission_model = "teams.CreditTransaction"
    audit_action = "credits.refund"

    @extend_schema(
        tags=[CREDITS_TAG],
        request=serializers.RefundSerializer,
        responses=serializers.RefundResultSerializer,
        description=(
            "Give back the credits a job of the team was charged. A job can be "
            "refunded once: a second refund is 409 already_refunded, a job "
            "charged nothing is 409 nothing_to_refund."
        ),
    )
    def post(self, request, team_id: str):
        require_team(team_id)
        data = validated_data(serializers.RefundSerializer, request.data)

        entry = refund_job(
            team_id=team_id,
            job_id=data["job_id"],
            reason=data["reason"],
            actor=self.audit_actor,
        )

        return Response(serializers.RefundResultSerializer(entry).data)


class CreditAdjustView(TeamsAdminView):
    permission_model = "teams.CreditTransaction"
    audit_action = "credits.adjust"

    @extend_schema(
        tags=[CREDITS_TAG],
        request=serializers.AdjustSerializer,
        responses=serializers.AdjustResultSerializer,
        description=(
            "Correct a team's credits by a signed amount, with a reason. A "
            "removal that would leave fewer than zero available credits is 409 "
            "insufficient_balance unless allow_negative is true."
        ),
    )
    def post(self, request, team_id: str):
        require_team(team_id)
        data = validated_data(serializers.AdjustSerializer, request.data)

        entry = adjust_credits(team_id=team_id, actor=self.audit_actor, **data)

        return Response(serializers.AdjustResultSerializer(entry).data)


class BudgetModeView(TeamsAdminView):
    permission_model = "teams.Team"
    audit_action = "team.update"

    @extend_schema(
        tags=[CREDITS_TAG],
        request=serializers.BudgetModeSerializer,
        responses=serializers.ConversionRatesSerializer,
        description="Set how the team's jobs are charged, and optionally its rates.",
    )
    def patch(self, request, team_id: str):
        require_team(team_id)
        data = validated_data(serializers.BudgetModeSerializer, request.data)

        team = update_team(team_id=team_id, fields=data, actor=self.audit_actor)

        return Response(serializers.ConversionRatesSerializer(team).data)


class ConversionRatesView(TeamsAdminView):
    permission_model = "teams.Team"
    audit_action = "team.update"

    @extend_schema(tags=[CREDITS_TAG], responses=serializers.ConversionRatesSerializer)
    def get(self, request, team_id: str):
        team = Team.objects.filter(pk=team_id).first()
        if team is None:
            raise NotFound(f"Team {team_id} not found.")
        return Response(serializers.ConversionRatesSerializer(team).data)

    @extend_schema(
        tags=[CREDITS_TAG],
        request=serializers.ConversionRatesUpdateSerializer,
        responses=serializers.ConversionRatesSerializer,
        description="Change the team's conversion rates; send at least one.",
    )
    def patch(self, request, team_id: str):
        require_team(team_id)
        data = validated_data(serializers.ConversionRatesUpdateSerializer, request.data)

        team = update_team(team_id=team_id, fields=data, actor=self.audit_actor)

        return Response(serializers.ConversionRatesSerializer(team).data)


class AutoRefillView(TeamsAdminView):
    permission_model = "teams.Team"
    required_permissions = {"POST": "teams.change_team"}
    audit_action = "team.update"

    @extend_schema(
        tags=[CREDITS_TAG],
        request=serializers.AutoRefillSerializer,
        responses=serializers.AutoRefillResultSerializer,
        description=(
            "Turn automatic refills on or off. Enabling needs refill_amount and "
            "refill_period, in the request or stored before. The refill_credits "
            "command adds refill_amount once per UTC period."
        ),
    )
    def post(self, request, team_id: str):
        require_team(team_id)
        data = validated_data(serializers.AutoRefillSerializer, request.data)

        team = configure_auto_refill(team_id=team_id, **data, actor=self.audit_actor)

        return Response(serializers.AutoRefillResultSerializer(team).data)


class TeamMarkupView(TeamsAdminView):
    permission_model = "teams.Team"
    audit_action = "team.update"

    @extend_schema(
        tags=[TEAMS_TAG],
        request=serializers.MarkupSerializer,
        responses=serializers.MarkupResultSerializer,
        description="Set the percent added to provider costs, from 0 to 1000.",
    )
    def patch(self, request, team_id: str):
        require_team(team_id)
        data = validated_data(serializers.MarkupSerializer, request.data)

        team = update_team(team_id=team_id, fields=data, actor=self.audit_actor)

        return Response(serializers.MarkupResultSerializer(team).data)
