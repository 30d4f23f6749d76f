"""Team-facing usage report and job list.

``seed_reports`` builds the data set that the admin analytics tests share:
two Acme teams, one Globex team, jobs of every status over several days and
calls with different prices, markups and failures. The expected figures in
the tests are worked out by hand from it.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from jobs.models import Job, LLMCall
from teams.models import Team, VirtualKey
from teams.services import refund_job, settle_job

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)

# Call shapes: alias, provider and model, USD prices per million tokens, and
# the tokens of a successful call.
FAST = {
    "alias": "chat-fast",
    "provider": "openai",
    "provider_model": "gpt-4o-mini",
    "input_price_per_million": Decimal("0.15"),
    "output_price_per_million": Decimal("0.6"),
    "prompt_tokens": 1000,
    "completion_tokens": 500,
}
FAST_EU = {**FAST, "alias": "chat-fast-eu"}
SMART = {
    "alias": "chat-smart",
    "provider": "anthropic",
    "provider_model": "claude-sonnet",
    "input_price_per_million": Decimal("3"),
    "output_price_per_million": Decimal("15"),
    "prompt_tokens": 1000,
    "completion_tokens": 200,
}


def at(*fields) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def add_job(team: Team, job_type: str, status: str, created_at: datetime, **fields):
    """Create a job dated ``created_at``.

    A closed job gets a completed_at one hour later.
    """
    closed = status in Job.CLOSED_STATUSES
    job = Job.objects.create(
        team=team,
        organization_id=team.organization_id,
        job_type=job_type,
        status=status,
        started_at=None if status == Job.Status.PENDING else created_at,
        completed_at=created_at + timedelta(hours=1) if closed else None,
        **fields,
    )
    Job.objects.filter(pk=job.pk).update(created_at=created_at)
    job.refresh_from_db()
    return job


def add_call(
    job: Job,
    shape: dict,
    *,
    markup_percent: int = 0,
    purpose: str = "",
    latency_ms: int = 100,
    error_code: str = "",
    minutes: int = 1,
) -> LLMCall:
    """Create a call ``minutes`` after its job, without tokens or cost if it failed."""
    fields = dict(shape)
    if error_code:
        fields.update(prompt_tokens=0, completion_tokens=0)
    base = (
        fields["prompt_tokens"] * fields["input_price_per_million"]
        + fields["completion_tokens"] * fields["output_price_per_million"]
    ) / 1_000_000
    call = LLMCall.objects.create(
        job=job,
        team_id=job.team_id,
        organization_id=job.organization_id,
        purpose=purpose,
        total_tokens=fields["prompt_tokens"] + fields["completion_tokens"],
        provider_cost_usd=base,
        client_cost_usd=base * (100 + markup_percent) / 100,
        latency_ms=latency_ms,
        error_code=error_code,
        error_message="The provider timed out." if error_code else "",
        **fields,
    )
    LLMCall.objects.filter(pk=call.pk).update(
        created_at=job.created_at + timedelta(minutes=minutes)
    )
    return call


@dataclass
class Seeded:
    research: Team
    support: Team
    outsider: Team
    jobs: dict


def seed_reports(research: Team, support: Team, outsider: Team) -> Seeded:
    """Build the shared data set, with ``jobs`` mapping a short name to each job.

    Research (no markup) has J1-J7, support (50 % markup) K1 and K2, and the
    outsider G1.
    """
    jobs = {
        "J1": add_job(
            research,
            "document_analysis",
            "completed",
            at(2026, 3, 2, 9, 0),
            credits_charged=1,
            credit_applied=True,
            metadata={"file": "q1.pdf"},
        ),
        "J2": add_job(
            research,
            "document_analysis",
            "failed",
            at(2026, 3, 5, 10, 0),
            error_message="Upstream timed out.",
        ),
        "J3": add_job(
            research,
            "chat",
            "completed",
            at(2026, 3, 14, 23, 30),
            credits_charged=1,
            credit_applied=True,
            user_id="user-7",
        ),
        "J4": add_job(research, "chat", "in_progress", at(2026, 3, 15, 8, 0)),
        "J5": add_job(research, "chat", "in_progress", at(2026, 2, 28, 23, 58)),
        "J6": add_job(
            research,
            "document_analysis",
            "cancelled",
            at(2026, 3, 10, 12, 0),
        ),
        "J7": add_job(research, "chat", "pending", at(2026, 3, 12, 12, 0)),
        "K1": add_job(
            support,
            "chat",
            "completed",
            at(2026, 3, 3, 15, 0),
            credits_charged=2,
            credit_applied=True,
        ),
        "K2": add_job(support, "triage", "failed", at(2026, 1, 20, 10, 0)),
        "G1": add_job(
            outsider,
            "chat",
            "completed",
            at(2026, 3, 4, 10, 0),
            credits_charged=1,
            credit_applied=True,
        ),
    }
    add_call(jobs["J1"], FAST, purpose="extract", latency_ms=100, minutes=1)
    add_call(
        jobs["J1"],
        FAST,
        purpose="summary",
        latency_ms=300,
        error_code="provider_timeout",
        minutes=2,
    )
    add_call(jobs["J1"], FAST, purpose="summary", latency_ms=200, minutes=3)
    add_call(
        jobs["J2"], SMART, purpose="summary", latency_ms=50, error_code="provider_error"
    )
    add_call(jobs["J3"], SMART, purpose="answer", latency_ms=400, minutes=5)
    add_call(jobs["J4"], FAST_EU, purpose="answer", latency_ms=120)
    # Made on 1 March, but its job was created in February.
    add_call(jobs["J5"], FAST, purpose="answer", latency_ms=80, minutes=5)
    add_call(jobs["K1"], SMART, markup_percent=50, purpose="answer", latency_ms=600)
    add_call(jobs["K2"], FAST, markup_percent=50, purpose="triage", latency_ms=90)
    add_call(jobs["G1"], FAST, latency_ms=100)
    return Seeded(research, support, outsider, jobs)


def add_jobs_with_calls(team: Team, count: int) -> None:
    """Add ``count`` completed jobs with two calls each, with two bulk inserts."""
    jobs = Job.objects.bulk_create(
        Job(
            team=team,
            organization_id=team.organization_id,
            job_type=f"bulk-{index % 3}",
            status=Job.Status.COMPLETED,
            credits_charged=1,
        )
        for index in range(count)
    )
    LLMCall.objects.bulk_create(
        LLMCall(
            job=job,
            team_id=team.id,
            organization_id=team.organization_id,
            purpose=purpose,
            total_tokens=1500,
            provider_cost_usd=Decimal("0.00045"),
            client_cost_usd=Decimal("0.00045"),
            **FAST,
        )
        for job in jobs
        for purpose in ("extract", "summary")
    )


@pytest.fixture
def seeded(time_machine, team, team_factory, outsider):
    time_machine.move_to(NOW, tick=False)
    support = team_factory("acme-support", credits=20)
    return seed_reports(team.team, support.team, outsider.team)


@pytest.fixture
def get(client, team):
    """GET a path with the research team's key."""

    def call(path, data=None, fixture=None):
        return client.get(path, data or {}, **(fixture or team).headers)

    return call


def mark_keys_used():
    """Stamp every key as just used, so a request does not write last_used_at."""
    VirtualKey.objects.update(last_used_at=NOW)


def assert_validation_error(response, field):
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["errors"], body


# Usage


def test_usage_of_month(seeded, get):
    response = get("/api/teams/acme-research/usage", {"period": "2026-03"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["team_id"] == "acme-research"
    assert body["period"] == "2026-03"
    assert body["period_start"] == "2026-03-01"
    assert body["period_end"] == "2026-03-31"
    assert body["summary"] == {
        "total_jobs": 6,
        "completed_jobs": 2,
        "successful_jobs": 2,
        "failed_jobs": 1,
        "cancelled_jobs": 1,
        "open_jobs": 2,
        "total_calls": 6,
        "failed_calls": 2,
        "total_tokens": 5700,
        "total_cost_usd": "0.00735000",
        "credits_charged": 2,
        "credits_refunded": 0,
        "avg_cost_per_job": "0.00183750",
    }
    assert body["job_types"] == {
        "chat": {
            "jobs": 3,
            "count": 3,
            "completed_jobs": 1,
            "tokens": 2700,
            "cost_usd": "0.00645000",
            "credits_charged": 1,
        },
        "document_analysis": {
            "jobs": 3,
            "count": 3,
            "completed_jobs": 1,
            "tokens": 3000,
            "cost_usd": "0.00090000",
            "credits_charged": 1,
        },
    }


def test_usage_assigns_calls_to_job_creation_month(seeded, get):
    response = get("/api/teams/acme-research/usage", {"period": "2026-02"})

    assert response.status_code == 200, response.content
    summary = response.json()["summary"]
    assert summary["total_jobs"] == 1
    assert summary["open_jobs"] == 1
    assert summary["total_calls"] == 1
    assert summary["total_tokens"] == 1500
    assert summary["total_cost_usd"] == "0.00045000"
    assert summary["avg_cost_per_job"] == "0.00045000"


def test_usage_of_day_uses_utc_bounds(seeded, get):
    late = get("/api/teams/acme-research/usage", {"period": "2026-03-14"})
    next_day = get("/api/teams/acme-research/usage", {"period": "2026-03-15"})

    assert late.status_code == 200, late.content
    body = late.json()
    assert body["period_start"] == "2026-03-14"
    assert body["period_end"] == "2026-03-14"
    assert body["summary"]["total_jobs"] == 1
    assert body["summary"]["total_cost_usd"] == "0.00600000"
    assert list(body["job_types"]) == ["chat"]
    assert next_day.json()["summary"]["total_jobs"] == 1
    assert next_day.json()["summary"]["open_jobs"] == 1


def test_usage_of_empty_period_is_zero(seeded, get):
    response = get("/api/teams/acme-research/usage", {"period": "2025-12"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["summary"]["total_jobs"] == 0
    assert body["summary"]["total_cost_usd"] == "0.00000000"
    assert body["summary"]["avg_cost_per_job"] == "0.00000000"
    assert body["job_types"] == {}


def test_usage_counts_refunded_credits(seeded, get):
    job = seeded.jobs["J3"]
    settle_job(job=job, credits=1, reason="charge")
    refund_job(team_id="acme-research", job_id=job.id, reason="goodwill")

    response = get("/api/teams/acme-research/usage", {"period": "2026-03"})

    summary = response.json()["summary"]
    assert summary["credits_charged"] == 2
    assert summary["credits_refunded"] == 1


def test_team_reports_hide_provider_figures(seeded, get):
    bodies = [
        get("/api/teams/acme-research/usage", {"period": "2026-03"}).content,
        get("/api/teams/acme-research/jobs").content,
    ]

    for body in bodies:
        text = body.decode().lower()
        for hidden in ("openai", "anthropic", "gpt-4o", "claude", "provider", "markup"):
            assert hidden not in text


@pytest.mark.parametrize(
    "period", ["2026", "2026-3", "2026-13", "2026-02-30", "03-2026", "last-month", ""]
)
def test_usage_rejects_bad_period(seeded, get, period):
    response = get("/api/teams/acme-research/usage", {"period": period})

    assert_validation_error(response, "period")
    assert "YYYY-MM" in response.json()["errors"]["period"][0]
    assert "YYYY-MM-DD" in response.json()["errors"]["period"][0]


def test_usage_requires_period(seeded, get):
    response = get("/api/teams/acme-research/usage")

    assert_validation_error(response, "period")
    assert "YYYY-MM-DD" in response.json()["errors"]["period"][0]


def test_usage_query_count_does_not_grow(seeded, get, django_assert_num_queries):
    add_jobs_with_calls(seeded.research, 3)
    mark_keys_used()
    with django_assert_num_queries(4):
        small = get("/api/teams/acme-research/usage", {"period": "2026-03"})

    add_jobs_with_calls(seeded.research, 27)
    with django_assert_num_queries(4):
        large = get("/api/teams/acme-research/usage", {"period": "2026-03"})

    assert small.json()["summary"]["total_jobs"] == 9
    assert large.json()["summary"]["total_jobs"] == 36
    assert large.json()["summary"]["total_calls"] == 6 + 60


# Job list


def job_ids(response, seeded) -> list[str]:
    names = {str(job.id): name for name, job in seeded.jobs.items()}
    return [names[job["job_id"]] for job in response.json()["jobs"]]


def test_job_list_newest_first_with_call_figures(seeded, get):
    response = get("/api/teams/acme-research/jobs")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["team_id"] == "acme-research"
    assert body["total"] == 7
    assert body["limit"] == 100
    assert body["offset"] == 0
    assert job_ids(response, seeded) == ["J4", "J3", "J7", "J6", "J2", "J1", "J5"]
    first = body["jobs"][5]
    assert first == {
        "job_id": str(seeded.jobs["J1"].id),
        "job_type": "document_analysis",
        "status": "completed",
        "user_id": None,
        "created_at": "2026-03-02T09:00:00Z",
        "started_at": "2026-03-02T09:00:00Z",
        "completed_at": "2026-03-02T10:00:00Z",
        "error_message": None,
        "credit_applied": True,
        "credits_charged": 1,
        "total_calls": 3,
        "failed_calls": 1,
        "total_tokens": 3000,
        "total_cost_usd": "0.00090000",
        "metadata": {"file": "q1.pdf"},
    }


def test_job_list_includes_jobs_without_calls(seeded, get):
    response = get("/api/teams/acme-research/jobs", {"status": "cancelled"})

    jobs = response.json()["jobs"]
    assert [job["job_id"] for job in jobs] == [str(seeded.jobs["J6"].id)]
    assert jobs[0]["total_calls"] == 0
    assert jobs[0]["total_tokens"] == 0
    assert jobs[0]["total_cost_usd"] == "0.00000000"


def test_job_list_status_ignores_case(seeded, get):
    response = get("/api/teams/acme-research/jobs", {"status": "COMPLETED"})

    assert response.status_code == 200, response.content
    assert response.json()["total"] == 2
    assert job_ids(response, seeded) == ["J3", "J1"]


def test_job_list_rejects_unknown_status(seeded, get):
    response = get("/api/teams/acme-research/jobs", {"status": "done"})

    assert_validation_error(response, "status")


def test_job_list_filters_type_and_dates(seeded, get):
    by_type = get("/api/teams/acme-research/jobs", {"job_type": "chat"})
    by_dates = get(
        "/api/teams/acme-research/jobs",
        {"start_date": "2026-03-05", "end_date": "2026-03-14"},
    )

    assert job_ids(by_type, seeded) == ["J4", "J3", "J7", "J5"]
    assert by_type.json()["total"] == 4
    assert job_ids(by_dates, seeded) == ["J3", "J7", "J6", "J2"]
    assert by_dates.json()["total"] == 4


def test_job_list_ignores_empty_filters(seeded, get):
    response = get(
        "/api/teams/acme-research/jobs",
        {"status": "", "job_type": "", "start_date": "", "end_date": ""},
    )

    assert response.status_code == 200, response.content
    assert response.json()["total"] == 7


def test_job_list_total_counts_beyond_page(seeded, get):
    response = get("/api/teams/acme-research/jobs", {"limit": 2, "offset": 1})

    body = response.json()
    assert body["total"] == 7
    assert body["limit"] == 2
    assert body["offset"] == 1
    assert job_ids(response, seeded) == ["J3", "J7"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"start_date": "14/03/2026"}, "start_date"),
        ({"end_date": "2026-03-32"}, "end_date"),
        ({"start_date": "2026-03-10", "end_date": "2026-03-01"}, "end_date"),
    ],
)
def test_job_list_rejects_bad_query(seeded, get, params, field):
    response = get("/api/teams/acme-research/jobs", params)

    assert_validation_error(response, field)


def test_job_list_query_count_does_not_grow(seeded, get, django_assert_num_queries):
    add_jobs_with_calls(seeded.research, 3)
    mark_keys_used()
    with django_assert_num_queries(4):
        small = get("/api/teams/acme-research/jobs")

    add_jobs_with_calls(seeded.research, 27)
    with django_assert_num_queries(4):
        large = get("/api/teams/acme-research/jobs")

    assert small.json()["total"] == 10
    assert large.json()["total"] == 37
    assert len(large.json()["jobs"]) == 37
    assert all(job["total_calls"] == 2 for job in large.json()["jobs"][:30])


# Tenant isolation


TEAM_ROUTES = [
    "/api/teams/{team_id}/usage?period=2026-03",
    "/api/teams/{team_id}/jobs",
]


@pytest.mark.parametrize("route", TEAM_ROUTES)
def test_other_team_is_not_found(seeded, client, team, outsider, route):
    as_research = client.get(route.format(team_id="globex-ops"), **team.headers)
    as_outsider = client.get(route.format(team_id="acme-research"), **outsider.headers)
    unknown = client.get(route.format(team_id="no-such-team"), **team.headers)

    for response, team_id in [
        (as_research, "globex-ops"),
        (as_outsider, "acme-research"),
        (unknown, "no-such-team"),
    ]:
        assert response.status_code == 404
        assert response.json() == {
            "detail": f"Team '{team_id}' not found.",
            "code": "team_not_found",
        }


@pytest.mark.parametrize("route", TEAM_ROUTES)
def test_same_organization_team_is_not_found(seeded, client, team, route):
    response = client.get(route.format(team_id="acme-support"), **team.headers)

    assert response.status_code == 404
    assert response.json()["code"] == "team_not_found"


@pytest.mark.parametrize("route", TEAM_ROUTES)
def test_team_route_without_key_is_401(seeded, client, route):
    response = client.get(route.format(team_id="acme-research"))

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"


def test_outsider_sees_only_own_jobs(seeded, client, outsider):
    response = client.get("/api/teams/globex-ops/jobs", **outsider.headers)

    assert response.status_code == 200, response.content
    assert response.json()["total"] == 1
    assert response.json()["jobs"][0]["job_id"] == str(seeded.jobs["G1"].id)


def test_extreme_dates_are_not_server_errors(client, team, admin_headers):
    requests = [
        (f"/api/teams/{team.id}/usage?period=9999-12", team.headers),
        (f"/api/teams/{team.id}/usage?period=0001-01", team.headers),
        (
            f"/api/teams/{team.id}/jobs?start_date=0001-01-01&end_date=9999-12-31",
            team.headers,
        ),
        (
            "/api/jobs/organizations/acme/stats?start_date=0001-01-01&end_date=9999-12-31",
            admin_headers,
        ),
        (
            "/api/jobs/organizations/acme/analytics"
            "?start_date=0001-01-01&end_date=9999-12-31",
            admin_headers,
        ),
    ]

    for path, headers in requests:
        response = client.get(path, **headers)

        assert response.status_code == 200, path
