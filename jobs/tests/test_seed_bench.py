"""seed_bench: benchmark data on PostgreSQL whose ledger matches the balances."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F, Sum

from jobs.models import Job, LLMCall
from teams.models import CreditTransaction, Organization, Team

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="seed_bench runs on PostgreSQL only"
)
SMALL = {"organizations": 2, "teams": 5, "jobs": 50, "calls": 500, "days": 30}


def seed(**options):
    output = StringIO()
    call_command("seed_bench", stdout=output, stderr=StringIO(), **options)
    return output.getvalue()


@postgresql_only
@pytest.mark.django_db
def test_seed_small_counts_keeps_ledger():
    output = seed(**SMALL)

    assert "Seeded 2 organizations, 5 teams, 50 jobs, 500 LLM calls" in output
    assert Organization.objects.filter(pk__startswith="bench-seed-").count() == 2
    assert Team.objects.filter(pk__startswith="bench-seed-").count() == 5
    assert Job.objects.filter(team__pk__startswith="bench-seed-").count() == 50
    assert LLMCall.objects.filter(team__pk__startswith="bench-seed-").count() == 500
    call_command("check_ledger", stdout=StringIO(), stderr=StringIO())


@postgresql_only
@pytest.mark.django_db
def test_seed_calls_match_their_jobs():
    seed(**SMALL)

    calls = LLMCall.objects.filter(team__pk__startswith="bench-seed-")
    assert not calls.exclude(team_id=F("job__team_id")).exists()
    assert not calls.exclude(organization_id=F("job__organization_id")).exists()
    assert not calls.filter(created_at__lt=F("job__created_at")).exists()
    for job in Job.objects.filter(team__pk__startswith="bench-seed-"):
        assert job.call_count == job.calls.count()


@postgresql_only
@pytest.mark.django_db
def test_seed_charges_match_deductions():
    seed(**SMALL)

    jobs = Job.objects.filter(team__pk__startswith="bench-seed-")
    charged = jobs.aggregate(total=Sum("credits_charged"))["total"]
    deducted = CreditTransaction.objects.filter(
        team__pk__startswith="bench-seed-", type="deduction"
    ).aggregate(total=Sum("amount"))["total"]
    assert charged > 0
    assert deducted == -charged
    assert not jobs.filter(credits_charged__gt=0).exclude(status="completed").exists()
    assert (
        not jobs.filter(status="completed", credit_applied=False)
        .exclude(credits_charged=0)
        .exists()
    )


@postgresql_only
@pytest.mark.django_db
def test_same_seed_gives_same_data():
    seed(**SMALL)
    first = list(
        LLMCall.objects.order_by("id").values_list("id", "total_tokens", "alias")
    )

    seed(reset=True, **SMALL)
    second = list(
        LLMCall.objects.order_by("id").values_list("id", "total_tokens", "alias")
    )

    assert first == second


@postgresql_only
@pytest.mark.django_db
def test_existing_data_needs_reset():
    seed(**SMALL)

    with pytest.raises(CommandError, match="Pass --reset"):
        seed(**SMALL)


@postgresql_only
@pytest.mark.django_db
def test_delete_only_spares_other_data(team):
    seed(**SMALL)

    output = seed(delete_only=True)

    assert "Deleted" in output
    assert not Organization.objects.filter(pk__startswith="bench-seed-").exists()
    assert not LLMCall.objects.filter(team__pk__startswith="bench-seed-").exists()
    assert Team.objects.filter(pk=team.id).exists()


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite message")
@pytest.mark.django_db
def test_sqlite_rejected():
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        seed(**SMALL)
