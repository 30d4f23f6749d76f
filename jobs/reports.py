"""Reports over jobs, calls and credits, aggregated by the database.

Each function runs a fixed number of queries whatever the number of jobs and
calls, and returns a response-ready dict with money as decimal strings.
``team_usage`` and ``team_job_page`` are team-facing: they name aliases and
client costs only, never providers, provider models, provider costs or
markups.
"""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Avg, Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from jobs.models import Job, LLMCall
from jobs.presenters import COST_PLACES
from teams.models import CREDITS_AVAILABLE, CreditTransaction, Organization, Team

SUCCEEDED = Q(error_code="")
FAILED = ~Q(error_code="")
TOP_COUNT = 10
RATIO_PLACES = Decimal("0.0001")


def start_of_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass(frozen=True)
class DayRange:
    """Whole UTC days from ``first`` to ``last``, both included, or open if None."""

    first: date | None = None
    last: date | None = None

    def lookups(self, field_name: str = "created_at") -> dict:
        """Return queryset filters that keep ``field_name`` inside the range."""
        filters = {}
        if self.first is not None:
            filters[f"{field_name}__gte"] = start_of_day(self.first)
        # The last representable date has no next day; it bounds nothing.
        if self.last is not None and self.last < date.max:
            filters[f"{field_name}__lt"] = start_of_day(self.last + timedelta(days=1))
        return filters

    def as_dict(self) -> dict:
        return {"start_date": self.first, "end_date": self.last}


@dataclass(frozen=True)
class JobFilters:
    """Filters of a job list. ``job_id_prefix`` is lowercase, dashed UUID text."""

    status: str | None = None
    job_type: str | None = None
    days: DayRange = field(default_factory=DayRange)
    job_id_prefix: str | None = None

    def apply(self, jobs: QuerySet) -> QuerySet:
        if self.status:
            jobs = jobs.filter(status=self.status)
        if self.job_type:
            jobs = jobs.filter(job_type=self.job_type)
        if self.job_id_prefix:
            # Django 5.2 compares UUID text on PostgreSQL and SQLite alike.
            # PostgreSQL casts the column to dashed text, and SQLite strips
            # the dashes from the prefix to match its 32-digit hex column.
            jobs = jobs.filter(id__startswith=self.job_id_prefix)
        return jobs.filter(**self.days.lookups())


def money(value) -> str:
    """Format USD to eight places in fixed-point notation, so zero is never "0E-8"."""
    return f"{Decimal(value or 0).quantize(COST_PLACES):f}"


def ratio(numerator, denominator) -> str:
    """Return numerator / denominator rounded to four places.

    A zero denominator gives "0.0000".
    """
    if not denominator:
        return f"{Decimal(0).quantize(RATIO_PLACES):f}"
    return f"{(Decimal(numerator) / Decimal(denominator)).quantize(RATIO_PLACES):f}"


def _decimal(value) -> Decimal:
    return Decimal(value or 0)


# Per-job call figures


def _call_aggregates() -> dict:
    return {
        "calls": Count("id"),
        "successful_calls": Count("id", filter=SUCCEEDED),
        "purposes": Count("purpose", distinct=True),
        "tokens": Sum("total_tokens", filter=SUCCEEDED),
        "provider_cost": Sum("provider_cost_usd"),
        "client_cost": Sum("client_cost_usd"),
        "avg_latency": Avg("latency_ms"),
    }


def call_totals(job_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
    """Aggregate the calls of the given jobs in one grouped query, by job id."""
    if not job_ids:
        return {}
    rows = (
        LLMCall.objects.filter(job_id__in=job_ids)
        .values("job_id")
        .annotate(**_call_aggregates())
        .order_by()
    )
    return {row["job_id"]: row for row in rows}


@dataclass(frozen=True)
class CallFigures:
    """A job's call figures, all zero for a job without calls."""

    calls: int = 0
    successful_calls: int = 0
    purposes: int = 0
    tokens: int = 0
    provider_cost: Decimal = Decimal(0)
    client_cost: Decimal = Decimal(0)
    avg_latency_ms: int = 0

    @classmethod
    def from_row(cls, row: dict | None) -> "CallFigures":
        if row is None:
            return cls()
        return cls(
            calls=row["calls"],
            successful_calls=row["successful_calls"],
            purposes=row["purposes"],
            tokens=row["tokens"] or 0,
            provider_cost=_decimal(row["provider_cost"]),
            client_cost=_decimal(row["client_cost"]),
            avg_latency_ms=round(row["avg_latency"] or 0),
        )

    @property
    def failed_calls(self) -> int:
        return self.calls - self.successful_calls

    @property
    def retry_count(self) -> int:
        """Count the calls beyond the first of each purpose.

        Calls without a purpose count as calls of one purpose.
        """
        return self.calls - self.purposes


# Team-facing reports


def team_usage(*, team_id: str, days: DayRange) -> dict:
    """Summarise the jobs a team created in ``days``, with their calls and credits.

    A job belongs to the range of its ``created_at``, and so do all its
    calls. Three queries: jobs by type, calls by job type, refunds.
    """
    jobs = (
        Job.objects.filter(team_id=team_id, **days.lookups())
        .values("job_type")
        .annotate(
            jobs=Count("id"),
            completed_jobs=Count("id", filter=Q(status=Job.Status.COMPLETED)),
            failed_jobs=Count("id", filter=Q(status=Job.Status.FAILED)),
            cancelled_jobs=Count("id", filter=Q(status=Job.Status.CANCELLED)),
            open_jobs=Count("id", filter=Q(status__in=Job.OPEN_STATUSES)),
            credits_charged=Sum("credits_charged"),
        )
        .order_by("job_type")
    )
    # A call is made after its job is created, so the calls' own lower bound
    # is safe and lets the database use the (team, created_at) index of calls.
    call_filters = {"created_at__gte": start_of_day(days.first)} if days.first else {}
    calls = {
        row["job__job_type"]: row
        for row in LLMCall.objects.filter(
            team_id=team_id,
            job__team_id=team_id,
            **call_filters,
            **days.lookups("job__created_at"),
        )
        .values("job__job_type")
        .annotate(
            calls=Count("id"),
            failed_calls=Count("id", filter=FAILED),
            tokens=Sum("total_tokens", filter=SUCCEEDED),
            cost=Sum("client_cost_usd"),
            jobs_with_calls=Count("job_id", distinct=True),
        )
        .order_by()
    }
    refunded = CreditTransaction.objects.filter(
        team_id=team_id,
        type=CreditTransaction.Type.REFUND,
        **days.lookups("job__created_at"),
    ).aggregate(credits=Sum("amount"))["credits"]

    job_types = {}
    for row in jobs:
        call_row = calls.get(row["job_type"], {})
        job_types[row["job_type"]] = {**row, **call_row}
    return {
        "summary": _usage_summary(job_types.values(), refunded or 0),
        "job_types": {
            job_type: _job_type_usage(row) for job_type, row in job_types.items()
        },
    }


def _usage_summary(rows, credits_refunded: int) -> dict:
    rows = list(rows)

    def total(name):
        return sum((row.get(name) or 0 for row in rows), 0)

    cost = sum((_decimal(row.get("cost")) for row in rows), Decimal(0))
    jobs_with_calls = total("jobs_with_calls")
    average = cost / jobs_with_calls if jobs_with_calls else Decimal(0)
    return {
        "total_jobs": total("jobs"),
        "completed_jobs": total("completed_jobs"),
        # completed_jobs again, under the name clients of the replaced gateway read.
        "successful_jobs": total("completed_jobs"),
        "failed_jobs": total("failed_jobs"),
        "cancelled_jobs": total("cancelled_jobs"),
        "open_jobs": total("open_jobs"),
        "total_calls": total("calls"),
        "failed_calls": total("failed_calls"),
        "total_tokens": total("tokens"),
        "total_cost_usd": money(cost),
        "credits_charged": total("credits_charged"),
        "credits_refunded": credits_refunded,
        "avg_cost_per_job": money(average),
    }


def _job_type_usage(row: dict) -> dict:
    return {
        "jobs": row["jobs"],
        # jobs again, under the name clients of the replaced gateway read.
        "count": row["jobs"],
        "completed_jobs": row["completed_jobs"],
        "tokens": row.get("tokens") or 0,
        "cost_usd": money(row.get("cost")),
        "credits_charged": row["credits_charged"] or 0,
    }


def newest_first_slice(jobs, *, total: int, offset: int, limit: int) -> list[Job]:
    """Return ``limit`` jobs from ``offset``, newest first, or none past the end.

    An offset past the last job never reaches the database, where one beyond
    the 64-bit range of SQL OFFSET would fail the query.
    """
    if offset >= total:
        return []
    return list(jobs.order_by("-created_at", "-id")[offset : offset + limit])


def team_job_page(
    *, team_id: str, filters: JobFilters, limit: int, offset: int
) -> tuple[int, list[dict]]:
    """Return the number of matching jobs and one page of them, newest first.

    Three queries: the count, the page, and the page's calls grouped by job.
    """
    jobs = filters.apply(Job.objects.filter(team_id=team_id))
    total = jobs.count()
    page = newest_first_slice(jobs, total=total, offset=offset, limit=limit)
    totals = call_totals([job.id for job in page])
    return total, [
        _team_job(job, CallFigures.from_row(totals.get(job.id))) for job in page
    ]


def _team_job(job: Job, figures: CallFigures) -> dict:
    return {
        "job_id": str(job.id),
        "job_type": job.job_type,
        "status": job.status,
        "user_id": job.user_id or None,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "error_message": job.error_message or None,
        "credit_applied": job.credit_applied,
        "credits_charged": job.credits_charged,
        "total_calls": figures.calls,
        "failed_calls": figures.failed_calls,
        "total_tokens": figures.tokens,
        "total_cost_usd": money(figures.client_cost),
        "metadata": job.metadata,
    }


# Operator reports: these name providers, provider costs and margins.


def job_summary(job: Job, figures: CallFigures) -> dict:
    """Build the operator's summary of one job from its call figures."""
    return {
        "job_id": str(job.id),
        "team_id": job.team_id,
        "organization_id": job.organization_id,
        "user_id": job.user_id or None,
        "job_type": job.job_type,
        "status": job.status,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "error_message": job.error_message or None,
        "total_calls": figures.calls,
        "successful_calls": figures.successful_calls,
        "failed_calls": figures.failed_calls,
        "retry_count": figures.retry_count,
        "total_tokens": figures.tokens,
        "provider_cost_usd": money(figures.provider_cost),
        "client_cost_usd": money(figures.client_cost),
        "margin_usd": money(figures.client_cost - figures.provider_cost),
        # client_cost_usd again, which clients of the replaced gateway read.
        "total_cost_usd": money(figures.client_cost),
        "avg_latency_ms": figures.avg_latency_ms,
        "credit_applied": job.credit_applied,
        "credits_charged": job.credits_charged,
        "job_metadata": job.metadata,
    }


def admin_job_page(
    *, team_id: str, filters: JobFilters, page: int, page_size: int
) -> dict:
    """Return one page of a team's jobs with their call figures, newest first.

    Jobs without calls are listed too. Three queries: the count, the page,
    and the page's calls grouped by job.
    """
    jobs = filters.apply(Job.objects.filter(team_id=team_id))
    total = jobs.count()
    offset = (page - 1) * page_size
    rows = newest_first_slice(jobs, total=total, offset=offset, limit=page_size)
    totals = call_totals([job.id for job in rows])
    return {
        "jobs": [
            job_summary(job, CallFigures.from_row(totals.get(job.id))) for job in rows
        ],
        "total": total,
        "page": page,
        "page_size": page_size,
        "total_pages": -(-total // page_size),
    }


def admin_job_detail(job: Job) -> dict:
    """Return a job's summary and every call of it, oldest first, in two queries."""
    figures = CallFigures.from_row(call_totals([job.id]).get(job.id))
    calls = LLMCall.objects.filter(job_id=job.id).order_by("created_at", "id")
    return {"job": job_summary(job, figures), "calls": [_call(call) for call in calls]}


def _call(call: LLMCall) -> dict:
    return {
        "call_id": str(call.id),
        "alias": call.alias,
        "provider": call.provider,
        "provider_model": call.provider_model,
        "purpose": call.purpose or None,
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "total_tokens": call.total_tokens,
        "input_price_per_million": str(call.input_price_per_million),
        "output_price_per_million": str(call.output_price_per_million),
        "provider_cost_usd": money(call.provider_cost_usd),
        "client_cost_usd": money(call.client_cost_usd),
        "margin_usd": money(call.client_cost_usd - call.provider_cost_usd),
        "latency_ms": call.latency_ms,
        "attempt_count": call.attempt_count,
        "finish_reason": call.finish_reason or None,
        "error_code": call.error_code or None,
        "error_message": call.error_message or None,
        "error_detail": call.error_detail or None,
        "created_at": call.created_at,
        "request_data": call.request_data,
        "response_data": call.response_data,
    }


def _money_figures(row: dict) -> dict:
    """Format a row's ``client_cost`` and ``provider_cost`` sums with the margin."""
    client = _decimal(row["client_cost"])
    provider = _decimal(row["provider_cost"])
    return {
        "client_cost_usd": money(client),
        "provider_cost_usd": money(provider),
        "margin_usd": money(client - provider),
    }


def _call_sums() -> dict:
    return {
        "calls": Count("id"),
        "successful_calls": Count("id", filter=SUCCEEDED),
        "failed_calls": Count("id", filter=FAILED),
        "tokens": Sum("total_tokens", filter=SUCCEEDED),
        "client_cost": Sum("client_cost_usd"),
        "provider_cost": Sum("provider_cost_usd"),
    }


def organization_stats(*, organization: Organization, days: DayRange) -> dict:
    """Summarise an organization's jobs created and calls made in ``days``.

    Four queries: teams, jobs, calls, and the ten teams with most jobs.
    Credits used are what the jobs created in the range were charged.
    """
    jobs = Job.objects.filter(organization_id=organization.id, **days.lookups())
    calls = LLMCall.objects.filter(organization_id=organization.id, **days.lookups())
    team_count = Team.objects.filter(organization_id=organization.id).count()
    job_figures = jobs.aggregate(
        total_jobs=Count("id"),
        completed_jobs=Count("id", filter=Q(status=Job.Status.COMPLETED)),
        failed_jobs=Count("id", filter=Q(status=Job.Status.FAILED)),
        cancelled_jobs=Count("id", filter=Q(status=Job.Status.CANCELLED)),
        pending_jobs=Count("id", filter=Q(status=Job.Status.PENDING)),
        in_progress_jobs=Count("id", filter=Q(status=Job.Status.IN_PROGRESS)),
        active_teams=Count("team_id", distinct=True),
        credits_used=Sum("credits_charged"),
    )
    call_figures = calls.aggregate(**_call_sums())
    top_teams = (
        jobs.values("team_id")
        .annotate(job_count=Count("id"), credits_used=Sum("credits_charged"))
        .order_by("-job_count", "team_id")[:TOP_COUNT]
    )
    return {
        "organization_id": organization.id,
        "organization_name": organization.name,
        **days.as_dict(),
        "total_jobs": job_figures["total_jobs"],
        "completed_jobs": job_figures["completed_jobs"],
        "failed_jobs": job_figures["failed_jobs"],
        "cancelled_jobs": job_figures["cancelled_jobs"],
        "pending_jobs": job_figures["pending_jobs"],
        "in_progress_jobs": job_figures["in_progress_jobs"],
        "open_jobs": job_figures["pending_jobs"] + job_figures["in_progress_jobs"],
        "total_teams": team_count,
        "active_teams": job_figures["active_teams"],
        "total_llm_calls": call_figures["calls"],
        "successful_calls": call_figures["successful_calls"],
        "failed_calls": call_figures["failed_calls"],
        "total_tokens": call_figures["tokens"] or 0,
        "total_cost_usd": money(call_figures["client_cost"]),
        **_money_figures(call_figures),
        "total_credits_used": job_figures["credits_used"] or 0,
        "top_teams": list(top_teams),
    }


def organization_analytics(*, organization: Organization, days: DayRange) -> dict:
    """Break an organization's spend in ``days`` down by day, team, alias and provider.

    Spend is the client cost, which teams pay, and the provider cost and
    margin come with it. Calls count in the range of their ``created_at``,
    and jobs in the range of theirs. Seven queries.
    """
    calls = LLMCall.objects.filter(organization_id=organization.id, **days.lookups())
    jobs = Job.objects.filter(organization_id=organization.id, **days.lookups())
    totals = calls.aggregate(**_call_sums())
    top_aliases = _ranked(calls, ["alias"])
    return {
        "organization_id": organization.id,
        "organization_name": organization.name,
        **days.as_dict(),
        "total_spend": money(totals["client_cost"]),
        "total_provider_cost": money(totals["provider_cost"]),
        "total_margin": money(
            _decimal(totals["client_cost"]) - _decimal(totals["provider_cost"])
        ),
        "total_requests": totals["calls"],
        "successful_requests": totals["successful_calls"],
        "failed_requests": totals["failed_calls"],
        "failure_rate": ratio(totals["failed_calls"], totals["calls"]),
        "total_tokens": totals["tokens"] or 0,
        "daily_spend": _daily_spend(calls),
        "spend_per_team": _ranked(calls, ["team_id"]),
        "top_aliases": top_aliases,
        # top_aliases again, with the alias also under ``model``, the name
        # clients of the replaced gateway read.
        "top_models": [{"model": row["alias"], **row} for row in top_aliases],
        "top_provider_models": _ranked(calls, ["provider", "provider_model"]),
        "provider_usage": _ranked(calls, ["provider"], limit=None),
        "job_status_distribution": _status_counts(jobs),
    }


def _daily_spend(calls: QuerySet) -> list[dict]:
    """Return spend per UTC day, oldest first, leaving out days without calls."""
    rows = (
        calls.annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(**_call_sums())
        .order_by("day")
    )
    return [
        {
            "date": row["day"],
            "spend": money(row["client_cost"]),
            "provider_cost": money(row["provider_cost"]),
            "calls": row["calls"],
        }
        for row in rows
    ]


def _ranked(calls: QuerySet, keys: list[str], limit: int | None = TOP_COUNT):
    """Group calls by ``keys`` and return the groups by spend, highest first."""
    rows = calls.values(*keys).annotate(**_call_sums()).order_by("-client_cost", *keys)
    if limit is not None:
        rows = rows[:limit]
    return [
        {
            **{key: row[key] for key in keys},
            "spend": money(row["client_cost"]),
            "provider_cost": money(row["provider_cost"]),
            "margin": money(
                _decimal(row["client_cost"]) - _decimal(row["provider_cost"])
            ),
            "count": row["calls"],
            "successful": row["successful_calls"],
            "failed": row["failed_calls"],
            "tokens": row["tokens"] or 0,
        }
        for row in rows
    ]


def _status_counts(jobs: QuerySet) -> dict[str, int]:
    counts = dict(jobs.values_list("status").annotate(count=Count("id")).order_by())
    return {status: counts.get(status, 0) for status in Job.Status.values}


def calls_by_day(*, since: datetime) -> list[dict]:
    """Count and sum the calls created from ``since`` on per UTC day, oldest first.

    The dashboard takes its 30-day figures and its charts from these rows,
    so the month of calls is read once. One query.
    """
    rows = (
        LLMCall.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(
            calls=Count("id"),
            failed_calls=Count("id", filter=FAILED),
            client_cost=Sum("client_cost_usd"),
            provider_cost=Sum("provider_cost_usd"),
        )
        .order_by("day")
    )
    return [
        {
            "date": row["day"],
            "calls": row["calls"],
            "failed_calls": row["failed_calls"],
            "client_cost": _decimal(row["client_cost"]),
            "provider_cost": _decimal(row["provider_cost"]),
        }
        for row in rows
    ]


def daily_usage_from(rows: list[dict], days: DayRange) -> list[dict]:
    """Return ``daily_usage`` for ``days`` from ``calls_by_day`` rows that cover it."""
    spend_rows = [
        {
            "date": row["date"],
            "spend": money(row["client_cost"]),
            "provider_cost": money(row["provider_cost"]),
            "calls": row["calls"],
        }
        for row in rows
        if days.first <= row["date"] <= days.last
    ]
    return fill_missing_days(spend_rows, days)


def recent_calls_since(now: datetime) -> datetime:
    """Return the start of the dashboard's 30 days that end at ``now``."""
    return now - timedelta(days=30)


def dashboard(*, now: datetime, recent_calls: list[dict] | None = None) -> dict:
    """Summarise the whole platform: tenants, credits, open jobs and recent calls.

    "Today" starts at UTC midnight, and the 30 days end at ``now``. Five
    queries, or four when the caller passes the ``calls_by_day`` rows since
    ``recent_calls_since(now)`` as ``recent_calls``.
    """
    today = now.astimezone(UTC).date()
    if recent_calls is None:
        recent_calls = calls_by_day(since=recent_calls_since(now))
    organizations = Organization.objects.filter(
        status=Organization.Status.ACTIVE
    ).count()
    teams = Team.objects.aggregate(
        teams=Count("id"),
        active_teams=Count("id", filter=Q(status=Team.Status.ACTIVE)),
        allocated=Sum("credits_allocated"),
        used=Sum("credits_used"),
        held=Sum("credits_held"),
    )
    active_jobs = Job.objects.filter(status__in=Job.OPEN_STATUSES).count()
    calls = _sum_calls(recent_calls)
    today_calls = _sum_calls([row for row in recent_calls if row["date"] >= today])
    calls["calls_today"] = today_calls["calls"]
    calls["spend_today"] = today_calls["client_cost"]

    allocated, used, held = (teams[name] or 0 for name in ("allocated", "used", "held"))
    return {
        "organizations": organizations,
        "teams": teams["teams"],
        "active_teams": teams["active_teams"],
        "active_jobs": active_jobs,
        "credits_allocated": allocated,
        "credits_used": used,
        "credits_remaining": allocated - used,
        "credits_held": held,
        "credits_available": allocated - used - held,
        # The credit totals again, under the names clients of the replaced
        # gateway read.
        "totalCredits": allocated,
        "creditsUsed": used,
        "creditsRemaining": allocated - used,
        "calls_today": calls["calls_today"],
        "spend_today_usd": money(calls["spend_today"]),
        "calls_last_30_days": calls["calls"],
        "failed_calls_last_30_days": calls["failed_calls"],
        "failed_call_rate_last_30_days": ratio(calls["failed_calls"], calls["calls"]),
        "spend_last_30_days_usd": money(calls["client_cost"]),
        "provider_cost_last_30_days_usd": money(calls["provider_cost"]),
        "teams_low_on_credits": _teams_low_on_credits(),
    }


def _sum_calls(rows: list[dict]) -> dict:
    names = ("calls", "failed_calls", "client_cost", "provider_cost")
    return {name: sum((row[name] for row in rows), 0) for name in names}


def _teams_low_on_credits() -> list[dict]:
    """Return the active teams with the fewest available credits, fewest first."""
    teams = (
        Team.objects.filter(status=Team.Status.ACTIVE)
        .annotate(available=CREDITS_AVAILABLE)
        .order_by("available", "id")
        .values(
            "id", "organization_id", "credits_allocated", "credits_used", "available"
        )[:TOP_COUNT]
    )
    return [
        {
            "team_id": team["id"],
            "organization_id": team["organization_id"],
            "credits_allocated": team["credits_allocated"],
            "credits_remaining": team["credits_allocated"] - team["credits_used"],
            "credits_available": team["available"],
            "remaining_ratio": ratio(
                team["credits_allocated"] - team["credits_used"],
                team["credits_allocated"],
            ),
        }
        for team in teams
    ]


def daily_usage(*, organization_id: str | None = None, days: DayRange) -> list[dict]:
    """Return spend, provider cost and calls per UTC day of ``days``, oldest first.

    Every day of the range is listed, with zeros on days without calls, so
    charts have one point per day. Counts the whole platform, or one
    organization's calls. ``days`` must be closed at both ends. One query.
    """
    calls = LLMCall.objects.filter(**days.lookups())
    if organization_id is not None:
        calls = calls.filter(organization_id=organization_id)
    return fill_missing_days(_daily_spend(calls), days)


def fill_missing_days(rows: list[dict], days: DayRange) -> list[dict]:
    """Return the ``_daily_spend`` rows with a zero row for each day without calls."""
    by_day = {row["date"]: row for row in rows}
    result = []
    day = days.first
    while day <= days.last:
        zero = {"date": day, "spend": money(0), "provider_cost": money(0), "calls": 0}
        result.append(by_day.get(day, zero))
        day += timedelta(days=1)
    return result


def last_days(now: datetime, count: int) -> DayRange:
    """Return the ``count`` whole UTC days that end with ``now``'s day."""
    last = now.astimezone(UTC).date()
    return DayRange(last - timedelta(days=count - 1), last)
