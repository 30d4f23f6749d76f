"""Races on PostgreSQL: separate connections released together."""

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test import Client

from catalog.models import ModelAlias
from jobs.models import Job, LLMCall
from jobs.tests.conftest import post_json
from teams.models import CreditTransaction, Team

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"
)


def run_together(count, action):
    """Run ``action(i)`` in ``count`` threads released at one instant."""
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


@pytest.mark.django_db(transaction=True)
def test_racing_completes_charge_once(team, create_job, call_job):
    job_id = create_job()
    call_job(job_id)

    def complete(_):
        response = post_json(
            Client(),
            f"/api/jobs/{job_id}/complete",
            {"status": "completed"},
            team.headers,
        )
        return response.status_code

    statuses = run_together(20, complete)

    assert statuses == [200] * 20
    assert (
        CreditTransaction.objects.filter(job_id=job_id, type="deduction").count() == 1
    )
    team_row = Team.objects.get(pk=team.id)
    assert team_row.credits_used == 1
    assert team_row.credits_held == 0
    assert Job.objects.get(pk=job_id).credits_charged == 1


@pytest.mark.django_db(transaction=True)
def test_racing_job_creation_never_exceeds_credits(team):
    def create(_):
        response = post_json(
            Client(), "/api/jobs/create", {"job_type": "chat"}, team.headers
        )
        return response.status_code

    statuses = run_together(25, create)

    assert statuses.count(201) == 10
    assert statuses.count(402) == 15
    assert Team.objects.get(pk=team.id).credits_held == 10


@pytest.mark.django_db(transaction=True)
def test_fifty_racing_jobs_spend_exactly_ten_credits(team):
    def run_job(_):
        client = Client()
        created = post_json(
            client, "/api/jobs/create", {"job_type": "race"}, team.headers
        )
        if created.status_code != 201:
            return created.status_code
        job_id = created.json()["job_id"]
        call = post_json(
            client,
            f"/api/jobs/{job_id}/llm-call",
            {"model": "chat-fast", "messages": [{"role": "user", "content": "go"}]},
            team.headers,
        )
        assert call.status_code == 200, call.content
        done = post_json(
            client,
            f"/api/jobs/{job_id}/complete",
            {"status": "completed"},
            team.headers,
        )
        assert done.status_code == 200, done.content
        return created.status_code

    statuses = run_together(50, run_job)

    assert statuses.count(201) == 10
    assert statuses.count(402) == 40
    team_row = Team.objects.get(pk=team.id)
    assert team_row.credits_remaining == 0
    assert team_row.credits_held == 0
    assert Job.objects.filter(team_id=team.id, status="completed").count() == 10
    assert (
        CreditTransaction.objects.filter(team_id=team.id, type="deduction").count()
        == 10
    )


@pytest.mark.django_db(transaction=True)
def test_racing_usd_calls_overdraw_at_most_one_call(team_factory):
    # About 0.4 credits per call: many jobs race their calls against 5 credits.
    paying = team_factory(
        "usd-race", credits=5, budget_mode="consumption_usd", credits_per_dollar=100000
    )

    def run_job(_):
        client = Client()
        created = post_json(
            client, "/api/jobs/create", {"job_type": "race"}, paying.headers
        )
        if created.status_code != 201:
            return
        job_id = created.json()["job_id"]
        for _ in range(6):
            call = post_json(
                client,
                f"/api/jobs/{job_id}/llm-call",
                {
                    "model": "chat-fast",
                    "messages": [{"role": "user", "content": "go on"}],
                    "max_tokens": 10,
                },
                paying.headers,
            )
            if call.status_code == 402:
                break
            assert call.status_code == 200, call.content
        post_json(
            client,
            f"/api/jobs/{job_id}/complete",
            {"status": "completed"},
            paying.headers,
        )

    run_together(12, run_job)

    team_row = Team.objects.get(pk=paying.id)
    calls = LLMCall.objects.filter(team_id=paying.id)
    max_call_credits = max(call.client_cost_usd * 100000 for call in calls)
    overdraw = max(0, -team_row.credits_remaining)
    print(
        f"worst overdraw: {overdraw} credits; one call costs up to {max_call_credits:.4f}"
    )
    assert overdraw <= max_call_credits
    assert team_row.credits_held == 0
    assert not Job.objects.filter(team_id=paying.id, calls_in_flight__gt=0).exists()


@pytest.mark.django_db(transaction=True)
def test_racing_expensive_calls_stay_within_reservations(team_factory, access_group):
    # About 2-5 credits per call: ten calls of one job race against 30 credits.
    pricey = ModelAlias.objects.create(
        alias="chat-pricey",
        provider="openai_compatible",
        provider_model="slow-0.3",
        input_price_per_million=Decimal("50000"),
        output_price_per_million=Decimal("50000"),
    )
    access_group.aliases.add(pricey)
    paying = team_factory("usd-pricey", credits=30, budget_mode="consumption_usd")
    created = post_json(
        Client(), "/api/jobs/create", {"job_type": "race"}, paying.headers
    )
    job_id = created.json()["job_id"]

    def call(_):
        return post_json(
            Client(),
            f"/api/jobs/{job_id}/llm-call",
            {
                "model": "chat-pricey",
                "messages": [{"role": "user", "content": "go on"}],
                "max_tokens": 10,
            },
            paying.headers,
        ).status_code

    statuses = run_together(10, call)
    post_json(
        Client(),
        f"/api/jobs/{job_id}/complete",
        {"status": "completed"},
        paying.headers,
    )

    team_row = Team.objects.get(pk=paying.id)
    calls = LLMCall.objects.filter(team_id=paying.id)
    max_call_credits = max(call.client_cost_usd * 10 for call in calls)
    overdraw = max(0, -team_row.credits_remaining)
    print(
        f"admitted {statuses.count(200)} of 10; worst overdraw: {overdraw} credits; "
        f"one call costs up to {max_call_credits:.4f}"
    )
    assert statuses.count(402) > 0
    assert overdraw <= max_call_credits
    assert team_row.credits_held == 0
