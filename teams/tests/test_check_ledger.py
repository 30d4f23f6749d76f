"""The check_ledger command: balances against the ledger and open jobs."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from jobs.services import complete_job, create_job
from jobs.tests.conftest import post_json
from teams.models import Team
from teams.services import adjust_credits, allocate_credits, refund_job


def run_check(*args):
    """Run check_ledger --json; return its parsed stdout and the error, if any."""
    stdout = io.StringIO()
    error = None
    try:
        call_command("check_ledger", "--json", *args, stdout=stdout)
    except CommandError as exc:
        error = exc
    return json.loads(stdout.getvalue()), error


def execute(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql.format(table=Team._meta.db_table), params)


def run_charged_job(client, owner) -> str:
    created = post_json(client, "/api/jobs/create", {"job_type": "chat"}, owner.headers)
    job_id = created.json()["job_id"]
    body = {"model": "chat-fast", "messages": [{"role": "user", "content": "Hi"}]}
    call = post_json(client, f"/api/jobs/{job_id}/llm-call", body, owner.headers)
    assert call.status_code == 200, call.content
    post_json(
        client, f"/api/jobs/{job_id}/complete", {"status": "completed"}, owner.headers
    )
    return job_id


@pytest.fixture
def busy_teams(client, team, team_factory):
    """Two teams with grants, charged, refunded, cancelled and open jobs.

    acme-research: 10 + 5 granted, one job charged 1 and refunded, one
    charged 1, one open; remaining 14, held 1. acme-ops: 20 - 3, one open
    job; remaining 17, held 1.
    """
    other = team_factory("acme-ops", credits=20)
    allocate_credits(team_id=team.id, amount=5)
    adjust_credits(team_id=other.id, credits=-3, reason="Correction")
    refund_job(team_id=team.id, job_id=run_charged_job(client, team))
    run_charged_job(client, team)
    cancelled = create_job(team=team.team, job_type="report")
    complete_job(team=team.team, job_id=cancelled.id, status="cancelled")
    create_job(team=team.team, job_type="report")
    create_job(team=other.team, job_type="report")
    return team, other


@pytest.fixture
def tamper():
    """Change a team column with raw SQL and restore it after the test.

    The organization fixture checks every ledger at teardown, so the
    tampered value must be undone before that.
    """
    changes = []

    def change(team_id, column, delta):
        sql = f"UPDATE {{table}} SET {column} = {column} + %s WHERE id = %s"
        execute(sql, [delta, team_id])
        changes.append((sql, team_id, delta))

    yield change
    for sql, team_id, delta in changes:
        execute(sql, [-delta, team_id])


def test_consistent_ledger_has_no_mismatches(busy_teams):
    result, error = run_check()

    assert error is None
    assert result == {"teams_checked": 2, "mismatch_count": 0, "mismatches": []}


def test_tampered_balance_is_reported(busy_teams, tamper):
    team, _ = busy_teams
    tamper(team.id, "credits_allocated", 7)

    result, error = run_check()

    assert error is not None
    assert "1 ledger mismatch" in str(error)
    assert result["mismatches"] == [
        {
            "check": "ledger_sum",
            "team_id": team.id,
            "expected": 14,
            "actual": 21,
            "transaction_id": None,
        }
    ]


def test_tampered_hold_is_reported(busy_teams, tamper):
    _, other = busy_teams
    tamper(other.id, "credits_held", 2)

    result, error = run_check()

    assert error is not None
    assert result["mismatches"] == [
        {
            "check": "credits_held",
            "team_id": other.id,
            "expected": 1,
            "actual": 3,
            "transaction_id": None,
        }
    ]


def test_team_option_limits_the_check(busy_teams, tamper):
    team, other = busy_teams
    tamper(team.id, "credits_used", 1)

    other_result, other_error = run_check("--team", other.id)
    team_result, team_error = run_check("--team", team.id)

    assert other_error is None
    assert other_result["teams_checked"] == 1
    assert other_result["mismatch_count"] == 0
    assert team_error is not None
    assert [m["team_id"] for m in team_result["mismatches"]] == [team.id]


def test_unknown_team_is_an_error(db):
    with pytest.raises(CommandError, match="Team nobody not found"):
        call_command("check_ledger", "--team", "nobody", stdout=io.StringIO())


def test_text_output(busy_teams, tamper):
    team, _ = busy_teams
    tamper(team.id, "credits_allocated", -2)
    stdout, stderr = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError):
        call_command("check_ledger", stdout=stdout, stderr=stderr)

    assert stdout.getvalue() == (f"ledger_sum: team {team.id} expected 14, actual 12\n")
    assert stderr.getvalue() == "Checked 2 team(s): 1 mismatch(es).\n"


def test_one_query_per_check(busy_teams, django_assert_num_queries):
    # Four checks and the count of checked teams, whatever the number of teams.
    with django_assert_num_queries(5):
        result, error = run_check()

    assert error is None
    assert result["teams_checked"] == 2
