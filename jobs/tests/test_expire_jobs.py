"""Expiry of jobs left open past their time to live."""

import io
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.db.models import Sum
from django.test import override_settings

from jobs import maintenance
from jobs.models import Job
from jobs.services import complete_job, create_job
from jobs.tests.conftest import post_json
from teams.models import CreditTransaction, Team

CREATED_AT = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
TTL = timedelta(hours=24)


def create_job_at(team, moment):
    with time_machine.travel(moment, tick=False):
        return create_job(team=team, job_type="report")


def run_expiry(moment, *args):
    """Run expire_jobs --json at ``moment`` and return its parsed stdout."""
    stdout = io.StringIO()
    with time_machine.travel(moment, tick=False):
        call_command("expire_jobs", "--json", *args, stdout=stdout)
    return json.loads(stdout.getvalue())


def ledger_state():
    rows = CreditTransaction.objects.all()
    return rows.count(), rows.aggregate(total=Sum("amount"))["total"]


def test_stale_job_fails_and_releases_hold(team):
    over = create_job_at(team.team, CREATED_AT)
    under = create_job_at(team.team, CREATED_AT + timedelta(seconds=2))
    ledger_before = ledger_state()
    run_at = CREATED_AT + TTL + timedelta(seconds=1)

    result = run_expiry(run_at)

    assert result == {
        "dry_run": False,
        "expired_count": 1,
        "skipped_count": 0,
        "failed_count": 0,
        "failed": [],
    }
    over.refresh_from_db()
    assert over.status == "failed"
    assert over.error_message == "Expired after 24 hours without completion."
    assert over.completed_at == run_at
    assert over.credits_held == 0
    assert over.credits_charged == 0
    assert over.credit_applied is False
    under.refresh_from_db()
    assert under.status == "pending"
    assert under.credits_held == 1
    team_row = Team.objects.get(pk=team.id)
    assert team_row.credits_held == 1
    assert team_row.credits_used == 0
    assert ledger_state() == ledger_before

    second = run_expiry(run_at + timedelta(seconds=1))

    assert second["expired_count"] == 0
    assert second["skipped_count"] == 0
    assert Job.objects.get(pk=under.pk).status == "pending"
    assert ledger_state() == ledger_before


def test_job_exactly_at_ttl_stays_open(team):
    job = create_job_at(team.team, CREATED_AT)

    result = run_expiry(CREATED_AT + TTL)

    assert result["expired_count"] == 0
    job.refresh_from_db()
    assert job.status == "pending"


def test_grown_hold_released_on_expiry(client, team_factory):
    owner = team_factory(
        "acme-tokens", credits=50, budget_mode="consumption_tokens", tokens_per_credit=1
    )
    created = post_json(client, "/api/jobs/create", {"job_type": "chat"}, owner.headers)
    job_id = created.json()["job_id"]
    call = post_json(
        client,
        f"/api/jobs/{job_id}/llm-call",
        {
            "model": "chat-fast",
            "messages": [{"role": "user", "content": "Summarise the quarterly report"}],
            "max_tokens": 5,
        },
        owner.headers,
    )
    assert call.status_code == 200, call.content
    Job.objects.filter(pk=job_id).update(created_at=CREATED_AT)
    job = Job.objects.get(pk=job_id)
    assert job.status == "in_progress"
    assert job.credits_held > 1
    ledger_before = ledger_state()

    result = run_expiry(CREATED_AT + TTL + timedelta(minutes=1))

    assert result["expired_count"] == 1
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.credits_held == 0
    assert job.credits_charged == 0
    team_row = Team.objects.get(pk=owner.id)
    assert team_row.credits_held == 0
    assert team_row.credits_remaining == 50
    assert ledger_state() == ledger_before


def test_closed_jobs_are_not_touched(team):
    job = create_job_at(team.team, CREATED_AT)
    complete_job(team=team.team, job_id=job.id, status="cancelled")

    result = run_expiry(CREATED_AT + timedelta(days=30))

    assert result["expired_count"] == 0
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert job.error_message == ""


def test_dry_run_changes_nothing(team):
    job = create_job_at(team.team, CREATED_AT)

    result = run_expiry(CREATED_AT + timedelta(days=2), "--dry-run")

    assert result["dry_run"] is True
    assert result["expired_count"] == 1
    job.refresh_from_db()
    assert job.status == "pending"
    assert Team.objects.get(pk=team.id).credits_held == 1


def test_ttl_hours_option(team):
    job = create_job_at(team.team, CREATED_AT)

    result = run_expiry(CREATED_AT + timedelta(hours=2), "--ttl-hours", "1.5")

    assert result["expired_count"] == 1
    job.refresh_from_db()
    assert job.error_message == "Expired after 1.5 hours without completion."


@override_settings(JOB_TTL_HOURS=2)
def test_ttl_defaults_to_setting(team):
    job = create_job_at(team.team, CREATED_AT)

    result = run_expiry(CREATED_AT + timedelta(hours=3))

    assert result["expired_count"] == 1
    job.refresh_from_db()
    assert job.error_message == "Expired after 2 hours without completion."


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_invalid_ttl_hours_is_rejected(db, value):
    with pytest.raises(CommandError, match="ttl-hours"):
        call_command("expire_jobs", "--ttl-hours", value, stdout=io.StringIO())


def test_expiry_pages_through_batches(team_factory, monkeypatch):
    monkeypatch.setattr(maintenance, "EXPIRY_BATCH_SIZE", 2)
    owner = team_factory("acme-batch", credits=10)
    jobs = [
        create_job_at(owner.team, CREATED_AT + timedelta(minutes=minute))
        for minute in (0, 0, 0, 1, 2)
    ]
    run_at = CREATED_AT + timedelta(days=2)

    dry = run_expiry(run_at, "--dry-run")
    real = run_expiry(run_at)

    assert dry["expired_count"] == 5
    assert real["expired_count"] == 5
    statuses = set(
        Job.objects.filter(pk__in=[job.id for job in jobs]).values_list(
            "status", flat=True
        )
    )
    assert statuses == {"failed"}
    assert Team.objects.get(pk=owner.id).credits_held == 0


def test_job_closed_meanwhile_is_skipped(team, monkeypatch):
    first = create_job_at(team.team, CREATED_AT)
    create_job_at(team.team, CREATED_AT + timedelta(minutes=1))
    read_batches = maintenance._stale_job_batches

    def batches_then_team_completes(cutoff):
        # The team completes the first job after the batch was read and
        # before the expiry run locks it.
        for batch in read_batches(cutoff):
            complete_job(team=team.team, job_id=first.id, status="completed")
            yield batch

    monkeypatch.setattr(maintenance, "_stale_job_batches", batches_then_team_completes)

    result = run_expiry(CREATED_AT + timedelta(days=2))

    assert result["expired_count"] == 1
    assert result["skipped_count"] == 1
    assert result["failed_count"] == 0
    first.refresh_from_db()
    assert first.status == "completed"
    assert first.error_message == ""


def test_text_output(team):
    create_job_at(team.team, CREATED_AT)
    stdout = io.StringIO()

    with time_machine.travel(CREATED_AT + timedelta(days=2), tick=False):
        call_command("expire_jobs", stdout=stdout)

    assert stdout.getvalue() == (
        "Expired 1 job(s); skipped 0 closed meanwhile; 0 failed.\n"
    )


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_expire_each_job_once(team_factory, monkeypatch):
    monkeypatch.setattr(maintenance, "EXPIRY_BATCH_SIZE", 5)
    owner = team_factory("acme-cron", credits=30)
    for minute in range(30):
        create_job_at(owner.team, CREATED_AT + timedelta(minutes=minute))
    now = CREATED_AT + timedelta(days=2)
    barrier = threading.Barrier(4)
    summaries = [None] * 4

    def worker(index):
        try:
            barrier.wait()
            summaries[index] = maintenance.expire_stale_jobs(now=now, ttl=TTL)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(summary.expired_count for summary in summaries) == 30
    assert all(not summary.failed for summary in summaries)
    assert Job.objects.filter(team_id=owner.id, status="failed").count() == 30
    team_row = Team.objects.get(pk=owner.id)
    assert team_row.credits_held == 0
    assert team_row.credits_used == 0
