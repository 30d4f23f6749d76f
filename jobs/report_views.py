"""Usage reports for teams, and job reports and analytics for administrators.

Team-facing views take the team from the URL and accept only the key's own
team. Admin views name providers, provider costs and margins.
"""

import calendar
import re
import uuid
from datetime import date

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from jobs import reports
from jobs.models import Job, LLMCall
from jobs.serializers import ErrorResponse
from jobs.views import TeamAPIView
from saasllm.errors import NotFound, ValidationFailed
from saasllm.views import AdminView
from teams.models import Organization, Team
from teams.serializers import CaseInsensitiveChoiceField

USAGE_TAG = "usage"
REPORTS_TAG = "admin: reports"

MONTH_PATTERN = re.compile(r"\d{4}-\d{2}")
DAY_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
JOB_ID_PREFIX_PATTERN = re.compile(r"[0-9a-fA-F-]{1,36}")
# Positions of the dashes in a UUID's canonical text.
UUID_DASH_POSITIONS = (8, 13, 18, 23)


def team_not_found(team_id: str) -> NotFound:
    return NotFound(f"Team '{team_id}' not found.", code="team_not_found")


def validated_query(serializer_class, request) -> dict:
    """Validate the query string with the serializer, or raise 422.

    An empty parameter (``?status=``), as HTML forms send, counts as absent.
    """
    params = {name: value for name, value in request.query_params.items() if value}
    serializer = serializer_class(data=params)
    if not serializer.is_valid():
        raise ValidationFailed(serializer.errors, "The query parameters are invalid.")
    return serializer.validated_data


class OwnTeamView(TeamAPIView):
    """Base of team-facing endpoints whose URL names a team, which must be the key's.

    Another team's id gets the same 404 as an unknown one, so a key cannot
    learn which teams exist.
    """

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if kwargs["team_id"] != request.user.id:
            raise team_not_found(kwargs["team_id"])


# Query parameters


@extend_schema_field(OpenApiTypes.STR)
class PeriodField(serializers.Field):
    """A month ``YYYY-MM`` or a day ``YYYY-MM-DD``, read as the days it covers."""

    default_error_messages = {
        "required": "Send a period: YYYY-MM for a month or YYYY-MM-DD for a day.",
        "invalid": (
            "'{value}' is not a valid period. Use YYYY-MM for a month or "
            "YYYY-MM-DD for a day."
        ),
    }

    def to_internal_value(self, data):
        text = str(data).strip()
        try:
            if MONTH_PATTERN.fullmatch(text):
                first = date.fromisoformat(f"{text}-01")
                days_in_month = calendar.monthrange(first.year, first.month)[1]
                return text, reports.DayRange(first, first.replace(day=days_in_month))
            if DAY_PATTERN.fullmatch(text):
                day = date.fromisoformat(text)
                return text, reports.DayRange(day, day)
        except ValueError:
            pass
        self.fail("invalid", value=text)

    def to_representation(self, value):
        return value[0]


class UsageQuerySerializer(serializers.Serializer):
    period = PeriodField(help_text="YYYY-MM for a month or YYYY-MM-DD for a day (UTC).")


class DateRangeQuerySerializer(serializers.Serializer):
    start_date = serializers.DateField(
        required=False, help_text="First UTC day to include (YYYY-MM-DD)."
    )
    end_date = serializers.DateField(
        required=False, help_text="Last UTC day to include (YYYY-MM-DD)."
    )

    def validate(self, attrs):
        first, last = attrs.get("start_date"), attrs.get("end_date")
        if first and last and first > last:
            raise serializers.ValidationError(
                {"end_date": ["end_date must not be before start_date."]}
            )
        attrs["days"] = reports.DayRange(first, last)
        return attrs


class JobFilterQuerySerializer(DateRangeQuerySerializer):
    status = CaseInsensitiveChoiceField(
        choices=Job.Status.choices, required=False, help_text="Any letter case."
    )
    job_type = serializers.CharField(max_length=100, required=False)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        attrs["filters"] = reports.JobFilters(
            status=attrs.get("status"),
            job_type=attrs.get("job_type"),
            days=attrs["days"],
            job_id_prefix=attrs.get("job_id_filter"),
        )
        return attrs


class TeamJobsQuerySerializer(JobFilterQuerySerializer):
    limit = serializers.IntegerField(min_value=1, max_value=200, default=100)
    offset = serializers.IntegerField(min_value=0, default=0)


@extend_schema_field(OpenApiTypes.STR)
class JobIdPrefixField(serializers.Field):
    """The start of a job id, with or without dashes, as canonical UUID text."""

    default_error_messages = {
        "invalid": (
            "'{value}' is not the start of a job id. Use 1 to 32 hex digits, "
            "with or without the dashes of a UUID."
        ),
    }

    def to_internal_value(self, data):
        text = str(data).strip()
        digits = text.replace("-", "").lower()
        if not JOB_ID_PREFIX_PATTERN.fullmatch(text) or not 1 <= len(digits) <= 32:
            self.fail("invalid", value=text)
        return canonical_uuid_prefix(digits)

    def to_representation(self, value):
        return value


def canonical_uuid_prefix(digits: str) -> str:
    """Insert the dashes of a UUID's text into a prefix of its 32 hex digits."""
    prefix = digits
    for position in UUID_DASH_POSITIONS:
        if len(prefix) > position:
            prefix = f"{prefix[:position]}-{prefix[position:]}"
    return prefix


class AdminJobsQuerySerializer(JobFilterQuerySerializer):
    page = serializers.IntegerField(min_value=1, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=100, default=20)
    job_id_filter = JobIdPrefixField(
        required=False, help_text="The start of the job id, for example 3f2a9c1e."
    )


# Response shapes, for the OpenAPI schema. jobs.reports builds the bodies,
# and these classes describe them.


def usd_field(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=20, decimal_places=8, **kwargs)


class UsageSummary(serializers.Serializer):
    total_jobs = serializers.IntegerField()
    completed_jobs = serializers.IntegerField()
    successful_jobs = serializers.IntegerField(help_text="Same as completed_jobs.")
    failed_jobs = serializers.IntegerField()
    cancelled_jobs = serializers.IntegerField()
    open_jobs = serializers.IntegerField(help_text="Pending or in progress.")
    total_calls = serializers.IntegerField()
    failed_calls = serializers.IntegerField()
    total_tokens = serializers.IntegerField(help_text="Tokens of successful calls.")
    total_cost_usd = usd_field()
    credits_charged = serializers.IntegerField()
    credits_refunded = serializers.IntegerField()
    avg_cost_per_job = usd_field(help_text="Cost per job with at least one call.")


class JobTypeUsage(serializers.Serializer):
    jobs = serializers.IntegerField()
    count = serializers.IntegerField(help_text="Same as jobs.")
    completed_jobs = serializers.IntegerField()
    tokens = serializers.IntegerField()
    cost_usd = usd_field()
    credits_charged = serializers.IntegerField()


class UsageResponse(serializers.Serializer):
    team_id = serializers.CharField()
    period = serializers.CharField()
    period_start = serializers.DateField()
    period_end = serializers.DateField(help_text="The last day included.")
    summary = UsageSummary()
    job_types = serializers.DictField(child=JobTypeUsage())


class TeamJobRow(serializers.Serializer):
    job_id = serializers.UUIDField()
    job_type = serializers.CharField()
    status = serializers.CharField()
    user_id = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    error_message = serializers.CharField(allow_null=True)
    credit_applied = serializers.BooleanField()
    credits_charged = serializers.IntegerField()
    total_calls = serializers.IntegerField()
    failed_calls = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    total_cost_usd = usd_field()
    metadata = serializers.DictField()


class TeamJobListResponse(serializers.Serializer):
    team_id = serializers.CharField()
    total = serializers.IntegerField(help_text="Jobs matching the filters.")
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    jobs = TeamJobRow(many=True)


class JobSummary(serializers.Serializer):
    job_id = serializers.UUIDField()
    team_id = serializers.CharField()
    organization_id = serializers.CharField()
    user_id = serializers.CharField(allow_null=True)
    job_type = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    error_message = serializers.CharField(allow_null=True)
    total_calls = serializers.IntegerField()
    successful_calls = serializers.IntegerField()
    failed_calls = serializers.IntegerField()
    retry_count = serializers.IntegerField(
        help_text="Calls beyond the first of each purpose."
    )
    total_tokens = serializers.IntegerField()
    provider_cost_usd = usd_field()
    client_cost_usd = usd_field()
    margin_usd = usd_field()
    total_cost_usd = usd_field(help_text="Same as client_cost_usd.")
    avg_latency_ms = serializers.IntegerField()
    credit_applied = serializers.BooleanField()
    credits_charged = serializers.IntegerField()
    job_metadata = serializers.DictField()


class AdminJobListResponse(serializers.Serializer):
    jobs = JobSummary(many=True)
    total = serializers.IntegerField(help_text="Jobs matching the filters.")
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    total_pages = serializers.IntegerField()


class CallDetail(serializers.Serializer):
    call_id = serializers.UUIDField()
    alias = serializers.CharField()
    provider = serializers.CharField()
    provider_model = serializers.CharField()
    purpose = serializers.CharField(allow_null=True)
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    input_price_per_million = serializers.DecimalField(max_digits=14, decimal_places=6)
    output_price_per_million = serializers.DecimalField(max_digits=14, decimal_places=6)
    provider_cost_usd = usd_field()
    client_cost_usd = usd_field()
    margin_usd = usd_field()
    latency_ms = serializers.IntegerField()
    attempt_count = serializers.IntegerField()
    finish_reason = serializers.CharField(allow_null=True)
    error_code = serializers.CharField(allow_null=True)
    error_message = serializers.CharField(allow_null=True)
    error_detail = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    request_data = serializers.JSONField(allow_null=True)
    response_data = serializers.JSONField(allow_null=True)


class AdminJobDetailResponse(serializers.Serializer):
    job = JobSummary()
    calls = CallDetail(many=True)


class TopTeam(serializers.Serializer):
    team_id = serializers.CharField()
    job_count = serializers.IntegerField()
    credits_used = serializers.IntegerField()


class OrganizationStatsResponse(serializers.Serializer):
    organization_id = serializers.CharField()
    organization_name = serializers.CharField()
    start_date = serializers.DateField(allow_null=True)
    end_date = serializers.DateField(allow_null=True)
    total_jobs = serializers.IntegerField()
    completed_jobs = serializers.IntegerField()
    failed_jobs = serializers.IntegerField()
    cancelled_jobs = serializers.IntegerField()
    pending_jobs = serializers.IntegerField()
    in_progress_jobs = serializers.IntegerField()
    open_jobs = serializers.IntegerField()
    total_teams = serializers.IntegerField()
    active_teams = serializers.IntegerField(help_text="Teams with jobs in the range.")
    total_llm_calls = serializers.IntegerField()
    successful_calls = serializers.IntegerField()
    failed_calls = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    total_cost_usd = usd_field(help_text="Same as client_cost_usd.")
    client_cost_usd = usd_field()
    provider_cost_usd = usd_field()
    margin_usd = usd_field()
    total_credits_used = serializers.IntegerField()
    top_teams = TopTeam(many=True)


class DailySpend(serializers.Serializer):
    date = serializers.DateField()
    spend = usd_field()
    provider_cost = usd_field()
    calls = serializers.IntegerField()


class SpendFigures(serializers.Serializer):
    spend = usd_field(help_text="Client cost.")
    provider_cost = usd_field()
    margin = usd_field()
    count = serializers.IntegerField(help_text="Calls.")
    successful = serializers.IntegerField()
    failed = serializers.IntegerField()
    tokens = serializers.IntegerField()


class TeamSpend(SpendFigures):
    team_id = serializers.CharField()


class AliasSpend(SpendFigures):
    alias = serializers.CharField()


class ModelSpend(AliasSpend):
    model = serializers.CharField(help_text="Same as alias.")


class ProviderSpend(SpendFigures):
    provider = serializers.CharField()


class ProviderModelSpend(ProviderSpend):
    provider_model = serializers.CharField()


class OrganizationAnalyticsResponse(serializers.Serializer):
    organization_id = serializers.CharField()
    organization_name = serializers.CharField()
    start_date = serializers.DateField(allow_null=True)
    end_date = serializers.DateField(allow_null=True)
    total_spend = usd_field()
    total_provider_cost = usd_field()
    total_margin = usd_field()
    total_requests = serializers.IntegerField()
    successful_requests = serializers.IntegerField()
    failed_requests = serializers.IntegerField()
    failure_rate = serializers.DecimalField(max_digits=5, decimal_places=4)
    total_tokens = serializers.IntegerField()
    daily_spend = DailySpend(many=True)
    spend_per_team = TeamSpend(many=True)
    top_aliases = AliasSpend(many=True)
    top_models = ModelSpend(many=True)
    top_provider_models = ProviderModelSpend(many=True)
    provider_usage = ProviderSpend(many=True)
    job_status_distribution = serializers.DictField(child=serializers.IntegerField())


class LowCreditTeam(serializers.Serializer):
    team_id = serializers.CharField()
    organization_id = serializers.CharField()
    credits_allocated = serializers.IntegerField()
    credits_remaining = serializers.IntegerField()
    credits_available = serializers.IntegerField()
    remaining_ratio = serializers.DecimalField(max_digits=12, decimal_places=4)


class DashboardResponse(serializers.Serializer):
    organizations = serializers.IntegerField(help_text="Active organizations.")
    teams = serializers.IntegerField()
    active_teams = serializers.IntegerField()
    active_jobs = serializers.IntegerField(help_text="Pending or in progress.")
    credits_allocated = serializers.IntegerField()
    credits_used = serializers.IntegerField()
    credits_remaining = serializers.IntegerField()
    credits_held = serializers.IntegerField()
    credits_available = serializers.IntegerField()
    totalCredits = serializers.IntegerField(help_text="Same as credits_allocated.")
    creditsUsed = serializers.IntegerField(help_text="Same as credits_used.")
    creditsRemaining = serializers.IntegerField(help_text="Same as credits_remaining.")
    calls_today = serializers.IntegerField()
    spend_today_usd = usd_field()
    calls_last_30_days = serializers.IntegerField()
    failed_calls_last_30_days = serializers.IntegerField()
    failed_call_rate_last_30_days = serializers.DecimalField(
        max_digits=5, decimal_places=4
    )
    spend_last_30_days_usd = usd_field()
    provider_cost_last_30_days_usd = usd_field()
    teams_low_on_credits = LowCreditTeam(many=True)


TEAM_ERRORS = {status: ErrorResponse for status in (401, 403, 404, 422)}
ADMIN_ERRORS = {status: ErrorResponse for status in (401, 404, 422)}


# Team-facing views


@extend_schema(tags=[USAGE_TAG])
class TeamUsageView(OwnTeamView):
    @extend_schema(
        parameters=[UsageQuerySerializer],
        responses={200: UsageResponse, **TEAM_ERRORS},
        description=(
            "Jobs the team created in the period (UTC), with their calls, tokens, "
            "client cost and credits. period_end is the last day included."
        ),
    )
    def get(self, request, team_id: str):
        label, days = validated_query(UsageQuerySerializer, request)["period"]

        usage = reports.team_usage(team_id=request.user.id, days=days)

        return Response(
            {
                "team_id": request.user.id,
                "period": label,
                "period_start": days.first,
                "period_end": days.last,
                **usage,
            }
        )


@extend_schema(tags=[USAGE_TAG])
class TeamJobListView(OwnTeamView):
    @extend_schema(
        parameters=[TeamJobsQuerySerializer],
        responses={200: TeamJobListResponse, **TEAM_ERRORS},
        description=(
            "The team's jobs with their call figures, newest first. total counts "
            "every job matching the filters, and end_date is included."
        ),
    )
    def get(self, request, team_id: str):
        query = validated_query(TeamJobsQuerySerializer, request)

        total, jobs = reports.team_job_page(
            team_id=request.user.id,
            filters=query["filters"],
            limit=query["limit"],
            offset=query["offset"],
        )

        return Response(
            {
                "team_id": request.user.id,
                "total": total,
                "limit": query["limit"],
                "offset": query["offset"],
                "jobs": jobs,
            }
        )


# Admin views


def require_team(team_id: str) -> None:
    # No id contains U+0000, and PostgreSQL rejects it in a query parameter.
    if "\x00" in team_id or not Team.objects.filter(pk=team_id).exists():
        raise team_not_found(team_id)


def get_organization(organization_id: str) -> Organization:
    organization = None
    if "\x00" not in organization_id:
        organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        raise NotFound(
            f"Organization '{organization_id}' not found.",
            code="organization_not_found",
        )
    return organization


@extend_schema(tags=[REPORTS_TAG])
class AdminTeamJobListView(AdminView):
    permission_model = Job

    @extend_schema(
        operation_id="admin_team_jobs_list",
        parameters=[AdminJobsQuerySerializer],
        responses={200: AdminJobListResponse, **ADMIN_ERRORS},
        description=(
            "A team's jobs with call counts, retries, tokens, provider and client "
            "cost and margin, newest first. Jobs without calls are included."
        ),
    )
    def get(self, request, team_id: str):
        query = validated_query(AdminJobsQuerySerializer, request)
        require_team(team_id)

        page = reports.admin_job_page(
            team_id=team_id,
            filters=query["filters"],
            page=query["page"],
            page_size=query["page_size"],
        )

        return Response(page)


@extend_schema(tags=[REPORTS_TAG])
class AdminTeamJobDetailView(AdminView):
    permission_model = Job

    @extend_schema(
        operation_id="admin_team_job_retrieve",
        responses={200: AdminJobDetailResponse, **ADMIN_ERRORS},
        description="A job's summary and every call of it, oldest first.",
    )
    def get(self, request, team_id: str, job_id: str):
        job = get_team_job(team_id, job_id)
        return Response(reports.admin_job_detail(job))


def get_team_job(team_id: str, job_id: str) -> Job:
    """Return the team's job, or raise 404 for an unknown team or job id."""
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        job_uuid = None
    job = None
    if job_uuid is not None:
        job = Job.objects.filter(pk=job_uuid, team_id=team_id).first()
    if job is None:
        require_team(team_id)
        raise NotFound(
            f"Job '{job_id}' not found in team '{team_id}'.", code="job_not_found"
        )
    return job


@extend_schema(tags=[REPORTS_TAG])
class OrganizationStatsView(AdminView):
    permission_model = LLMCall
    required_permissions = {"GET": ("teams.view_organization", "jobs.view_llmcall")}

    @extend_schema(
        parameters=[DateRangeQuerySerializer],
        responses={200: OrganizationStatsResponse, **ADMIN_ERRORS},
        description=(
            "Jobs created and calls made in the date range (UTC days, both "
            "included), with client cost, provider cost and margin."
        ),
    )
    def get(self, request, organization_id: str):
        days = validated_query(DateRangeQuerySerializer, request)["days"]
        organization = get_organization(organization_id)
        return Response(
            reports.organization_stats(organization=organization, days=days)
        )


@extend_schema(tags=[REPORTS_TAG])
class OrganizationAnalyticsView(AdminView):
    permission_model = LLMCall
    required_permissions = {"GET": ("teams.view_organization", "jobs.view_llmcall")}

    @extend_schema(
        parameters=[DateRangeQuerySerializer],
        responses={200: OrganizationAnalyticsResponse, **ADMIN_ERRORS},
        description=(
            "Spend (client cost) with provider cost and margin by day, team, "
            "alias, provider model and provider, and the job status counts, for "
            "the date range (UTC days, both included)."
        ),
    )
    def get(self, request, organization_id: str):
        days = validated_query(DateRangeQuerySerializer, request)["days"]
        organization = get_organization(organization_id)
        return Response(
            reports.organization_analytics(organization=organization, days=days)
        )


@extend_schema(tags=[REPORTS_TAG])
class DashboardView(AdminView):
    permission_model = LLMCall
    required_permissions = {"GET": ("teams.view_team", "jobs.view_llmcall")}

    @extend_schema(
        responses={200: DashboardResponse, 401: ErrorResponse},
        description=(
            "Tenants, credits, open jobs, calls and spend today (since UTC "
            "midnight) and over the last 30 days, and the active teams with the "
            "fewest available credits."
        ),
    )
    def get(self, request):
        return Response(reports.dashboard(now=timezone.now()))
