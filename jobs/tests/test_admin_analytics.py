"""Admin job reports, organization stats and analytics, and the dashboard.

The data set and its short job names (J1-J7, K1, K2, G1) come from
``seed_reports`` in test_reports.py.
"""

import pytest
from django.urls import URLPattern

from jobs import report_urls
from jobs.report_views import OwnTeamView
from jobs.services import create_job
from jobs.tests.test_reports import NOW, add_jobs_with_calls, seed_reports
from saasllm.views import AdminView
from teams import billing_urls
from teams.services import settle_job, suspend_team

ADMIN_ROUTES = [
    "/api/jobs/teams/acme-research",
    "/api/jobs/teams/acme-research/00000000-0000-0000-0000-000000000000",
    "/api/jobs/organizations/acme/stats",
    "/api/jobs/organizations/acme/analytics",
    "/api/stats/dashboard",
]


@pytest.fixture
def seeded(time_machine, team, team_factory, outsider):
    time_machine.move_to(NOW, tick=False)
    support = team_factory("acme-support", credits=20)
    return seed_reports(team.team, support.team, outsider.team)


@pytest.fixture
def api(client, admin_headers):
    """GET an admin path with the admin key."""

    def call(path, data=None):
        return client.get(path, data or {}, **admin_headers)

    return call


def names(response, seeded) -> list[str]:
    by_id = {str(job.id): name for name, job in seeded.jobs.items()}
    return [by_id[job["job_id"]] for job in response.json()["jobs"]]


def assert_validation_error(response, field):
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["errors"], body


# Authentication and routing


@pytest.mark.parametrize("path", ADMIN_ROUTES)
def test_admin_route_without_key_is_401(db, client, path):
    response = client.get(path)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_admin_key"
    assert response["WWW-Authenticate"] == "X-Admin-Key"


@pytest.mark.parametrize("path", ADMIN_ROUTES)
def test_team_key_is_not_admin_key(client, team, path):
    response = client.get(path, **team.headers)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_admin_key"


def test_routes_use_admin_or_own_team_view():
    patterns = [
        pattern
        for urls in (report_urls, billing_urls)
        for pattern in urls.urlpatterns
        if isinstance(pattern, URLPattern)
    ]

    assert patterns
    for pattern in patterns:
        view = pattern.callback.view_class
        if pattern.name.startswith("admin-"):
            assert issubclass(view, AdminView), pattern.name
        else:
            assert pattern.name.startswith("team-"), pattern.name
            assert issubclass(view, OwnTeamView), pattern.name


# Job list


def test_job_list_summaries(seeded, api):
    response = api("/api/jobs/teams/acme-research")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["total"] == 7
    assert body["page"] == 1
    assert body["page_size"] == 20
    assert body["total_pages"] == 1
    assert names(response, seeded) == ["J4", "J3", "J7", "J6", "J2", "J1", "J5"]
    assert body["jobs"][5] == {
        "job_id": str(seeded.jobs["J1"].id),
        "team_id": "acme-research",
        "organization_id": "acme",
        "user_id": None,
        "job_type": "document_analysis",
        "status": "completed",
        "created_at": "2026-03-02T09:00:00Z",
        "started_at": "2026-03-02T09:00:00Z",
        "completed_at": "2026-03-02T10:00:00Z",
        "error_message": None,
        "total_calls": 3,
        "successful_calls": 2,
        "failed_calls": 1,
        "retry_count": 1,
        "total_tokens": 3000,
        "provider_cost_usd": "0.00090000",
        "client_cost_usd": "0.00090000",
        "margin_usd": "0.00000000",
        "total_cost_usd": "0.00090000",
        "avg_latency_ms": 200,
        "credit_applied": True,
        "credits_charged": 1,
        "job_metadata": {"file": "q1.pdf"},
    }


def test_job_list_includes_jobs_without_calls(seeded, api):
    response = api("/api/jobs/teams/acme-research", {"status": "pending"})

    jobs = response.json()["jobs"]
    assert names(response, seeded) == ["J7"]
    assert jobs[0]["total_calls"] == 0
    assert jobs[0]["retry_count"] == 0
    assert jobs[0]["client_cost_usd"] == "0.00000000"
    assert jobs[0]["avg_latency_ms"] == 0


def test_job_list_margin_from_markup(seeded, api):
    response = api("/api/jobs/teams/acme-support", {"job_type": "chat"})

    job = response.json()["jobs"][0]
    assert names(response, seeded) == ["K1"]
    assert job["provider_cost_usd"] == "0.00600000"
    assert job["client_cost_usd"] == "0.00900000"
    assert job["margin_usd"] == "0.00300000"
    assert job["avg_latency_ms"] == 600


def test_job_list_pages(seeded, api):
    response = api("/api/jobs/teams/acme-research", {"page": 2, "page_size": 2})

    body = response.json()
    assert body["total"] == 7
    assert body["page"] == 2
    assert body["page_size"] == 2
    assert body["total_pages"] == 4
    assert names(response, seeded) == ["J7", "J6"]


def test_job_list_page_beyond_last_is_empty(seeded, api):
    response = api("/api/jobs/teams/acme-research", {"page": 9})

    assert response.status_code == 200
    assert response.json()["jobs"] == []
    assert response.json()["total"] == 7


def test_job_list_filters(seeded, api):
    in_progress = api("/api/jobs/teams/acme-research", {"status": "In_Progress"})
    one_day = api(
        "/api/jobs/teams/acme-research",
        {"start_date": "2026-03-14", "end_date": "2026-03-14"},
    )
    chat_since = api(
        "/api/jobs/teams/acme-research",
        {"job_type": "chat", "start_date": "2026-03-12"},
    )

    assert names(in_progress, seeded) == ["J4", "J5"]
    assert names(one_day, seeded) == ["J3"]
    assert names(chat_since, seeded) == ["J4", "J3", "J7"]
    assert chat_since.json()["total"] == 3


@pytest.mark.parametrize(
    "prefix",
    [
        lambda text: text[:8],
        lambda text: text[:13],
        lambda text: text[:13].replace("-", ""),
        lambda text: text[:20].upper(),
        lambda text: text,
    ],
)
def test_job_list_job_id_prefix(seeded, api, prefix):
    job_id = str(seeded.jobs["J1"].id)

    response = api("/api/jobs/teams/acme-research", {"job_id_filter": prefix(job_id)})

    assert response.status_code == 200, response.content
    assert names(response, seeded) == ["J1"]
    assert response.json()["total"] == 1


def test_job_list_job_id_prefix_of_other_team(seeded, api):
    job_id = str(seeded.jobs["K1"].id)

    response = api("/api/jobs/teams/acme-research", {"job_id_filter": job_id})

    assert response.json()["total"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"job_id_filter": "xyz"}, "job_id_filter"),
        ({"job_id_filter": "1234' OR '1'='1"}, "job_id_filter"),
        ({"job_id_filter": "a%"}, "job_id_filter"),
        ({"job_id_filter": "0" * 33}, "job_id_filter"),
        ({"status": "done"}, "status"),
        ({"page": 0}, "page"),
        ({"page_size": 101}, "page_size"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"start_date": "2026-03-10", "end_date": "2026-03-09"}, "end_date"),
    ],
)
def test_job_list_rejects_bad_query(seeded, api, params, field):
    response = api("/api/jobs/teams/acme-research", params)

    assert_validation_error(response, field)


def test_job_list_unknown_team(db, api):
    response = api("/api/jobs/teams/no-such-team")

    assert response.status_code == 404
    assert response.json()["code"] == "team_not_found"


def test_job_list_query_count_does_not_grow(seeded, api, django_assert_num_queries):
    add_jobs_with_calls(seeded.research, 3)
    with django_assert_num_queries(4):
        small = api("/api/jobs/teams/acme-research", {"page_size": 100})

    add_jobs_with_calls(seeded.research, 27)
    with django_assert_num_queries(4):
        large = api("/api/jobs/teams/acme-research", {"page_size": 100})

    assert small.json()["total"] == 10
    assert large.json()["total"] == 37
    assert len(large.json()["jobs"]) == 37


# Job detail


def test_job_detail_lists_calls_in_order(seeded, api):
    job = seeded.jobs["J1"]

    response = api(f"/api/jobs/teams/acme-research/{job.id}")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["job"]["job_id"] == str(job.id)
    assert body["job"]["retry_count"] == 1
    assert body["job"]["client_cost_usd"] == "0.00090000"
    assert [call["purpose"] for call in body["calls"]] == [
        "extract",
        "summary",
        "summary",
    ]
    first, failed = body["calls"][0], body["calls"][1]
    assert first == {
        "call_id": first["call_id"],
        "alias": "chat-fast",
        "provider": "openai",
        "provider_model": "gpt-4o-mini",
        "purpose": "extract",
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "total_tokens": 1500,
        "input_price_per_million": "0.150000",
        "output_price_per_million": "0.600000",
        "provider_cost_usd": "0.00045000",
        "client_cost_usd": "0.00045000",
        "margin_usd": "0.00000000",
        "latency_ms": 100,
        "attempt_count": 1,
        "finish_reason": None,
        "error_code": None,
        "error_message": None,
        "error_detail": None,
        "created_at": "2026-03-02T09:01:00Z",
        "request_data": None,
        "response_data": None,
    }
    assert failed["error_code"] == "provider_timeout"
    assert failed["error_message"] == "The provider timed out."
    assert failed["total_tokens"] == 0
    assert failed["client_cost_usd"] == "0.00000000"


def test_job_detail_shows_stored_bodies(seeded, api):
    call = seeded.jobs["J3"].calls.get()
    call.request_data = {"messages": [{"role": "user", "content": "hi"}]}
    call.response_data = {"content": "hello", "finish_reason": "stop"}
    call.save(update_fields=["request_data", "response_data"])

    response = api(f"/api/jobs/teams/acme-research/{seeded.jobs['J3'].id}")

    call_body = response.json()["calls"][0]
    assert call_body["request_data"] == call.request_data
    assert call_body["response_data"] == call.response_data
    assert call_body["margin_usd"] == "0.00000000"


def test_job_detail_of_job_without_calls(seeded, api):
    response = api(f"/api/jobs/teams/acme-research/{seeded.jobs['J6'].id}")

    assert response.status_code == 200, response.content
    assert response.json()["calls"] == []
    assert response.json()["job"]["status"] == "cancelled"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/jobs/teams/acme-research/{K1}", "job_not_found"),
        ("/api/jobs/teams/acme-research/not-a-uuid", "job_not_found"),
        (
            "/api/jobs/teams/acme-research/00000000-0000-0000-0000-000000000000",
            "job_not_found",
        ),
        ("/api/jobs/teams/no-such-team/{K1}", "team_not_found"),
    ],
)
def test_job_detail_not_found(seeded, api, path, code):
    response = api(path.format(K1=seeded.jobs["K1"].id))

    assert response.status_code == 404
    assert response.json()["code"] == code


def test_job_detail_query_count(seeded, api, django_assert_num_queries):
    job = seeded.jobs["J1"]

    with django_assert_num_queries(3):
        response = api(f"/api/jobs/teams/acme-research/{job.id}")

    assert len(response.json()["calls"]) == 3


# Organization stats


def test_organization_stats(seeded, api):
    response = api("/api/jobs/organizations/acme/stats")

    assert response.status_code == 200, response.content
    assert response.json() == {
        "organization_id": "acme",
        "organization_name": "Acme Inc.",
        "start_date": None,
        "end_date": None,
        "total_jobs": 9,
        "completed_jobs": 3,
        "failed_jobs": 2,
        "cancelled_jobs": 1,
        "pending_jobs": 1,
        "in_progress_jobs": 2,
        "open_jobs": 3,
        "total_teams": 2,
        "active_teams": 2,
        "total_llm_calls": 9,
        "successful_calls": 7,
        "failed_calls": 2,
        "total_tokens": 9900,
        "total_cost_usd": "0.01747500",
        "client_cost_usd": "0.01747500",
        "provider_cost_usd": "0.01425000",
        "margin_usd": "0.00322500",
        "total_credits_used": 4,
        "top_teams": [
            {"team_id": "acme-research", "job_count": 7, "credits_used": 2},
            {"team_id": "acme-support", "job_count": 2, "credits_used": 2},
        ],
    }


def test_organization_stats_respects_dates(seeded, api):
    response = api(
        "/api/jobs/organizations/acme/stats",
        {"start_date": "2026-03-01", "end_date": "2026-03-14"},
    )

    body = response.json()
    assert body["start_date"] == "2026-03-01"
    assert body["end_date"] == "2026-03-14"
    assert body["total_jobs"] == 6
    assert body["completed_jobs"] == 3
    assert body["failed_jobs"] == 1
    assert body["in_progress_jobs"] == 0
    assert body["total_llm_calls"] == 7
    assert body["successful_calls"] == 5
    assert body["failed_calls"] == 2
    assert body["total_tokens"] == 6900
    assert body["client_cost_usd"] == "0.01635000"
    assert body["provider_cost_usd"] == "0.01335000"
    assert body["margin_usd"] == "0.00300000"
    assert body["total_credits_used"] == 4
    assert body["top_teams"] == [
        {"team_id": "acme-research", "job_count": 5, "credits_used": 2},
        {"team_id": "acme-support", "job_count": 1, "credits_used": 2},
    ]


def test_organization_stats_only_own_organization(seeded, api):
    response = api("/api/jobs/organizations/globex/stats")

    body = response.json()
    assert body["total_jobs"] == 1
    assert body["total_llm_calls"] == 1
    assert body["client_cost_usd"] == "0.00045000"
    assert body["top_teams"] == [
        {"team_id": "globex-ops", "job_count": 1, "credits_used": 1}
    ]


# Organization analytics


SPEND_FIELDS = (
    "spend",
    "provider_cost",
    "margin",
    "count",
    "successful",
    "failed",
    "tokens",
)
DAY_FIELDS = ("date", "spend", "provider_cost", "calls")


def spend_rows(keys: list[str], rows: list[tuple]) -> list[dict]:
    """Build expected spend rows: the group's ``keys``, then the SPEND_FIELDS."""
    return [dict(zip([*keys, *SPEND_FIELDS], row, strict=True)) for row in rows]


def test_organization_analytics(seeded, api):
    response = api("/api/jobs/organizations/acme/analytics")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["organization_name"] == "Acme Inc."
    assert body["total_spend"] == "0.01747500"
    assert body["total_provider_cost"] == "0.01425000"
    assert body["total_margin"] == "0.00322500"
    assert body["total_requests"] == 9
    assert body["successful_requests"] == 7
    assert body["failed_requests"] == 2
    assert body["failure_rate"] == "0.2222"
    assert body["total_tokens"] == 9900
    assert body["daily_spend"] == [
        dict(zip(DAY_FIELDS, row, strict=True))
        for row in [
            ("2026-01-20", "0.00067500", "0.00045000", 1),
            ("2026-03-01", "0.00045000", "0.00045000", 1),
            ("2026-03-02", "0.00090000", "0.00090000", 3),
            ("2026-03-03", "0.00900000", "0.00600000", 1),
            ("2026-03-05", "0.00000000", "0.00000000", 1),
            ("2026-03-14", "0.00600000", "0.00600000", 1),
            ("2026-03-15", "0.00045000", "0.00045000", 1),
        ]
    ]
    assert body["spend_per_team"] == spend_rows(
        ["team_id"],
        [
            ("acme-support", "0.00967500", "0.00645000", "0.00322500", 2, 2, 0, 2700),
            ("acme-research", "0.00780000", "0.00780000", "0.00000000", 7, 5, 2, 7200),
        ],
    )
    assert body["top_aliases"] == spend_rows(
        ["alias"],
        [
            ("chat-smart", "0.01500000", "0.01200000", "0.00300000", 3, 2, 1, 2400),
            ("chat-fast", "0.00202500", "0.00180000", "0.00022500", 5, 4, 1, 6000),
            ("chat-fast-eu", "0.00045000", "0.00045000", "0.00000000", 1, 1, 0, 1500),
        ],
    )
    assert body["top_models"][0] == {"model": "chat-smart", **body["top_aliases"][0]}
    providers = [
        ("anthropic", "0.01500000", "0.01200000", "0.00300000", 3, 2, 1, 2400),
        ("openai", "0.00247500", "0.00225000", "0.00022500", 6, 5, 1, 7500),
    ]
    models = ["claude-sonnet", "gpt-4o-mini"]
    assert body["top_provider_models"] == spend_rows(
        ["provider", "provider_model"],
        [
            (row[0], model, *row[1:])
            for row, model in zip(providers, models, strict=True)
        ],
    )
    assert body["provider_usage"] == spend_rows(["provider"], providers)
    assert body["job_status_distribution"] == {
        "pending": 1,
        "in_progress": 2,
        "completed": 3,
        "failed": 2,
        "cancelled": 1,
    }


def test_organization_analytics_respects_dates(seeded, api):
    response = api(
        "/api/jobs/organizations/acme/analytics",
        {"start_date": "2026-03-02", "end_date": "2026-03-03"},
    )

    body = response.json()
    assert body["start_date"] == "2026-03-02"
    assert body["end_date"] == "2026-03-03"
    assert body["total_spend"] == "0.00990000"
    assert body["total_requests"] == 4
    assert [day["date"] for day in body["daily_spend"]] == ["2026-03-02", "2026-03-03"]
    assert [row["team_id"] for row in body["spend_per_team"]] == [
        "acme-support",
        "acme-research",
    ]
    assert [row["alias"] for row in body["top_aliases"]] == [
        "chat-smart",
        "chat-fast",
    ]
    assert body["job_status_distribution"] == {
        "pending": 0,
        "in_progress": 0,
        "completed": 2,
        "failed": 0,
        "cancelled": 0,
    }


def test_organization_analytics_keeps_top_ten(seeded, api):
    job = seeded.jobs["J1"]
    for index in range(12):
        job.calls.create(
            team_id=job.team_id,
            organization_id=job.organization_id,
            alias=f"extra-{index:02d}",
            provider="openai",
            provider_model=f"extra-model-{index:02d}",
            client_cost_usd=index + 1,
            provider_cost_usd=index,
        )

    body = api("/api/jobs/organizations/acme/analytics").json()

    assert len(body["top_aliases"]) == 10
    assert body["top_aliases"][0]["alias"] == "extra-11"
    assert body["top_aliases"][0]["spend"] == "12.00000000"
    assert len(body["top_provider_models"]) == 10
    assert len(body["provider_usage"]) == 2


@pytest.mark.parametrize("kind", ["stats", "analytics"])
def test_organization_reports_unknown_organization(db, api, kind):
    response = api(f"/api/jobs/organizations/no-such-org/{kind}")

    assert response.status_code == 404
    assert response.json() == {
        "detail": "Organization 'no-such-org' not found.",
        "code": "organization_not_found",
    }


@pytest.mark.parametrize("kind", ["stats", "analytics"])
def test_organization_reports_reject_reversed_dates(db, api, kind):
    response = api(
        f"/api/jobs/organizations/acme/{kind}",
        {"start_date": "2026-03-02", "end_date": "2026-03-01"},
    )

    assert_validation_error(response, "end_date")


@pytest.mark.parametrize(("kind", "queries"), [("stats", 5), ("analytics", 8)])
def test_organization_reports_query_count_does_not_grow(
    seeded, api, django_assert_num_queries, kind, queries
):
    add_jobs_with_calls(seeded.research, 3)
    with django_assert_num_queries(queries):
        api(f"/api/jobs/organizations/acme/{kind}")

    add_jobs_with_calls(seeded.research, 27)
    with django_assert_num_queries(queries):
        response = api(f"/api/jobs/organizations/acme/{kind}")

    assert response.status_code == 200


# Dashboard


def test_dashboard(seeded, api):
    settle_job(job=seeded.jobs["J1"], credits=1, reason="charge")
    create_job(team=seeded.research, job_type="chat")

    response = api("/api/stats/dashboard")

    assert response.status_code == 200, response.content
    assert response.json() == {
        "organizations": 2,
        "teams": 3,
        "active_teams": 3,
        "active_jobs": 4,
        "credits_allocated": 40,
        "credits_used": 1,
        "credits_remaining": 39,
        "credits_held": 1,
        "credits_available": 38,
        "totalCredits": 40,
        "creditsUsed": 1,
        "creditsRemaining": 39,
        "calls_today": 1,
        "spend_today_usd": "0.00045000",
        "calls_last_30_days": 9,
        "failed_calls_last_30_days": 2,
        "failed_call_rate_last_30_days": "0.2222",
        "spend_last_30_days_usd": "0.01725000",
        "provider_cost_last_30_days_usd": "0.01425000",
        "teams_low_on_credits": [
            {
                "team_id": "acme-research",
                "organization_id": "acme",
                "credits_allocated": 10,
                "credits_remaining": 9,
                "credits_available": 8,
                "remaining_ratio": "0.9000",
            },
            {
                "team_id": "globex-ops",
                "organization_id": "globex",
                "credits_allocated": 10,
                "credits_remaining": 10,
                "credits_available": 10,
                "remaining_ratio": "1.0000",
            },
            {
                "team_id": "acme-support",
                "organization_id": "acme",
                "credits_allocated": 20,
                "credits_remaining": 20,
                "credits_available": 20,
                "remaining_ratio": "1.0000",
            },
        ],
    }


def test_dashboard_leaves_out_suspended_teams(seeded, api):
    suspend_team(team_id="acme-research")

    body = api("/api/stats/dashboard").json()

    assert body["active_teams"] == 2
    assert [team["team_id"] for team in body["teams_low_on_credits"]] == [
        "globex-ops",
        "acme-support",
    ]


def test_dashboard_on_empty_database(db, api):
    body = api("/api/stats/dashboard").json()

    assert body["teams"] == 0
    assert body["credits_allocated"] == 0
    assert body["failed_call_rate_last_30_days"] == "0.0000"
    assert body["spend_today_usd"] == "0.00000000"
    assert body["teams_low_on_credits"] == []


def test_dashboard_query_count_does_not_grow(seeded, api, django_assert_num_queries):
    add_jobs_with_calls(seeded.research, 3)
    with django_assert_num_queries(5):
        api("/api/stats/dashboard")

    add_jobs_with_calls(seeded.research, 27)
    with django_assert_num_queries(5):
        response = api("/api/stats/dashboard")

    assert response.json()["calls_last_30_days"] == 9 + 60
