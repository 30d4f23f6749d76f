"""Recording a call through a database error, without losing or doubling it.

These tests fail COMMIT or the store step inside the test process. The
served test in test_database_restart.py cuts a real PostgreSQL connection.
"""

import logging
import re
import time

import pytest
from django.db import OperationalError, connection
from django.test import override_settings

from jobs import services
from jobs.models import Job, LLMCall
from jobs.tests.conftest import answered, open_single_call
from saasllm.database import atomic_with_retry, run_with_retry
from teams.models import CreditTransaction, Team

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = "Summarise the confidential merger memo"


@pytest.fixture
def token_team(team_factory):
    return team_factory(
        "token-team",
        # Each call in flight reserves 1024 tokens, so 1024 credits here.
        credits=5000,
        budget_mode=Team.BudgetMode.CONSUMPTION_TOKENS,
        tokens_per_credit=1,
    )


@pytest.fixture
def lose_commit_acknowledgement(monkeypatch):
    """Make COMMIT number ``n`` from now succeed but raise OperationalError.

    This is what a client sees when the connection breaks after the server
    committed and before its acknowledgement arrived.
    """
    real_commit = connection.commit

    def arm(n: int = 1):
        remaining = [n]

        def commit():
            real_commit()
            remaining[0] -= 1
            if remaining[0] == 0:
                raise OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(connection, "commit", commit)

    return arm


def test_lost_commit_stores_call_once(token_team, lose_commit_acknowledgement):
    context = open_single_call(token_team, "retry")
    lose_commit_acknowledgement()

    call = services.record_call(context=context, outcome=answered())

    job = Job.objects.get(pk=context.job.id)
    assert list(LLMCall.objects.filter(job=job).values_list("id", flat=True)) == [
        call.id
    ]
    assert job.calls_in_flight == 0
    assert job.accrued_credits == 12
    assert job.status == Job.Status.IN_PROGRESS


def test_lost_commit_of_close_charges_once(token_team, lose_commit_acknowledgement):
    context = open_single_call(token_team, "retry")
    # The one transaction that stores the job's only call and closes the job.
    lose_commit_acknowledgement(1)

    call, completion = services.finish_single_call(context=context, outcome=answered())

    job = Job.objects.get(pk=context.job.id)
    deductions = CreditTransaction.objects.filter(job=job, type="deduction")
    assert completion.job.credits_charged == 12
    assert job.status == Job.Status.COMPLETED
    assert job.credits_charged == 12
    assert [entry.amount for entry in deductions] == [-12]
    assert LLMCall.objects.filter(job=job).count() == 1
    team = Team.objects.get(pk=token_team.id)
    assert team.credits_used == 12
    assert team.credits_held == 0


@override_settings(DATABASE_RETRY_SECONDS=0.3)
def test_record_gives_up_after_retry_window(team, monkeypatch, caplog):
    context = open_single_call(team, "retry")

    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "_store_call", unreachable)
    started = time.monotonic()
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(OperationalError, match="connection refused"),
    ):
        services.record_call(
            context=context,
            outcome=answered(),
            request_data={"messages": [{"role": "user", "content": PROMPT}]},
        )
    waited = time.monotonic() - started

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert re.fullmatch(
        rf"Call [0-9a-f-]{{36}} of job {context.job.id} \(team {team.id}\) was not "
        "recorded: the database was unavailable",
        errors[0],
    )
    assert PROMPT not in caplog.text
    retries = [r for r in caplog.records if r.name == "saasllm.database"]
    assert len(retries) >= 2
    assert 0.3 <= waited < 2
    job = Job.objects.get(pk=context.job.id)
    assert job.calls_in_flight == 1
    assert not LLMCall.objects.filter(job=job).exists()


def failing_then(result, failures: int):
    """An operation that raises OperationalError ``failures`` times, then returns."""
    tries = []

    def operation(retried: bool):
        tries.append(retried)
        if len(tries) <= failures:
            raise OperationalError("server closed the connection unexpectedly")
        return result

    return operation, tries


def test_retry_returns_after_failures():
    operation, tries = failing_then("stored", failures=2)

    result = atomic_with_retry(operation, description="test")

    assert result == "stored"
    assert tries == [False, True, True]


def test_run_with_retry_returns_after_failure():
    operation, tries = failing_then("closed", failures=1)

    result = run_with_retry(operation, description="test")

    assert result == "closed"
    assert tries == [False, True]


def test_failed_commit_not_repeated(lose_commit_acknowledgement):
    tries = []
    lose_commit_acknowledgement()

    with pytest.raises(OperationalError):
        atomic_with_retry(tries.append, description="test", repeatable=False)

    assert tries == [False]


def test_failed_statement_repeated_when_not_repeatable():
    operation, tries = failing_then("done", failures=1)

    result = atomic_with_retry(operation, description="test", repeatable=False)

    assert result == "done"
    assert tries == [False, True]


def test_no_retry_inside_outer_transaction():
    from django.db import transaction

    operation, tries = failing_then("never", failures=1)

    with pytest.raises(OperationalError), transaction.atomic():
        atomic_with_retry(operation, description="test")

    assert tries == [False]
