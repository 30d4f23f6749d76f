import json
import socket

import pytest

from catalog.models import ModelAlias
from catalog.providers import ChatResult
from jobs import services


def post_json(client, path, body, headers):
    return client.post(
        path, data=json.dumps(body), content_type="application/json", **headers
    )


def open_single_call(fixture, job_type="single") -> services.CallContext:
    """Open a one-call job for ``fixture``'s team, as create-and-call does."""
    return services.prepare_single_call(
        authorization=f"Bearer {fixture.key}",
        new_job=services.NewJobRequest(job_type=job_type),
        alias_name="chat-fast",
    )


def answered(prompt_tokens=7, completion_tokens=5) -> services.CallOutcome:
    """Return the outcome of a call that the provider completed."""
    result = ChatResult(
        content="Echo",
        finish_reason="stop",
        tool_calls=None,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    return services.CallOutcome(latency_ms=12, result=result)


@pytest.fixture
def create_job(client, team):
    """Create a job for ``team`` and return its id."""

    def create(job_type="document_analysis", fixture=None, **extra):
        owner = fixture or team
        response = post_json(
            client, "/api/jobs/create", {"job_type": job_type, **extra}, owner.headers
        )
        assert response.status_code == 201, response.content
        return response.json()["job_id"]

    return create


@pytest.fixture
def call_job(client, team):
    def call(job_id, body=None, fixture=None):
        owner = fixture or team
        payload = body or {
            "model": "chat-fast",
            "messages": [{"role": "user", "content": "Summarise the quarterly report"}],
            "purpose": "summary",
        }
        return post_json(client, f"/api/jobs/{job_id}/llm-call", payload, owner.headers)

    return call


@pytest.fixture
def complete_job(client, team):
    def complete(job_id, status="completed", fixture=None, **extra):
        owner = fixture or team
        return post_json(
            client,
            f"/api/jobs/{job_id}/complete",
            {"status": status, **extra},
            owner.headers,
        )

    return complete


@pytest.fixture
def faulty_alias(access_group):
    """Point an alias of the team's access group at a failing fake model."""

    def make(provider_model, name="chat-faulty"):
        alias = ModelAlias.objects.create(
            alias=name,
            provider="openai_compatible",
            provider_model=provider_model,
            input_price_per_million="1",
            output_price_per_million="2",
            max_retries=0,
        )
        access_group.aliases.add(alias)
        return alias

    return make


@pytest.fixture
def closed_port():
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
