"""Admin endpoints for organizations, teams, keys and credit grants.

Every view here and in ``catalog.views`` derives from AdminView, which
admits only a request with a valid ``X-Admin-Key``.
"""

from contextlib import contextmanager

from django.db import IntegrityError, transaction
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from catalog.models import AccessGroup
from saasllm.authentication import AdminKeyAuthentication, IsPlatformAdmin
from saasllm.errors import Conflict, NotFound
from saasllm.pagination import LimitOffsetPagination
from teams import serializers
from teams.models import Organization, Team, VirtualKey
from teams.services import (
    allocate_credits,
    create_organization,
    create_team,
    issue_key,
    resume_team,
    set_team_access_groups,
    suspend_team,
    update_team,
)

ORGANIZATIONS_TAG = "admin: organizations"
TEAMS_TAG = "admin: teams"
CREDITS_TAG = "admin: credits"


class AdminView(GenericAPIView):
    """Admin endpoint: requires `X-Admin-Key: <MASTER_KEY>`, else returns 401."""

    authentication_classes = [AdminKeyAuthentication]
    permission_classes = [IsPlatformAdmin]
    pagination_class = LimitOffsetPagination

    @property
    def actor(self) -> str:
        """Name of the authenticated admin, for audit fields."""
        return self.request.user.name

    def paginated_response(self, queryset: QuerySet, serializer_class) -> Response:
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)


def validated_data(serializer_class, data, **kwargs) -> dict:
    """Validate ``data`` with the serializer and return its validated data."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def query_filters(request, serializer_class) -> dict:
    # A plain dict, because DRF reads a missing boolean in a QueryDict as
    # False instead of applying the field's default.
    return validated_data(serializer_class, request.query_params.dict())


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


class OrganizationCreateView(AdminView):
    @extend_schema(
        tags=[ORGANIZATIONS_TAG],
        request=serializers.OrganizationCreateSerializer,
        responses={201: serializers.OrganizationSerializer},
    )
    def post(self, request):
        data = validated_data(serializers.OrganizationCreateSerializer, request.data)

        message = f"Organization {data['organization_id']} already exists."
        with conflict_on_duplicate(message):
            organization = create_organization(**data)

        return Response(
            serializers.OrganizationSerializer(organization).data,
            status=status.HTTP_201_CREATED,
        )


class OrganizationListView(AdminView):
    @extend_schema(
        tags=[ORGANIZATIONS_TAG],
        responses=serializers.OrganizationSerializer(many=True),
    )
    def get(self, request):
        organizations = Organization.objects.order_by("id")
        return self.paginated_response(
            organizations, serializers.OrganizationSerializer
        )


class OrganizationDetailView(AdminView):
    @extend_schema(
        tags=[ORGANIZATIONS_TAG], responses=serializers.OrganizationSerializer
    )
    def get(self, request, organization_id: str):
        organization = Organization.objects.filter(pk=organization_id).first()
        if organization is None:
            raise NotFound(f"Organization {organization_id} not found.")
        return Response(serializers.OrganizationSerializer(organization).data)


class TeamCreateView(AdminView):
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
                actor=self.actor,
            )

        context = {"virtual_key": plaintext, "key": key}
        response = serializers.TeamCreatedSerializer(
            get_team_or_404(team.id), context=context
        )
        return Response(response.data, status=status.HTTP_201_CREATED)


class TeamListView(AdminView):
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


class TeamDetailView(AdminView):
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
        update_team(team_id=team.id, fields=data, access_groups=access_groups)

        return Response(serializers.TeamSerializer(get_team_or_404(team.id)).data)

    @extend_schema(
        tags=[TEAMS_TAG],
        request=serializers.TeamUpdateSerializer,
        responses=serializers.TeamSerializer,
    )
    def patch(self, request, team_id: str):
        return self.put(request, team_id)


class TeamSuspendView(AdminView):
    @extend_schema(tags=[TEAMS_TAG], request=None, responses=serializers.TeamSerializer)
    def put(self, request, team_id: str):
        require_team(team_id)
        suspend_team(team_id=team_id)
        return Response(serializers.TeamSerializer(get_team_or_404(team_id)).data)

    @extend_schema(tags=[TEAMS_TAG], request=None, responses=serializers.TeamSerializer)
    def post(self, request, team_id: str):
        return self.put(request, team_id)


class TeamResumeView(AdminView):
    @extend_schema(
        tags=[TEAMS_TAG],
        request=None,
        responses=serializers.TeamSerializer,
        description="Make a suspended or paused team active; 409 for any other.",
    )
    def put(self, request, team_id: str):
        require_team(team_id)
        resume_team(team_id=team_id)
        return Response(serializers.TeamSerializer(get_team_or_404(team_id)).data)

    @extend_schema(tags=[TEAMS_TAG], request=None, responses=serializers.TeamSerializer)
    def post(self, request, team_id: str):
        return self.put(request, team_id)


class TeamKeyCreateView(AdminView):
    @extend_schema(
        tags=[TEAMS_TAG],
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

        key, plaintext = issue_key(team=team, created_by=self.actor, **data)

        context = {"virtual_key": plaintext, "key": key}
        response = serializers.IssuedKeySerializer(team, context=context)
        return Response(response.data, status=status.HTTP_201_CREATED)


class TeamAccessGroupsView(AdminView):
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

        set_team_access_groups(team_id=team_id, access_groups=data["access_groups"])

        return Response(serializers.TeamSerializer(get_team_or_404(team_id)).data)


class CreditAddView(AdminView):
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
            actor=self.actor,
        )

        return Response(serializers.CreditAddResultSerializer(entry).data)
