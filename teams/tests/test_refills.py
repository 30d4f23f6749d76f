"""Automatic refills: once per UTC period, by the refill_credits command."""

import io
import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection, connections

from teams.models import CreditTransaction, Team
from teams.services import (
    configure_auto_refill,
    refill_period_key,
    replenish_credits,
)

# (period, first run, later in the same period, start of the next period, key)
PERIODS = [
    (
        "daily",
        datetime(2026, 12, 5, 9, 30, tzinfo=UTC),
        datetime(2026, 12, 5, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 12, 6, 0, 0, tzinfo=UTC),
        "daily:2026-12-05",
    ),
    (
        "weekly",
        datetime(2026, 12, 7, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 13, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 12, 14, 0, 0, tzinfo=UTC),
        "weekly:2026-W50",
    ),
    (
        "monthly",
        datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, tzinfo=UTC),
        "monthly:2026-12",
    ),
]


def run_refills(*args):
    """Run refill_credits with --json and return its parsed stdout."""
    stdout = io.StringIO()
    call_command("refill_credits", "--json", *args, stdout=stdout, stderr=io.StringIO())
    return json.loads(stdout.getvalue())


def refills(team_id):
    return list(
        CreditTransaction.objects.filter(team_id=team_id)
        .exclude(refill_period_key="")
        .order_by("created_at")
    )


@pytest.fixture
def refilling_team(team):
    """The team with 10 credits and a refill of 50 credits per period."""

    def configure(period):
        configure_auto_refill(
            team_id=team.id, enabled=True, refill_amount=50, refill_period=period
        )
        return Team.objects.get(pk=team.id)

    return configure


@pytest.mark.parametrize(("period", "first", "same", "following", "key"), PERIODS)
def test_refill_once_per_period(refilling_team, period, first, same, following, key):
    team = refilling_team(period)

    with time_machine.travel(first, tick=False):
        first_run = run_refills()
    with time_machine.travel(same, tick=False):
        second_run = run_refills()

    assert first_run["refilled"] == [team.id]
    assert first_run["refilled_count"] == 1
    assert second_run["refilled_count"] == 0
    assert second_run["skipped"] == [team.id]
    [entry] = refills(team.id)
    assert entry.type == "allocation"
    assert entry.amount == 50
    assert entry.balance_before == 10
    assert entry.balance_after == 60
    assert entry.refill_period_key == key
    assert entry.actor == "auto-refill"
    team_row = Team.objects.get(pk=team.id)
    assert team_row.credits_allocated == 60
    assert team_row.last_refill_at == first

    with time_machine.travel(following, tick=False):
        third_run = run_refills()

    assert third_run["refilled"] == [team.id]
    assert [entry.refill_period_key for entry in refills(team.id)] == [
        key,
        refill_period_key(period, following),
    ]
    team_row = Team.objects.get(pk=team.id)
    assert team_row.credits_allocated == 110
    assert team_row.last_refill_at == following


@pytest.mark.parametrize(
    ("period", "moment", "key"),
    [
        ("daily", datetime(2026, 12, 31, 23, 0, tzinfo=UTC), "daily:2026-12-31"),
        # 01:00 on 1 January in UTC+2 is still 31 December in UTC.
        (
            "daily",
            datetime(2027, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))),
            "daily:2026-12-31",
        ),
        ("weekly", datetime(2027, 1, 3, 12, 0, tzinfo=UTC), "weekly:2026-W53"),
        ("weekly", datetime(2027, 1, 4, 0, 0, tzinfo=UTC), "weekly:2027-W01"),
        ("monthly", datetime(2027, 1, 1, 0, 0, tzinfo=UTC), "monthly:2027-01"),
    ],
)
def test_refill_period_key(period, moment, key):
    assert refill_period_key(period, moment) == key


def test_refill_period_key_rejects_unknown_period():
    with pytest.raises(ValueError, match="yearly"):
        refill_period_key("yearly", datetime(2026, 12, 5, tzinfo=UTC))


@time_machine.travel(PERIODS[0][1], tick=False)
def test_dry_run_changes_nothing(refilling_team):
    team = refilling_team("daily")

    result = run_refills("--dry-run")

    assert result["dry_run"] is True
    assert result["refilled"] == [team.id]
    assert refills(team.id) == []
    team_row = Team.objects.get(pk=team.id)
    assert team_row.credits_allocated == 10
    assert team_row.last_refill_at is None


@time_machine.travel(PERIODS[0][1], tick=False)
def test_refill_ignores_teams_without_auto_refill(team, team_factory):
    other = team_factory("acme-ops")
    configure_auto_refill(
        team_id=other.id, enabled=False, refill_amount=50, refill_period="daily"
    )

    result = run_refills()

    assert result == {
        "dry_run": False,
        "refilled_count": 0,
        "skipped_count": 0,
        "failed_count": 0,
        "refilled": [],
        "skipped": [],
        "failed": [],
    }
    assert not CreditTransaction.objects.exclude(refill_period_key="").exists()


@time_machine.travel(PERIODS[0][1], tick=False)
def test_refill_reports_incomplete_settings(refilling_team, team_factory):
    good = refilling_team("daily")
    broken = team_factory("acme-broken")
    # Settings the API rejects, as a manual database edit could leave them.
    Team.objects.filter(pk=broken.id).update(auto_refill_enabled=True)
    stdout = io.StringIO()

    with pytest.raises(CommandError, match="acme-broken"):
        call_command("refill_credits", "--json", stdout=stdout, stderr=io.StringIO())

    result = json.loads(stdout.getvalue())
    assert result["refilled"] == [good.id]
    assert result["failed_count"] == 1
    assert result["failed"][0]["team_id"] == "acme-broken"
    assert "refill amount" in result["failed"][0]["error"]
    assert len(refills(good.id)) == 1
    assert refills(broken.id) == []


@time_machine.travel(PERIODS[0][1], tick=False)
def test_refill_text_output(refilling_team):
    team = refilling_team("daily")
    stdout, stderr = io.StringIO(), io.StringIO()

    call_command("refill_credits", stdout=stdout, stderr=stderr)

    assert stdout.getvalue() == (
        "Refilled 1 team(s); skipped 0 already refilled this period; 0 failed.\n"
    )
    assert f"Refilled team {team.id}" in stderr.getvalue()


@time_machine.travel(PERIODS[0][1], tick=False)
def test_subscription_replenish_is_not_a_period_refill(refilling_team):
    team = refilling_team("daily")
    replenish_credits(team_id=team.id, credits=5, payment_type="subscription")

    result = run_refills()

    assert result["refilled"] == [team.id]
    assert Team.objects.get(pk=team.id).credits_allocated == 65


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"
)
@pytest.mark.django_db(transaction=True)
def test_racing_refill_runs_refill_once(refilling_team):
    team = refilling_team("monthly")
    barrier = threading.Barrier(10)
    results = [None] * 10

    def worker(index):
        try:
            barrier.wait()
            results[index] = run_refills()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(result["refilled_count"] for result in results) == 1
    assert sum(result["skipped_count"] for result in results) == 9
    assert sum(result["failed_count"] for result in results) == 0
    assert len(refills(team.id)) == 1
    assert Team.objects.get(pk=team.id).credits_allocated == 60
