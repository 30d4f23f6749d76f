"""Team-facing credit endpoints: balance, ledger and credit check."""

from datetime import UTC, datetime, timedelta

import pytest

from jobs.models import Job
from jobs.services import create_job
from teams.models import Team, VirtualKey
from teams.services import allocate_credits, settle_job, update_team

REFILLED_AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

TEAM_ROUTES = [
    ("get", "/api/credits/teams/{team_id}/balance"),
    ("get", "/api/credits/teams/{team_id}/transactions"),
    ("post", "/api/credits/teams/{team_id}/check"),
]


@pytest.fixture
def call(client, team):
    """Call a path with the team's key."""

    def send(method, path, data=None, fixture=None):
        return getattr(client, method)(path, data or {}, **(fixture or team).headers)

    return send


def open_jobs(team, count: int) -> None:
    """Open ``count`` jobs, each holding one of the team's credits."""
    for _ in range(count):
        create_job(team=team.team, job_type="chat")


def assert_validation_error(response, field):
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["errors"], body


# Balance


def test_balance_of_own_team(call, team):
    open_jobs(team, 3)
    Team.objects.filter(pk=team.id).update(
        auto_refill_enabled=True,
        refill_amount=100,
        refill_period=Team.RefillPeriod.MONTHLY,
        last_refill_at=REFILLED_AT,
    )
    stored = Team.objects.get(pk=team.id)

    response = call("get", "/api/credits/teams/acme-research/balance")

    assert response.status_code == 200, response.content
    assert response.json() == {
        "team_id": "acme-research",
        "organization_id": "acme",
        "status": "active",
        "credits_allocated": 10,
        "credits_used": 0,
        "credits_remaining": 10,
        "credits_held": 3,
        "credits_available": 7,
        "budget_mode": "job_based",
        "credits_per_dollar": "10.0000",
        "tokens_per_credit": 10000,
        "auto_refill_enabled": True,
        "refill_amount": 100,
        "refill_period": "monthly",
        "last_refill_at": "2026-03-01T09:00:00Z",
        "created_at": stored.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": stored.updated_at.isoformat().replace("+00:00", "Z"),
    }


def test_balance_without_refill_settings(call):
    body = call("get", "/api/credits/teams/acme-research/balance").json()

    assert body["auto_refill_enabled"] is False
    assert body["refill_amount"] is None
    assert body["refill_period"] is None
    assert body["last_refill_at"] is None


def test_balance_hides_markup(call, team):
    update_team(team_id=team.id, fields={"markup_percent": 25})

    response = call("get", "/api/credits/teams/acme-research/balance")

    assert response.status_code == 200
    assert "markup" not in response.content.decode()


# Transactions


def charge_job(team_id: str, credits: int) -> Job:
    """Create a job of the team and charge it through the ledger."""
    team = Team.objects.get(pk=team_id)
    job = Job.objects.create(
        team=team, organization_id=team.organization_id, job_type="chat"
    )
    settle_job(job=job, credits=credits, reason=f"Job {job.id} (chat) completed")
    return job


@pytest.fixture
def ledger(time_machine, team):
    """After the team's initial 10 credits: +5, a charge of 2, +1, a minute apart.

    Returns the time of the initial allocation and the charged job.
    """
    start = datetime.now(UTC)
    time_machine.move_to(start + timedelta(minutes=1), tick=False)
    allocate_credits(team_id=team.id, amount=5, reason="Top-up", actor="ops@acme")
    time_machine.move_to(start + timedelta(minutes=2), tick=False)
    job = charge_job(team.id, 2)
    time_machine.move_to(start + timedelta(minutes=3), tick=False)
    allocate_credits(team_id=team.id, amount=1, reason="Bonus")
    return start, job


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_transactions_newest_first(call, team, ledger):
    start, job = ledger

    response = call("get", "/api/credits/teams/acme-research/transactions")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["team_id"] == "acme-research"
    assert body["count"] == 4
    assert body["next"] is None
    assert body["previous"] is None
    assert [row["credits_amount"] for row in body["results"]] == [1, -2, 5, 10]
    deduction = body["results"][1]
    assert deduction == {
        "transaction_id": deduction["transaction_id"],
        "transaction_type": "deduction",
        "credits_amount": -2,
        "credits_before": 15,
        "credits_after": 13,
        "job_id": str(job.id),
        "reason": f"Job {job.id} (chat) completed",
        "created_at": deduction["created_at"],
    }
    assert parse_time(deduction["created_at"]) == start + timedelta(minutes=2)
    assert body["results"][0]["job_id"] is None
    assert body["results"][0]["transaction_type"] == "allocation"
    assert body["results"][0]["credits_after"] == 14
    assert body["results"][2]["reason"] == "Top-up"
    assert "actor" not in body["results"][2]


def test_transactions_paginate(call, ledger):
    response = call(
        "get",
        "/api/credits/teams/acme-research/transactions",
        {"limit": 2, "offset": 1},
    )

    body = response.json()
    assert body["count"] == 4
    assert [row["credits_amount"] for row in body["results"]] == [-2, 5]
    assert "limit=2" in body["next"]
    assert "offset=3" in body["next"]
    assert body["previous"] is not None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "all"}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
def test_transactions_reject_bad_page(call, params, field):
    response = call("get", "/api/credits/teams/acme-research/transactions", params)

    assert_validation_error(response, field)


def test_transactions_query_count_does_not_grow(call, team, django_assert_num_queries):
    for _ in range(3):
        allocate_credits(team_id=team.id, amount=1)
    VirtualKey.objects.update(last_used_at=datetime.now(UTC))
    with django_assert_num_queries(3):
        small = call("get", "/api/credits/teams/acme-research/transactions")

    for _ in range(30):
        allocate_credits(team_id=team.id, amount=1)
    with django_assert_num_queries(3):
        large = call("get", "/api/credits/teams/acme-research/transactions")

    assert small.json()["count"] == 4
    assert large.json()["count"] == 34
    assert len(large.json()["results"]) == 34


# Credit check


def test_check_compares_with_available_credits(call, team):
    open_jobs(team, 1)

    enough = call("post", "/api/credits/teams/acme-research/check?credits_needed=9")
    short = call("post", "/api/credits/teams/acme-research/check?credits_needed=10")

    assert enough.status_code == 200, enough.content
    assert enough.json() == {
        "team_id": "acme-research",
        "has_credits": True,
        "credits_available": 9,
        "credits_remaining": 10,
        "credits_needed": 9,
    }
    assert short.status_code == 200
    assert short.json()["has_credits"] is False
    assert short.json()["credits_needed"] == 10


def test_check_needs_one_credit_by_default(call, team):
    open_jobs(team, 10)

    response = call("post", "/api/credits/teams/acme-research/check")

    assert response.status_code == 200
    assert response.json()["credits_needed"] == 1
    assert response.json()["has_credits"] is False
    assert response.json()["credits_available"] == 0


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "1e3"])
def test_check_rejects_bad_credits_needed(call, value):
    response = call(
        "post", f"/api/credits/teams/acme-research/check?credits_needed={value}"
    )

    assert_validation_error(response, "credits_needed")


def test_check_treats_empty_value_as_default(call):
    response = call("post", "/api/credits/teams/acme-research/check?credits_needed=")

    assert response.status_code == 200, response.content
    assert response.json()["credits_needed"] == 1


def test_check_reads_current_balance(call, team):
    charge_job(team.id, 4)

    response = call("post", "/api/credits/teams/acme-research/check?credits_needed=6")

    assert response.json()["has_credits"] is True
    assert response.json()["credits_remaining"] == 6


# Tenant isolation


@pytest.mark.parametrize(("method", "route"), TEAM_ROUTES)
def test_other_team_is_not_found(call, team, outsider, method, route):
    as_team = call(method, route.format(team_id="globex-ops"))
    as_outsider = call(method, route.format(team_id="acme-research"), None, outsider)
    unknown = call(method, route.format(team_id="no-such-team"))

    for response, team_id in [
        (as_team, "globex-ops"),
        (as_outsider, "acme-research"),
        (unknown, "no-such-team"),
    ]:
        assert response.status_code == 404
        assert response.json() == {
            "detail": f"Team '{team_id}' not found.",
            "code": "team_not_found",
        }


@pytest.mark.parametrize(("method", "route"), TEAM_ROUTES)
def test_same_organization_team_is_not_found(call, team_factory, method, route):
    team_factory("acme-support")

    response = call(method, route.format(team_id="acme-support"))

    assert response.status_code == 404
    assert response.json()["code"] == "team_not_found"


@pytest.mark.parametrize(("method", "route"), TEAM_ROUTES)
def test_route_without_key_is_401(client, team, method, route):
    response = getattr(client, method)(route.format(team_id="acme-research"))

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_admin_key_is_not_team_key(client, team, admin_headers):
    response = client.get("/api/credits/teams/acme-research/balance", **admin_headers)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
