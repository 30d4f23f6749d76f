"""Charges per budget mode, call admission and single-call jobs."""

from decimal import Decimal

import pytest

from jobs.models import Job, LLMCall
from jobs.services import credits_for_job
from jobs.tests.conftest import post_json
from teams.models import CreditTransaction, Team

BOUNDED_CALL = {
    "model": "chat-fast",
    "messages": [{"role": "user", "content": "Summarise the quarterly report"}],
    "max_tokens": 5,
}


def totals(successful_calls=1, tokens=0, cost="0"):
    return {
        "successful_calls": successful_calls,
        "total_tokens": tokens,
        "total_cost_usd": Decimal(cost),
    }


@pytest.mark.parametrize(
    ("mode", "status", "job_totals", "rates", "expected"),
    [
        ("job_based", "completed", totals(tokens=999_999, cost="99"), {}, 1),
        ("job_based", "failed", totals(), {}, 0),
        ("job_based", "cancelled", totals(), {}, 0),
        ("job_based", "completed", totals(successful_calls=0), {}, 0),
        # consumption_usd: max(1, floor(cost x credits per dollar))
        (
            "consumption_usd",
            "completed",
            totals(cost="0.19"),
            {"credits_per_dollar": 10},
            1,
        ),
        (
            "consumption_usd",
            "completed",
            totals(cost="0.2"),
            {"credits_per_dollar": 10},
            2,
        ),
        (
            "consumption_usd",
            "completed",
            totals(cost="0.2999999999"),
            {"credits_per_dollar": 10},
            2,
        ),
        (
            "consumption_usd",
            "completed",
            totals(cost="1.5"),
            {"credits_per_dollar": "2.5"},
            3,
        ),
        (
            "consumption_usd",
            "completed",
            totals(cost="0"),
            {"credits_per_dollar": 10},
            1,
        ),
        ("consumption_usd", "failed", totals(cost="50"), {"credits_per_dollar": 10}, 0),
        # consumption_tokens: max(1, floor(tokens / tokens per credit))
        (
            "consumption_tokens",
            "completed",
            totals(tokens=25_000),
            {"tokens_per_credit": 10_000},
            2,
        ),
        (
            "consumption_tokens",
            "completed",
            totals(tokens=9_999),
            {"tokens_per_credit": 10_000},
            1,
        ),
        (
            "consumption_tokens",
            "completed",
            totals(tokens=0),
            {"tokens_per_credit": 10_000},
            1,
        ),
        (
            "consumption_tokens",
            "completed",
            totals(tokens=30_000),
            {"tokens_per_credit": 10_000},
            3,
        ),
        (
            "consumption_tokens",
            "cancelled",
            totals(tokens=30_000),
            {"tokens_per_credit": 1},
            0,
        ),
    ],
)
def test_credits_for_job(mode, status, job_totals, rates, expected):
    team = Team(
        budget_mode=mode, **{key: Decimal(str(value)) for key, value in rates.items()}
    )

    assert credits_for_job(team=team, status=status, totals=job_totals) == expected


def test_markup_raises_client_cost_and_usd_charge(
    team_factory, create_job, call_job, complete_job
):
    paying = team_factory(
        "usd-team",
        credits=100,
        budget_mode="consumption_usd",
        credits_per_dollar=Decimal("100000"),
    )
    Team.objects.filter(pk=paying.id).update(markup_percent=Decimal("25"))
    job_id = create_job(fixture=paying)
    call_job(job_id, fixture=paying)

    response = complete_job(job_id, fixture=paying)

    call = LLMCall.objects.get(job_id=job_id)
    assert call.client_cost_usd == (call.provider_cost_usd * Decimal("1.25")).quantize(
        Decimal("0.0000000001")
    )
    expected = max(1, int(call.client_cost_usd * 100000))
    assert response.json()["costs"]["credits_charged"] == expected
    assert response.json()["costs"]["credits_remaining"] == 100 - expected
    assert Team.objects.get(pk=paying.id).credits_remaining == 100 - expected
    assert Team.objects.get(pk=paying.id).credits_held == 0


def test_tokens_team_charged_by_tokens(
    team_factory, create_job, call_job, complete_job
):
    counting = team_factory(
        "token-team", credits=100, budget_mode="consumption_tokens", tokens_per_credit=5
    )
    job_id = create_job(fixture=counting)
    for _ in range(3):
        response = call_job(job_id, BOUNDED_CALL, fixture=counting)
        assert response.status_code == 200, response.content

    response = complete_job(job_id, fixture=counting)

    tokens = sum(
        LLMCall.objects.filter(job_id=job_id).values_list("total_tokens", flat=True)
    )
    assert response.json()["costs"]["credits_charged"] == max(1, tokens // 5)
    job = Job.objects.get(pk=job_id)
    assert job.accrued_credits == Decimal(tokens) / 5
    assert job.credits_reserved == 0


def test_consumption_job_stops_when_credits_run_out(
    team_factory, create_job, call_job, fake_provider
):
    # At one token per credit each call reserves its estimated maximum
    # (about 10 prompt tokens plus max_tokens 5) against 30 credits, so the
    # job is refused before a call that the team might not cover.
    scarce = team_factory(
        "scarce-team", credits=30, budget_mode="consumption_tokens", tokens_per_credit=1
    )
    job_id = create_job(fixture=scarce)
    statuses = []
    for _ in range(5):
        fake_provider.requests.clear()
        response = call_job(job_id, BOUNDED_CALL, fixture=scarce)
        statuses.append(response.status_code)
        if response.status_code == 402:
            assert response.json()["code"] == "insufficient_credits"
            assert not fake_provider.requests

    assert statuses[:2] == [200, 200]
    assert 402 in statuses
    job = Job.objects.get(pk=job_id)
    assert job.calls_in_flight == 0
    assert job.credits_reserved == 0
    assert Team.objects.get(pk=scarce.id).credits_held == job.credits_held
    assert job.credits_held <= 30


def test_large_reservation_is_refused_up_front(team_factory, create_job, call_job):
    # Without max_tokens a call reserves 1,024 completion tokens: more than
    # this team can cover at one token per credit.
    scarce = team_factory(
        "tiny-team", credits=50, budget_mode="consumption_tokens", tokens_per_credit=1
    )
    job_id = create_job(fixture=scarce)

    response = call_job(job_id, fixture=scarce)

    assert response.status_code == 402
    assert response.json()["code"] == "insufficient_credits"
    assert not LLMCall.objects.filter(job_id=job_id).exists()
    assert Job.objects.get(pk=job_id).credits_held == 1


def test_call_limit_per_job(team, create_job, call_job):
    Team.objects.filter(pk=team.id).update(max_calls_per_job=2)
    job_id = create_job()
    first, second = call_job(job_id), call_job(job_id)

    third = call_job(job_id)

    assert first.status_code == second.status_code == 200
    assert third.status_code == 409
    assert third.json()["code"] == "call_limit_reached"
    assert LLMCall.objects.filter(job_id=job_id).count() == 2


def test_completing_with_calls_in_flight_is_409(team, create_job, complete_job):
    job_id = create_job()
    Job.objects.filter(pk=job_id).update(calls_in_flight=1)

    completed = complete_job(job_id)
    cancelled = complete_job(job_id, status="cancelled")

    assert completed.status_code == 409
    assert completed.json()["code"] == "calls_in_flight"
    assert cancelled.status_code == 200
    assert Team.objects.get(pk=team.id).credits_held == 0


def test_create_and_call_charges_the_job(client, team):
    response = post_json(
        client,
        "/api/jobs/create-and-call",
        {
            "team_id": team.id,
            "job_type": "quick_answer",
            "model": "chat-fast",
            "messages": [{"role": "user", "content": "One line please"}],
            "job_metadata": {"ticket": 7},
        },
        team.headers,
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "completed"
    assert body["response"]["content"] == "Echo: One line please"
    assert body["costs"]["credits_charged"] == 1
    assert body["costs"]["credits_remaining"] == 9
    assert body["model"] == "chat-fast"
    job = Job.objects.get(pk=body["job_id"])
    assert job.metadata == {"ticket": 7}
    assert job.credits_charged == 1
    assert CreditTransaction.objects.filter(job=job, type="deduction").count() == 1
    assert Team.objects.get(pk=team.id).credits_held == 0


def test_create_and_call_provider_failure_fails_job(client, team, faulty_alias):
    faulty_alias("fail-500")

    response = post_json(
        client,
        "/api/jobs/create-and-call",
        {
            "job_type": "quick",
            "model": "chat-faulty",
            "messages": [{"role": "user", "content": "x"}],
        },
        team.headers,
    )

    assert response.status_code == 502
    assert response.json()["code"] == "provider_error"
    job = Job.objects.get(team_id=team.id)
    assert job.status == "failed"
    assert job.credits_charged == 0
    assert LLMCall.objects.get(job=job).error_code == "provider_error"
    assert Team.objects.get(pk=team.id).credits_held == 0
    assert Team.objects.get(pk=team.id).credits_remaining == 10


def test_create_and_call_rejections_leave_nothing(client, team, outsider, team_factory):
    broke = team_factory("broke-team", credits=0)
    cases = [
        (team, {"model": "no-such-alias"}, 403, "model_not_allowed"),
        (team, {"team_id": outsider.id}, 403, "team_mismatch"),
        (broke, {}, 402, "insufficient_credits"),
    ]

    for owner, overrides, status, code in cases:
        body = {
            "job_type": "quick",
            "model": "chat-fast",
            "messages": [{"role": "user", "content": "x"}],
            **overrides,
        }
        response = post_json(client, "/api/jobs/create-and-call", body, owner.headers)

        assert response.status_code == status, code
        assert response.json()["code"] == code
    assert not Job.objects.exists()
