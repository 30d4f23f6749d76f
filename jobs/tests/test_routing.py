"""Retries and fallbacks of provider calls, against the fake provider."""

from decimal import Decimal

import pytest

from catalog.crypto import encrypt_secret
from catalog.models import ModelAlias, ProviderCredential
from catalog.providers.errors import ProviderHTTPError, ProviderTimeout
from catalog.providers.routing import (
    MAX_BACKOFF_SECONDS,
    Candidate,
    RetryPolicy,
    _retry_wait,
)
from jobs.models import Job, LLMCall


@pytest.fixture
def route_alias(access_group):
    """Add an alias the team may use, retried quickly by default."""

    def make(name, provider_model, **fields):
        alias = ModelAlias.objects.create(
            alias=name,
            provider="openai_compatible",
            provider_model=provider_model,
            input_price_per_million="1",
            output_price_per_million="2",
            **{"max_retries": 2, "retry_backoff_ms": 1, **fields},
        )
        access_group.aliases.add(alias)
        return alias

    return make


def ask(call_job, job_id, model):
    return call_job(
        job_id, {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    )


def test_retries_until_provider_recovers(route_alias, create_job, call_job):
    route_alias("chat-flaky", "flaky-2x503-recovers")
    job_id = create_job()

    response = ask(call_job, job_id, "chat-flaky")

    assert response.status_code == 200, response.content
    assert response.json()["response"]["content"] == "Echo: hello"
    call = LLMCall.objects.get(job_id=job_id)
    assert call.attempt_count == 3
    assert call.served_by == "chat-flaky"
    assert call.error_code == ""


def test_fallback_serves_after_retries(alias, route_alias, create_job, call_job):
    route_alias("chat-primary", "fail-503", max_retries=1, fallbacks=["chat-fast"])
    job_id = create_job()

    response = ask(call_job, job_id, "chat-primary")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model"] == "chat-primary"
    assert "chat-fast" not in response.content.decode()
    call = LLMCall.objects.get(job_id=job_id)
    assert call.attempt_count == 3
    assert call.alias == "chat-primary"
    assert call.served_by == "chat-fast"
    assert call.provider_model == "fake-gpt-small"
    assert call.input_price_per_million == Decimal("0.15")
    assert call.output_price_per_million == Decimal("0.6")


def test_rejected_request_is_final(alias, route_alias, create_job, call_job):
    route_alias("chat-primary", "fail-400", max_retries=3, fallbacks=["chat-fast"])
    job_id = create_job()

    response = ask(call_job, job_id, "chat-primary")

    assert response.status_code == 502
    assert response.json()["code"] == "provider_rejected_request"
    call = LLMCall.objects.get(job_id=job_id)
    assert call.attempt_count == 1
    assert call.served_by == "chat-primary"


def test_auth_failure_not_retried_but_falls_back(
    alias, route_alias, create_job, call_job
):
    route_alias("chat-primary", "fail-401", max_retries=3, fallbacks=["chat-fast"])
    job_id = create_job()

    response = ask(call_job, job_id, "chat-primary")

    assert response.status_code == 200
    call = LLMCall.objects.get(job_id=job_id)
    assert call.attempt_count == 2
    assert call.served_by == "chat-fast"


def test_every_candidate_failing(route_alias, create_job, call_job):
    route_alias("chat-backup", "fail-502", max_retries=0)
    route_alias("chat-primary", "fail-500", max_retries=1, fallbacks=["chat-backup"])
    job_id = create_job()

    response = ask(call_job, job_id, "chat-primary")

    assert response.status_code == 502
    assert response.json()["code"] == "provider_error"
    call = LLMCall.objects.get(job_id=job_id)
    assert call.attempt_count == 3
    assert call.served_by == "chat-backup"
    assert call.client_cost_usd == 0
    assert Job.objects.get(pk=job_id).calls_in_flight == 0


def test_fallback_without_credential_is_skipped(
    organization, route_alias, create_job, call_job
):
    anthropic = ModelAlias.objects.create(
        alias="chat-claude", provider="anthropic", provider_model="claude-fake"
    )
    route_alias(
        "chat-primary", "fail-500", max_retries=0, fallbacks=["chat-claude", "gone"]
    )
    job_id = create_job()

    response = ask(call_job, job_id, "chat-primary")

    assert anthropic.pk
    assert response.status_code == 502
    assert LLMCall.objects.get(job_id=job_id).attempt_count == 1


def test_primary_without_credential_uses_fallback(
    organization, fake_provider, alias, access_group, create_job, call_job
):
    claude = ModelAlias.objects.create(
        alias="chat-claude",
        provider="anthropic",
        provider_model="claude-fake",
        fallbacks=["chat-fast"],
    )
    access_group.aliases.add(claude)
    job_id = create_job()

    response = ask(call_job, job_id, "chat-claude")

    assert response.status_code == 200
    assert LLMCall.objects.get(job_id=job_id).served_by == "chat-fast"


def test_no_usable_candidate_is_503(organization, access_group, create_job, call_job):
    claude = ModelAlias.objects.create(
        alias="chat-claude", provider="anthropic", provider_model="claude-fake"
    )
    access_group.aliases.add(claude)
    job_id = create_job()

    response = ask(call_job, job_id, "chat-claude")

    assert response.status_code == 503
    assert response.json()["code"] == "model_unavailable"
    assert not LLMCall.objects.exists()
    assert Job.objects.get(pk=job_id).calls_in_flight == 0


def test_alias_timeout_applies_per_attempt(route_alias, create_job, call_job):
    route_alias("chat-slow", "slow-5", timeout_seconds=0.2, max_retries=1)
    job_id = create_job()

    response = ask(call_job, job_id, "chat-slow")

    assert response.status_code == 504
    assert LLMCall.objects.get(job_id=job_id).attempt_count == 2


def test_inactive_fallback_is_skipped(organization, route_alias, create_job, call_job):
    route_alias("chat-off", "fake-gpt-small", status="inactive")
    route_alias("chat-primary", "fail-503", max_retries=0, fallbacks=["chat-off"])
    job_id = create_job()

    response = ask(call_job, job_id, "chat-primary")

    assert response.status_code == 502
    assert LLMCall.objects.get(job_id=job_id).attempt_count == 1


def candidate(**policy):
    from catalog.providers.base import ProviderTarget

    return Candidate(
        alias="chat-x",
        target=ProviderTarget(provider="openai", model="m", api_key="k"),
        policy=RetryPolicy(**policy),
    )


def test_backoff_grows_within_bounds():
    policy = RetryPolicy(max_retries=10, backoff_ms=100)

    for retry_number, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (10, 51.2)]:
        for _ in range(50):
            delay = policy.delay(retry_number)
            assert 0 <= delay <= min(ceiling, MAX_BACKOFF_SECONDS)


def test_retry_wait_honours_retry_after():
    busy = ProviderHTTPError(429, retry_after=3)
    too_long = ProviderHTTPError(429, retry_after=120)
    rejected = ProviderHTTPError(400)

    assert _retry_wait(candidate(max_retries=2, backoff_ms=1), busy, 1) >= 3
    assert _retry_wait(candidate(max_retries=2), too_long, 1) is None
    assert _retry_wait(candidate(max_retries=2), rejected, 1) is None
    assert _retry_wait(candidate(max_retries=2), ProviderTimeout(), 3) is None
    assert _retry_wait(candidate(max_retries=0), ProviderTimeout(), 1) is None


def test_credential_of_other_organization_not_used(
    outsider, route_alias, create_job, call_job
):
    ProviderCredential.objects.filter(organization_id="acme").delete()
    ProviderCredential.objects.get_or_create(
        organization_id=outsider.team.organization_id,
        provider="openai_compatible",
        defaults={"name": "theirs", "encrypted_api_key": encrypt_secret("sk-theirs")},
    )
    job_id = create_job()

    response = ask(call_job, job_id, "chat-fast")

    assert response.status_code == 503
