from decimal import Decimal

from catalog.crypto import encrypt_secret
from catalog.models import ModelAlias, ProviderCredential
from jobs.models import LLMCall


def test_anthropic_alias_runs_through_litellm(
    organization, access_group, fake_provider, team, create_job, call_job
):
    ProviderCredential.objects.create(
        organization=organization,
        provider="anthropic",
        name="fake anthropic",
        encrypted_api_key=encrypt_secret("sk-ant-fake-key-123"),
        api_base=fake_provider.anthropic_base_url,
    )
    claude = ModelAlias.objects.create(
        alias="chat-smart",
        provider="anthropic",
        provider_model="claude-fake-1",
        input_price_per_million=Decimal("3"),
        output_price_per_million=Decimal("15"),
    )
    access_group.aliases.add(claude)
    job_id = create_job()

    response = call_job(
        job_id,
        {
            "model": "chat-smart",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name three colours"},
            ],
            "max_tokens": 100,
        },
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["response"]["content"] == "Echo: Name three colours"
    assert body["model"] == "chat-smart"
    assert "claude" not in response.content.decode()
    assert "anthropic" not in response.content.decode()
    call = LLMCall.objects.get(pk=body["call_id"])
    assert call.provider == "anthropic"
    assert call.prompt_tokens > 0
    assert call.completion_tokens > 0
    expected = (
        call.prompt_tokens * Decimal("3") + call.completion_tokens * Decimal("15")
    ) / (1_000_000)
    assert call.provider_cost_usd == expected
    assert fake_provider.requests[-1]["path"].startswith("/v1/messages")
