"""Rows for the admin page tests: a tenant with keys, jobs, calls and a ledger."""

from decimal import Decimal

from django.contrib.admin.utils import quote
from django.urls import reverse

from jobs.models import Job, LLMCall
from teams.models import Team
from teams.services import allocate_credits, issue_key

PROVIDER_SECRET = "sk-provider-secret-abcdef123456"


def admin_url(model, view, *args):
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def change_url(obj):
    return admin_url(type(obj), "change", quote(obj.pk))


def create_job(team: Team, calls=1, *, bodies=False, failed=False, **fields):
    """Create a job of ``team`` with ``calls`` calls, each 100 + 20 tokens."""
    job = Job.objects.create(
        team=team,
        organization_id=team.organization_id,
        job_type=fields.pop("job_type", "summarize"),
        **fields,
    )
    for number in range(calls):
        LLMCall.objects.create(
            job=job,
            team=team,
            organization_id=team.organization_id,
            alias="chat-fast",
            provider="openai_compatible",
            provider_model="fake-gpt-small",
            purpose=f"draft-{number}",
            prompt_tokens=100,
            completion_tokens=20,
            total_tokens=120,
            provider_cost_usd=Decimal("0.0000270000"),
            client_cost_usd=Decimal("0.0000300000"),
            latency_ms=40,
            attempt_count=2 if failed else 1,
            error_code="provider_error" if failed else "",
            error_detail="upstream said no" if failed else "",
            request_data={"messages": [{"role": "user", "content": "hello body"}]}
            if bodies
            else None,
            response_data={"content": "reply body"} if bodies else None,
        )
    return job


def seed_tenant(team: Team) -> dict:
    """Give ``team`` a second key, a ledger allocation and jobs with calls.

    Returns the plaintext keys issued here, which no later page may show.
    """
    _key, plaintext = issue_key(team=team, name="second")
    allocate_credits(team_id=team.pk, amount=5, reason="Top-up")
    job = create_job(team, calls=2, bodies=True)
    create_job(team, calls=1, failed=True, job_type="triage")
    return {"keys": [plaintext], "job": job}
