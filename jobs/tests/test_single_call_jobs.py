"""Jobs of one call: the call is stored and the job closed in one transaction."""

from decimal import Decimal

import pytest
from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import Coalesce

from catalog.providers import ProviderError
from jobs import services
from jobs.models import Job, LLMCall
from jobs.tests.conftest import answered, open_single_call
from teams.models import CreditTransaction, Team

pytestmark = pytest.mark.django_db


def failed() -> services.CallOutcome:
    error = ProviderError("The provider timed out.", code="provider_timeout")
    return services.CallOutcome(latency_ms=30, error=error)


@pytest.mark.parametrize(
    "outcome", [lambda: answered(700, 500), failed], ids=["answered", "failed"]
)
def test_totals_match_stored_calls(team_factory, outcome):
    usd_team = team_factory(
        "usd-team",
        credits=100,
        budget_mode=Team.BudgetMode.CONSUMPTION_USD,
        credits_per_dollar=Decimal("100000"),
    )
    context = open_single_call(usd_team)

    call, completion = services.finish_single_call(context=context, outcome=outcome())

    succeeded = Q(error_code="")
    stored = LLMCall.objects.filter(job_id=context.job.id).aggregate(
        total_calls=Count("id"),
        successful_calls=Count("id", filter=succeeded),
        total_tokens=Coalesce(Sum("total_tokens", filter=succeeded), 0),
        prompt_tokens=Coalesce(Sum("prompt_tokens", filter=succeeded), 0),
        completion_tokens=Coalesce(Sum("completion_tokens", filter=succeeded), 0),
        total_cost_usd=Sum("client_cost_usd"),
        provider_cost_usd=Sum("provider_cost_usd"),
        avg_latency_ms=Avg("latency_ms"),
    )
    stored["failed_calls"] = stored["total_calls"] - stored["successful_calls"]
    stored["avg_latency_ms"] = round(stored["avg_latency_ms"])
    assert completion.totals == stored
    assert completion.calls == [call]
    team_row = Team.objects.get(pk=usd_team.id)
    assert completion.credits_remaining == team_row.credits_remaining


def test_calls_totals_of_several_calls(team):
    calls = [
        LLMCall(
            total_tokens=10,
            prompt_tokens=6,
            completion_tokens=4,
            client_cost_usd=Decimal("0.0000000003"),
            provider_cost_usd=Decimal("0.0000000002"),
            latency_ms=10,
        ),
        LLMCall(
            error_code="provider_timeout",
            total_tokens=5,
            prompt_tokens=5,
            client_cost_usd=Decimal(0),
            provider_cost_usd=Decimal("0.0000000001"),
            latency_ms=15,
        ),
    ]

    totals = services.calls_totals(calls)

    assert totals == {
        "total_calls": 2,
        "successful_calls": 1,
        "failed_calls": 1,
        "total_tokens": 10,
        "prompt_tokens": 6,
        "completion_tokens": 4,
        "total_cost_usd": Decimal("0.0000000003"),
        "provider_cost_usd": Decimal("0.0000000003"),
        "avg_latency_ms": 12,
    }
    assert services.calls_totals([])["avg_latency_ms"] == 0


def test_single_call_job_closes_with_its_call(team):
    context = open_single_call(team)

    call, completion = services.finish_single_call(
        context=context, outcome=answered(700, 500)
    )

    job = Job.objects.get(pk=context.job.id)
    assert job.status == Job.Status.COMPLETED
    assert job.calls_in_flight == 0
    assert job.credits_held == 0
    assert job.credits_charged == 1
    assert job.started_at is not None
    assert job.completed_at is not None
    assert completion.job.status == Job.Status.COMPLETED
    assert completion.credits_remaining == 9
    assert LLMCall.objects.get(job=job) == call
    deductions = CreditTransaction.objects.filter(job=job, type="deduction")
    assert [entry.amount for entry in deductions] == [-1]


def test_failed_single_call_closes_job_unpaid(team):
    context = open_single_call(team)

    services.finish_single_call(context=context, outcome=failed())

    job = Job.objects.get(pk=context.job.id)
    assert job.status == Job.Status.FAILED
    assert job.error_message == "The provider timed out."
    assert job.credits_charged == 0
    assert Team.objects.get(pk=team.id).credits_remaining == 10
    assert Team.objects.get(pk=team.id).credits_held == 0


def test_second_call_on_job_keeps_it_open(team):
    # A streamed job's id reaches the client before the stream ends, so the
    # client can make another call on it meanwhile.
    context = open_single_call(team)
    services.admit_call(team=context.team, job_id=context.job.id)

    call, completion = services.finish_single_call(context=context, outcome=answered())

    job = Job.objects.get(pk=context.job.id)
    assert job.status == Job.Status.IN_PROGRESS
    assert job.calls_in_flight == 1
    assert job.credits_charged == 0
    assert list(LLMCall.objects.filter(job=job)) == [call]
    assert completion.job.status == Job.Status.IN_PROGRESS
    assert completion.calls == [call]
    assert completion.totals["total_calls"] == 1
    assert completion.credits_remaining == 10


def test_failed_call_keeps_busy_job_open(team):
    context = open_single_call(team)
    services.admit_call(team=context.team, job_id=context.job.id)

    call, completion = services.finish_single_call(context=context, outcome=failed())

    job = Job.objects.get(pk=context.job.id)
    assert job.status == Job.Status.IN_PROGRESS
    assert job.calls_in_flight == 1
    assert LLMCall.objects.get(job=job) == call
    assert completion.job.status == Job.Status.IN_PROGRESS
    assert completion.totals["failed_calls"] == 1


def test_job_closed_by_client_stays_closed(team):
    context = open_single_call(team)
    services.complete_job(
        team=context.team, job_id=context.job.id, status=Job.Status.CANCELLED
    )

    call, completion = services.finish_single_call(context=context, outcome=answered())

    job = Job.objects.get(pk=context.job.id)
    assert job.status == Job.Status.CANCELLED
    assert job.credits_charged == 0
    assert LLMCall.objects.get(job=job) == call
    assert completion.job.status == Job.Status.CANCELLED
    assert completion.credits_remaining == 10
    assert Team.objects.get(pk=team.id).credits_held == 0
