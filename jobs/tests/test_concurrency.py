"""Races on PostgreSQL: separate connections released together."""

import threading

import pytest
from django.db import connection, connections
from django.test import Client

from jobs.models import Job
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
