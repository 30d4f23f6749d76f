"""Admin credit operations and billing settings: replenish, refund, adjust, rates."""

import json
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.db import connection, connections
from django.test import Client

from jobs.models import Job
from teams.models import CreditTransaction, Team

NEW_ROUTES = [
    ("post", "/api/credits/teams/acme-research/replenish"),
    ("post", "/api/credits/teams/acme-research/refund"),
    ("post", "/api/credits/teams/acme-research/adjust"),
    ("patch", "/api/credits/teams/acme-research/budget-mode"),
    ("get", "/api/credits/teams/acme-research/conversion-rates"),
    ("patch", "/api/credits/teams/acme-research/conversion-rates"),
    ("post", "/api/credits/teams/acme-research/configure-auto-refill"),
    ("patch", "/api/teams/acme-research/markup"),
]
FROZEN_NOW = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)


def send(client, method, path, body=None, headers=None):
    kwargs = dict(headers or {})
    if body is not None and method != "get":
        kwargs["data"] = json.dumps(body)
    return getattr(client, method)(path, content_type="application/json", **kwargs)


@pytest.fixture
def api(client, admin_headers):
    """Call an admin endpoint with the admin key."""

    def call(method, path, body=None):
        return send(client, method, path, body, admin_headers)

    return call


def run_job(client, owner, status="completed"):
    """Create a job for ``owner``, make one call, close it and return the job."""
    created = send(
        client, "post", "/api/jobs/create", {"job_type": "report"}, owner.headers
    )
    job_id = created.json()["job_id"]
    call = send(
        client,
        "post",
        f"/api/jobs/{job_id}/llm-call",
        {
            "model": "chat-fast",
            "messages": [{"role": "user", "content": "Summarise the quarterly report"}],
            # Keeps the call's credit reservation within a small team's balance.
            "max_tokens": 5,
        },
        owner.headers,
    )
    assert call.status_code == 200, call.content
    closed = send(
        client,
        "post",
        f"/api/jobs/{job_id}/complete",
        {"status": status},
        owner.headers,
    )
    assert closed.status_code == 200, closed.content
    return Job.objects.get(pk=job_id)


def open_job(client, owner):
    created = send(
        client, "post", "/api/jobs/create", {"job_type": "report"}, owner.headers
    )
    assert created.status_code == 201, created.content
    return Job.objects.get(pk=created.json()["job_id"])


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response.json()["code"] == code


def assert_validation_error(response, field):
    assert_error(response, 422, "validation_error")
    assert field in response.json()["errors"], response.json()


def ledger(team_id):
    return list(
        CreditTransaction.objects.filter(team_id=team_id).order_by("created_at")
    )


# Authentication


@pytest.mark.parametrize(("method", "path"), NEW_ROUTES)
def test_route_without_admin_key_is_401(client, team, method, path):
    response = send(client, method, path, {})

    assert_error(response, 401, "invalid_admin_key")
    assert response["WWW-Authenticate"] == "X-Admin-Key"


@pytest.mark.parametrize(("method", "path"), NEW_ROUTES)
def test_route_with_team_key_is_401(client, team, method, path):
    response = send(client, method, path, {}, team.headers)

    assert_error(response, 401, "invalid_admin_key")


@pytest.mark.parametrize(("method", "path"), NEW_ROUTES)
def test_route_for_unknown_team_is_404(api, db, method, path):
    response = api(method, path.replace("acme-research", "nobody"), {})

    assert_error(response, 404, "not_found")


# Replenish


@time_machine.travel(FROZEN_NOW, tick=False)
def test_replenish_subscription(api, team):
    response = api(
        "post",
        "/api/credits/teams/acme-research/replenish",
        {
            "credits": 25,
            "payment_type": "subscription",
            "payment_amount_usd": "49.00",
            "reason": "December plan",
        },
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["team_id"] == "acme-research"
    assert body["credits_added"] == 25
    assert body["credits_before"] == 10
    assert body["credits_after"] == 35
    assert body["payment_type"] == "subscription"
    assert body["payment_amount_usd"] == "49.00"
    assert body["transaction"]["transaction_type"] == "subscription_payment"
    assert body["transaction"]["credits_amount"] == 25
    entry = CreditTransaction.objects.get(pk=body["transaction"]["transaction_id"])
    assert entry.type == "subscription_payment"
    assert entry.amount == 25
    assert entry.payment_amount_usd == Decimal("49.00")
    assert entry.reason == "December plan"
    assert entry.actor != ""
    team_row = Team.objects.get(pk="acme-research")
    assert team_row.credits_allocated == 35
    assert team_row.credits_used == 0
    assert team_row.last_refill_at == FROZEN_NOW


def test_replenish_one_time_keeps_last_refill(api, team):
    response = api(
        "post",
        "/api/credits/teams/acme-research/replenish",
        {"credits": 5, "payment_type": "ONE_TIME"},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["payment_type"] == "one_time"
    assert body["payment_amount_usd"] is None
    entry = CreditTransaction.objects.get(pk=body["transaction"]["transaction_id"])
    assert entry.type == "one_time_payment"
    assert entry.payment_amount_usd is None
    assert entry.reason == "One-time payment"
    team_row = Team.objects.get(pk="acme-research")
    assert team_row.credits_allocated == 15
    assert team_row.last_refill_at is None


def test_replenish_reports_remaining_not_allocated(api, client, team):
    run_job(client, team)

    response = api(
        "post",
        "/api/credits/teams/acme-research/replenish",
        {"credits": 5, "payment_type": "one_time", "payment_amount_usd": 2.5},
    )

    body = response.json()
    assert body["credits_before"] == 9
    assert body["credits_after"] == 14
    assert body["payment_amount_usd"] == "2.50"
    assert Team.objects.get(pk="acme-research").credits_allocated == 15
    entry = CreditTransaction.objects.get(pk=body["transaction"]["transaction_id"])
    assert entry.reason == "One-time payment of 2.50 USD"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payment_type": "one_time"}, "credits"),
        ({"credits": 0, "payment_type": "one_time"}, "credits"),
        ({"credits": -5, "payment_type": "one_time"}, "credits"),
        ({"credits": "5", "payment_type": "one_time"}, "credits"),
        ({"credits": 1.5, "payment_type": "one_time"}, "credits"),
        ({"credits": 10**13, "payment_type": "one_time"}, "credits"),
        ({"credits": 5}, "payment_type"),
        ({"credits": 5, "payment_type": "monthly"}, "payment_type"),
        (
            {"credits": 5, "payment_type": "one_time", "payment_amount_usd": "-1"},
            "payment_amount_usd",
        ),
        (
            {"credits": 5, "payment_type": "one_time", "payment_amount_usd": "1.234"},
            "payment_amount_usd",
        ),
        (
            {"credits": 5, "payment_type": "one_time", "payment_amount_usd": "NaN"},
            "payment_amount_usd",
        ),
        (
            {"credits": 5, "payment_type": "one_time", "reason": "x" * 501},
            "reason",
        ),
    ],
)
def test_replenish_invalid_is_422(api, team, body, field):
    response = api("post", "/api/credits/teams/acme-research/replenish", body)

    assert_validation_error(response, field)
    assert len(ledger("acme-research")) == 1
    assert Team.objects.get(pk="acme-research").credits_allocated == 10


# Refund


def test_refund_returns_the_charge(api, client, team_factory):
    owner = team_factory(
        "acme-tokens", credits=50, budget_mode="consumption_tokens", tokens_per_credit=1
    )
    job = run_job(client, owner)
    assert job.credits_charged > 1

    response = api(
        "post",
        "/api/credits/teams/acme-tokens/refund",
        {"job_id": str(job.id), "reason": "Wrong answer"},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["team_id"] == "acme-tokens"
    assert body["job_id"] == str(job.id)
    assert body["credits_refunded"] == job.credits_charged
    assert body["credits_before"] == 50 - job.credits_charged
    assert body["credits_after"] == 50
    assert body["transaction"]["transaction_type"] == "refund"
    assert body["transaction"]["job_id"] == str(job.id)
    refund = CreditTransaction.objects.get(job=job, type="refund")
    assert refund.amount == job.credits_charged
    assert refund.reason == "Wrong answer"
    team_row = Team.objects.get(pk="acme-tokens")
    assert team_row.credits_used == 0
    assert team_row.credits_allocated == 50


def test_second_refund_is_409(api, client, team):
    job = run_job(client, team)
    path = "/api/credits/teams/acme-research/refund"
    api("post", path, {"job_id": str(job.id)})

    response = api("post", path, {"job_id": str(job.id)})

    assert_error(response, 409, "already_refunded")
    assert CreditTransaction.objects.filter(job=job, type="refund").count() == 1
    assert Team.objects.get(pk="acme-research").credits_used == 0


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_refund_of_uncharged_job_is_409(api, client, team, status):
    job = run_job(client, team, status=status)

    response = api(
        "post", "/api/credits/teams/acme-research/refund", {"job_id": str(job.id)}
    )

    assert_error(response, 409, "nothing_to_refund")
    assert not CreditTransaction.objects.filter(job=job).exists()


def test_refund_of_open_job_is_409(api, client, team):
    job = open_job(client, team)

    response = api(
        "post", "/api/credits/teams/acme-research/refund", {"job_id": str(job.id)}
    )

    assert_error(response, 409, "nothing_to_refund")
    assert Team.objects.get(pk="acme-research").credits_held == 1


def test_refund_of_other_teams_job_is_404(api, client, team, outsider):
    job = run_job(client, outsider)

    response = api(
        "post", "/api/credits/teams/acme-research/refund", {"job_id": str(job.id)}
    )

    assert_error(response, 404, "job_not_found")
    assert not CreditTransaction.objects.filter(type="refund").exists()
    assert Team.objects.get(pk="globex-ops").credits_used == 1


def test_refund_of_unknown_job_is_404(api, team):
    response = api(
        "post",
        "/api/credits/teams/acme-research/refund",
        {"job_id": str(uuid.uuid4())},
    )

    assert_error(response, 404, "job_not_found")


@pytest.mark.parametrize("body", [{}, {"job_id": "not-a-uuid"}, {"job_id": 5}])
def test_refund_invalid_job_id_is_422(api, team, body):
    response = api("post", "/api/credits/teams/acme-research/refund", body)

    assert_validation_error(response, "job_id")


# Adjust


def test_adjust_adds_credits(api, team):
    response = api(
        "post",
        "/api/credits/teams/acme-research/adjust",
        {"credits": 7, "reason": "Goodwill for the outage"},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["credits_adjusted"] == 7
    assert body["credits_before"] == 10
    assert body["credits_after"] == 17
    entry = CreditTransaction.objects.get(pk=body["transaction"]["transaction_id"])
    assert entry.type == "adjustment"
    assert entry.amount == 7
    assert entry.reason == "Goodwill for the outage"
    assert Team.objects.get(pk="acme-research").credits_allocated == 17


def test_adjust_removes_credits(api, team):
    response = api(
        "post",
        "/api/credits/teams/acme-research/adjust",
        {"credits": -10, "reason": "Duplicate grant"},
    )

    assert response.status_code == 200, response.content
    assert response.json()["credits_after"] == 0
    entry = ledger("acme-research")[-1]
    assert entry.type == "adjustment"
    assert entry.amount == -10
    assert Team.objects.get(pk="acme-research").credits_allocated == 0


def test_adjust_below_zero_is_409(api, team):
    response = api(
        "post",
        "/api/credits/teams/acme-research/adjust",
        {"credits": -11, "reason": "Chargeback"},
    )

    assert_error(response, 409, "insufficient_balance")
    assert "allow_negative" in response.json()["detail"]
    assert len(ledger("acme-research")) == 1
    assert Team.objects.get(pk="acme-research").credits_allocated == 10


def test_adjust_counts_held_credits(api, client, team):
    open_job(client, team)

    response = api(
        "post",
        "/api/credits/teams/acme-research/adjust",
        {"credits": -10, "reason": "Chargeback"},
    )

    assert_error(response, 409, "insufficient_balance")
    assert "1 held by open jobs" in response.json()["detail"]


def test_adjust_below_zero_when_allowed(api, team):
    response = api(
        "post",
        "/api/credits/teams/acme-research/adjust",
        {"credits": -15, "reason": "Chargeback", "allow_negative": True},
    )

    assert response.status_code == 200, response.content
    assert response.json()["credits_after"] == -5
    team_row = Team.objects.get(pk="acme-research")
    assert team_row.credits_remaining == -5
    assert ledger("acme-research")[-1].balance_after == -5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "x"}, "credits"),
        ({"credits": 0, "reason": "x"}, "credits"),
        ({"credits": "5", "reason": "x"}, "credits"),
        ({"credits": True, "reason": "x"}, "credits"),
        ({"credits": -(10**13), "reason": "x"}, "credits"),
        ({"credits": 5}, "reason"),
        ({"credits": 5, "reason": ""}, "reason"),
        ({"credits": 5, "reason": "   "}, "reason"),
        ({"credits": 5, "reason": "x" * 501}, "reason"),
        ({"credits": 5, "reason": "x", "allow_negative": "maybe"}, "allow_negative"),
    ],
)
def test_adjust_invalid_is_422(api, team, body, field):
    response = api("post", "/api/credits/teams/acme-research/adjust", body)

    assert_validation_error(response, field)
    assert len(ledger("acme-research")) == 1


# Budget mode and conversion rates


def test_set_budget_mode(api, team):
    response = api(
        "patch",
        "/api/credits/teams/acme-research/budget-mode",
        {"budget_mode": "CONSUMPTION_USD", "credits_per_dollar": "20.5"},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["team_id"] == "acme-research"
    assert body["budget_mode"] == "consumption_usd"
    assert body["credits_per_dollar"] == "20.5000"
    assert body["tokens_per_credit"] == 10000
    team_row = Team.objects.get(pk="acme-research")
    assert team_row.budget_mode == "consumption_usd"
    assert team_row.credits_per_dollar == Decimal("20.5")
    assert team_row.tokens_per_credit == 10000
    assert len(ledger("acme-research")) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "budget_mode"),
        ({"budget_mode": "prepaid"}, "budget_mode"),
        ({"budget_mode": "job_based", "credits_per_dollar": 0}, "credits_per_dollar"),
        (
            {"budget_mode": "job_based", "credits_per_dollar": "-1"},
            "credits_per_dollar",
        ),
        ({"budget_mode": "job_based", "tokens_per_credit": 0}, "tokens_per_credit"),
        ({"budget_mode": "job_based", "tokens_per_credit": "5"}, "tokens_per_credit"),
    ],
)
def test_set_budget_mode_invalid_is_422(api, team, body, field):
    response = api("patch", "/api/credits/teams/acme-research/budget-mode", body)

    assert_validation_error(response, field)
    team_row = Team.objects.get(pk="acme-research")
    assert team_row.budget_mode == "job_based"
    assert team_row.credits_per_dollar == 10
    assert team_row.tokens_per_credit == 10000


def test_get_default_conversion_rates(api, team):
    response = api("get", "/api/credits/teams/acme-research/conversion-rates")

    assert response.status_code == 200
    assert response.json() == {
        "team_id": "acme-research",
        "budget_mode": "job_based",
        "credits_per_dollar": "10.0000",
        "tokens_per_credit": 10000,
        "using_defaults": {"tokens_per_credit": True, "credits_per_dollar": True},
    }


def test_update_conversion_rates(api, team):
    response = api(
        "patch",
        "/api/credits/teams/acme-research/conversion-rates",
        {"tokens_per_credit": 500},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tokens_per_credit"] == 500
    assert body["credits_per_dollar"] == "10.0000"
    assert body["using_defaults"] == {
        "tokens_per_credit": False,
        "credits_per_dollar": True,
    }
    team_row = Team.objects.get(pk="acme-research")
    assert team_row.tokens_per_credit == 500
    assert team_row.budget_mode == "job_based"
    assert len(ledger("acme-research")) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "non_field_errors"),
        ({"credits_per_dollar": 0}, "credits_per_dollar"),
        ({"credits_per_dollar": "0.00001"}, "credits_per_dollar"),
        ({"credits_per_dollar": "many"}, "credits_per_dollar"),
        ({"tokens_per_credit": -1}, "tokens_per_credit"),
        ({"tokens_per_credit": 2**31}, "tokens_per_credit"),
    ],
)
def test_update_conversion_rates_invalid_is_422(api, team, body, field):
    response = api("patch", "/api/credits/teams/acme-research/conversion-rates", body)

    assert_validation_error(response, field)
    team_row = Team.objects.get(pk="acme-research")
    assert team_row.credits_per_dollar == 10
    assert team_row.tokens_per_credit == 10000


# Automatic refills


def test_enable_auto_refill(api, team):
    response = api(
        "post",
        "/api/credits/teams/acme-research/configure-auto-refill",
        {"enabled": True, "refill_amount": 100, "refill_period": "Monthly"},
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "team_id": "acme-research",
        "auto_refill_enabled": True,
        "refill_amount": 100,
        "refill_period": "monthly",
        "last_refill_at": None,
    }
    team_row = Team.objects.get(pk="acme-research")
    assert team_row.auto_refill_enabled is True
    assert team_row.refill_amount == 100
    assert team_row.refill_period == "monthly"
    assert len(ledger("acme-research")) == 1


def test_disable_auto_refill_keeps_settings(api, team):
    path = "/api/credits/teams/acme-research/configure-auto-refill"
    api("post", path, {"enabled": True, "refill_amount": 100, "refill_period": "daily"})

    response = api("post", path, {"enabled": False})

    assert response.status_code == 200, response.content
    team_row = Team.objects.get(pk="acme-research")
    assert team_row.auto_refill_enabled is False
    assert team_row.refill_amount == 100
    assert team_row.refill_period == "daily"


def test_enable_auto_refill_with_stored_settings(api, team):
    path = "/api/credits/teams/acme-research/configure-auto-refill"
    api(
        "post", path, {"enabled": False, "refill_amount": 30, "refill_period": "weekly"}
    )

    response = api("post", path, {"enabled": True})

    assert response.status_code == 200, response.content
    assert Team.objects.get(pk="acme-research").auto_refill_enabled is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "enabled"),
        ({"enabled": True}, "refill_amount"),
        ({"enabled": True}, "refill_period"),
        ({"enabled": True, "refill_period": "daily"}, "refill_amount"),
        ({"enabled": True, "refill_amount": 5}, "refill_period"),
        (
            {"enabled": True, "refill_amount": 0, "refill_period": "daily"},
            "refill_amount",
        ),
        (
            {"enabled": True, "refill_amount": 5, "refill_period": "yearly"},
            "refill_period",
        ),
        ({"enabled": "sometimes"}, "enabled"),
    ],
)
def test_configure_auto_refill_invalid_is_422(api, team, body, field):
    response = api(
        "post", "/api/credits/teams/acme-research/configure-auto-refill", body
    )

    assert_validation_error(response, field)
    team_row = Team.objects.get(pk="acme-research")
    assert team_row.auto_refill_enabled is False
    assert team_row.refill_amount is None
    assert team_row.refill_period == ""


# Markup


@pytest.mark.parametrize(("value", "stored"), [("25.5", "25.50"), (1000, "1000.00")])
def test_set_markup(api, team, value, stored):
    response = api(
        "patch", "/api/teams/acme-research/markup", {"markup_percent": value}
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"team_id": "acme-research", "markup_percent": stored}
    assert Team.objects.get(pk="acme-research").markup_percent == Decimal(stored)
    assert len(ledger("acme-research")) == 1


@pytest.mark.parametrize(
    "value", [None, "-0.01", "1000.01", "1.234", "abc", "Infinity"]
)
def test_set_markup_invalid_is_422(api, team, value):
    body = {} if value is None else {"markup_percent": value}

    response = api("patch", "/api/teams/acme-research/markup", body)

    assert_validation_error(response, "markup_percent")
    assert Team.objects.get(pk="acme-research").markup_percent == 0


def test_team_update_limits_markup(api, team):
    response = api("patch", "/api/teams/acme-research", {"markup_percent": "1000.01"})

    assert_validation_error(response, "markup_percent")


# Races (PostgreSQL only: SQLite serializes writers)

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"
)


def run_together(count, action):
    """Run ``action(i)`` in ``count`` threads, each with its own connection."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def worker(index):
        try:
            barrier.wait()
            results[index] = action(index)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_racing_refunds_refund_once(team, admin_headers):
    job = run_job(Client(), team)
    path = "/api/credits/teams/acme-research/refund"

    def refund(_):
        return send(Client(), "post", path, {"job_id": str(job.id)}, admin_headers)

    responses = run_together(20, refund)

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [409] * 19
    codes = {response.json().get("code") for response in responses}
    assert codes == {None, "already_refunded"}
    assert CreditTransaction.objects.filter(job=job, type="refund").count() == 1
    assert Team.objects.get(pk="acme-research").credits_used == 0


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_racing_replenishments_chain(team, admin_headers):
    path = "/api/credits/teams/acme-research/replenish"
    body = {"credits": 5, "payment_type": "one_time"}

    def replenish(_):
        return send(Client(), "post", path, body, admin_headers).status_code

    statuses = run_together(20, replenish)

    assert statuses == [200] * 20
    team_row = Team.objects.get(pk="acme-research")
    assert team_row.credits_remaining == 110
    payments = list(
        CreditTransaction.objects.filter(
            team_id="acme-research", type="one_time_payment"
        ).order_by("balance_before")
    )
    assert len(payments) == 20
    assert [entry.balance_before for entry in payments] == list(range(10, 110, 5))
    for previous, entry in zip(payments, payments[1:], strict=False):
        assert entry.balance_before == previous.balance_after
    assert payments[-1].balance_after == 110
