"""Streamed calls over real HTTP: relay, usage, charges and every way a stream ends."""

import logging
import time
from decimal import Decimal
from itertools import pairwise

import pytest
from django.db import OperationalError

from catalog.crypto import encrypt_secret
from catalog.models import ModelAlias, ProviderCredential
from jobs.models import Job, LLMCall
from jobs.tests.sse_client import stream_post
from ratelimits.models import CallSlot
from saasllm.test_servers import ASGIServerThread
from teams.models import Team

pytestmark = pytest.mark.django_db(transaction=True)

PROVIDER_SECRET = "sk-provider-secret-abcdef123456"
# Strings of the provider side that no response to a team may contain: the
# provider names, provider model names the tests use, provider keys and the
# fake provider's marker in its error messages.
PROVIDER_SIDE_STRINGS = [
    "openai_compatible",
    "anthropic",
    "fake-gpt",
    "claude-fake",
    "stream-50x20",
    "stream-fail-after",
    "stream-5x",
    "flaky-2x503",
    "fail-4",
    "fail-5",
    "no-usage",
    PROVIDER_SECRET,
    "sk-ant-fake",
    "upstream-secret-text",
    "chatcmpl-fake",
    "msg_fake",
]


@pytest.fixture
def server(team):
    """Serve the gateway; afterwards, scan every response it sent for leaks."""
    gateway = ASGIServerThread()
    gateway.start()
    yield gateway.base_url
    gateway.stop()
    assert gateway.recorder.responses
    assert gateway.recorder.leaks(PROVIDER_SIDE_STRINGS) == []


@pytest.fixture
def stream_alias(access_group):
    """Add an alias of the team's access group that serves ``provider_model``."""

    def make(provider_model, name="chat-stream", **fields):
        alias = ModelAlias.objects.create(
            alias=name,
            provider="openai_compatible",
            provider_model=provider_model,
            input_price_per_million="1",
            output_price_per_million="2",
            **{"max_retries": 0, **fields},
        )
        access_group.aliases.add(alias)
        return alias

    return make


def create_job(server, team):
    import httpx

    response = httpx.post(
        server + "/api/jobs/create",
        json={"job_type": "stream"},
        headers={"Authorization": f"Bearer {team.key}"},
    )
    assert response.status_code == 201, response.text
    return response.json()["job_id"]


def call_body(model="chat-stream", text="Tell me a story", **extra):
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def wait_for(predicate, timeout=10.0):
    """Poll until the server's asynchronous work shows; fail after ``timeout``.

    SQLite's shared in-memory test database reports a table locked, rather
    than waiting, while the server thread writes to it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OperationalError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met within the timeout")


def test_stream_relays_each_chunk_as_it_arrives(server, team, stream_alias):
    stream_alias("stream-50x20")
    job_id = create_job(server, team)

    reply = stream_post(
        server,
        f"/api/jobs/{job_id}/llm-call-stream",
        call_body(stream_options={"include_usage": True}),
        team.key,
    )

    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["cache-control"] == "no-cache"
    assert reply.headers["x-accel-buffering"] == "no"
    assert len(reply.content_events) == 50
    assert reply.text == " ".join(f"w{number}" for number in range(1, 51))
    assert reply.done
    chunks = reply.chunks
    assert {chunk["model"] for chunk in chunks} == {"chat-stream"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[-1]["usage"]["completion_tokens"] == 50
    # The provider spaces its 50 chunks 20 ms apart, 980 ms in all. Chunks
    # relayed as they arrive keep most of that spread, but a buffered reply
    # arrives in one burst.
    arrivals = [event.arrived for event in reply.content_events]
    assert arrivals[-1] - arrivals[0] > 0.5
    spaced = [later - earlier > 0.01 for earlier, later in pairwise(arrivals)]
    assert sum(spaced) >= 25


def test_stream_records_call_before_done(server, team, stream_alias):
    stream_alias("stream-5x1")
    job_id = create_job(server, team)

    reply = stream_post(
        server,
        f"/api/jobs/{job_id}/llm-call-stream",
        call_body(purpose="story", call_metadata={"step": 1}),
        team.key,
    )

    assert reply.done
    assert reply.chunks[-1].get("usage") is None
    call = LLMCall.objects.get(job_id=job_id)
    assert call.streamed
    assert call.completion_tokens == 5
    assert not call.usage_estimated
    assert call.error_code == ""
    assert call.purpose == "story"
    job = Job.objects.get(pk=job_id)
    assert job.status == "in_progress"
    assert job.calls_in_flight == 0
    assert job.metadata == {"step": 1}
    assert CallSlot.objects.filter(team_id=team.id).count() == 0


def test_stream_without_provider_usage_is_estimated(server, team, stream_alias):
    stream_alias("stream-8x1-no-usage")
    job_id = create_job(server, team)

    reply = stream_post(
        server,
        f"/api/jobs/{job_id}/llm-call-stream",
        call_body(stream_options={"include_usage": True}),
        team.key,
    )

    assert reply.done
    call = LLMCall.objects.get(job_id=job_id)
    assert call.usage_estimated
    assert call.prompt_tokens > 0
    assert call.completion_tokens >= 8
    assert reply.chunks[-1]["usage"]["completion_tokens"] == call.completion_tokens
    assert call.provider_cost_usd > 0


@pytest.mark.parametrize(
    ("budget_mode", "rates"),
    [
        ("job_based", {}),
        ("consumption_usd", {"credits_per_dollar": Decimal("100000")}),
        ("consumption_tokens", {"tokens_per_credit": 3}),
    ],
)
def test_streamed_job_charged_like_plain_job(
    server, team_factory, stream_alias, budget_mode, rates
):
    import httpx

    stream_alias("fake-gpt-small", name="chat-stream")
    plain_team = team_factory("plain", credits=1000, budget_mode=budget_mode, **rates)
    streamed_team = team_factory(
        "streamed", credits=1000, budget_mode=budget_mode, **rates
    )
    body = {
        **call_body(text="one two three four five six", max_tokens=20),
        "job_type": "compare",
    }

    plain = httpx.post(
        server + "/api/jobs/create-and-call",
        json=body,
        headers={"Authorization": f"Bearer {plain_team.key}"},
    ).json()
    streamed = stream_post(
        server, "/api/jobs/create-and-call-stream", body, streamed_team.key
    )

    assert streamed.done
    summary = streamed.named("job")[0]
    assert streamed.headers["x-job-id"] == summary["job_id"]
    assert summary["status"] == "completed"
    assert summary["costs"]["credits_charged"] == plain["costs"]["credits_charged"]
    assert summary["costs"]["total_tokens"] == plain["costs"]["total_tokens"]
    assert summary["costs"]["total_cost_usd"] == plain["costs"]["total_cost_usd"]
    assert plain["costs"]["credits_charged"] > 0
    plain_call = LLMCall.objects.get(job_id=plain["job_id"])
    streamed_call = LLMCall.objects.get(job_id=summary["job_id"])
    assert streamed_call.streamed and not plain_call.streamed
    assert streamed_call.client_cost_usd == plain_call.client_cost_usd
    plain_balance = Team.objects.get(pk="plain")
    streamed_balance = Team.objects.get(pk="streamed")
    assert streamed_balance.credits_used == plain_balance.credits_used
    assert streamed_balance.credits_held == 0


def test_provider_failure_mid_stream(server, team, stream_alias):
    stream_alias("stream-fail-after-10")
    job_id = create_job(server, team)

    reply = stream_post(
        server, f"/api/jobs/{job_id}/llm-call-stream", call_body(), team.key
    )

    assert reply.status == 200
    assert len(reply.content_events) == 10
    assert not reply.done
    assert reply.errors == [
        {
            "error": {
                "code": "provider_unreachable",
                "message": "The model provider could not be reached. Retry later.",
                "type": "api_error",
            }
        }
    ]
    assert reply.events[-1].json == reply.errors[0]
    call = LLMCall.objects.get(job_id=job_id)
    assert call.error_code == "provider_unreachable"
    assert call.completion_tokens >= 10
    assert call.usage_estimated
    assert call.provider_cost_usd > 0
    assert call.client_cost_usd == 0
    job = Job.objects.get(pk=job_id)
    assert job.status == "in_progress"
    assert job.calls_in_flight == 0
    assert job.accrued_credits == 0
    assert CallSlot.objects.filter(team_id=team.id).count() == 0


def test_single_call_stream_failure_fails_job(server, team, stream_alias):
    stream_alias("stream-fail-after-10")

    reply = stream_post(
        server,
        "/api/jobs/create-and-call-stream",
        {**call_body(), "job_type": "story"},
        team.key,
    )

    assert len(reply.errors) == 1
    assert reply.named("job") == []
    job = Job.objects.get(pk=reply.headers["x-job-id"])
    assert job.status == "failed"
    assert job.credits_charged == 0
    balance = Team.objects.get(pk=team.id)
    assert balance.credits_used == 0
    assert balance.credits_held == 0


def test_client_disconnect_stops_provider(server, team, stream_alias, fake_provider):
    stream_alias("stream-50x20")
    job_id = create_job(server, team)
    endings_before = len(fake_provider.stream_endings)

    reply = stream_post(
        server,
        f"/api/jobs/{job_id}/llm-call-stream",
        call_body(),
        team.key,
        stop_after_chunks=10,
    )

    assert len(reply.content_events) == 10
    call = wait_for(lambda: LLMCall.objects.filter(job_id=job_id).first())
    assert call.finish_reason == "client_disconnected"
    assert call.error_code == ""
    assert 10 <= call.completion_tokens < 50
    assert call.usage_estimated
    job = Job.objects.get(pk=job_id)
    assert job.status == "in_progress"
    assert job.calls_in_flight == 0
    assert CallSlot.objects.filter(team_id=team.id).count() == 0
    endings = wait_for(lambda: fake_provider.stream_endings[endings_before:])
    model, sent, finished = endings[0]
    assert model == "stream-50x20"
    assert not finished
    assert sent < 50


def test_single_call_disconnect_charges_usage_so_far(
    server, team_factory, stream_alias
):
    stream_alias("stream-50x20")
    owner = team_factory(
        "tokens", credits=1000, budget_mode="consumption_tokens", tokens_per_credit=2
    )

    reply = stream_post(
        server,
        "/api/jobs/create-and-call-stream",
        {**call_body(), "job_type": "story"},
        owner.key,
        stop_after_chunks=10,
    )

    job_id = reply.headers["x-job-id"]
    job = wait_for(lambda: Job.objects.filter(pk=job_id, status="completed").first())
    call = LLMCall.objects.get(job_id=job_id)
    assert call.finish_reason == "client_disconnected"
    assert job.credits_charged == call.total_tokens // 2
    balance = Team.objects.get(pk="tokens")
    assert balance.credits_used == job.credits_charged
    assert balance.credits_held == 0


@pytest.mark.parametrize(
    ("provider_model", "status", "code"),
    [
        ("fail-500", 502, "provider_error"),
        ("fail-401", 502, "provider_auth_failed"),
        ("fail-429", 503, "provider_busy"),
        ("malformed", 502, "provider_bad_response"),
    ],
)
def test_failure_before_first_chunk_is_plain_error(
    server, team, stream_alias, provider_model, status, code
):
    stream_alias(provider_model)
    job_id = create_job(server, team)

    reply = stream_post(
        server, f"/api/jobs/{job_id}/llm-call-stream", call_body(), team.key
    )

    assert reply.status == status
    assert reply.headers["content-type"] == "application/json"
    assert b'"code":"' + code.encode() + b'"' in reply.body.replace(b" ", b"")
    for leaked in (provider_model, PROVIDER_SECRET, "upstream-secret-text", "openai"):
        assert leaked.encode() not in reply.body
    if provider_model == "fail-429":
        assert reply.headers["retry-after"] == "7"
    call = LLMCall.objects.get(job_id=job_id)
    assert call.error_code == code
    assert call.streamed
    job = Job.objects.get(pk=job_id)
    assert job.calls_in_flight == 0
    assert job.status == "in_progress"
    assert CallSlot.objects.filter(team_id=team.id).count() == 0


def test_single_call_failure_before_first_chunk(server, team, stream_alias):
    stream_alias("fail-500")

    reply = stream_post(
        server,
        "/api/jobs/create-and-call-stream",
        {**call_body(), "job_type": "story"},
        team.key,
    )

    assert reply.status == 502
    job = Job.objects.get(team_id=team.id)
    assert reply.headers["x-job-id"] == str(job.id)
    assert job.status == "failed"
    assert job.credits_charged == 0
    assert Team.objects.get(pk=team.id).credits_held == 0


def test_plain_endpoint_rejects_stream_flag(server, team, stream_alias):
    import httpx

    stream_alias("fake-gpt-small")
    job_id = create_job(server, team)

    response = httpx.post(
        f"{server}/api/jobs/{job_id}/llm-call",
        json=call_body(stream=True),
        headers={"Authorization": f"Bearer {team.key}"},
    )

    assert response.status_code == 422
    assert "stream" in response.json()["errors"]


def test_stream_of_other_teams_job_is_404(server, team, outsider, stream_alias):
    stream_alias("stream-5x1")
    job_id = create_job(server, team)

    reply = stream_post(
        server, f"/api/jobs/{job_id}/llm-call-stream", call_body(), outsider.key
    )

    assert reply.status == 404
    assert not LLMCall.objects.exists()


def test_stream_retries_before_first_chunk(server, team, stream_alias):
    stream_alias("flaky-2x503-stream", max_retries=2, retry_backoff_ms=1)
    job_id = create_job(server, team)

    reply = stream_post(
        server, f"/api/jobs/{job_id}/llm-call-stream", call_body(), team.key
    )

    assert reply.done
    assert reply.text == "Echo: Tell me a story"
    call = LLMCall.objects.get(job_id=job_id)
    assert call.attempt_count == 3
    assert call.served_by == "chat-stream"


def test_stream_relays_tool_calls(server, team, stream_alias, settings):
    settings.STORE_CALL_BODIES = True
    stream_alias("fake-gpt-small")
    job_id = create_job(server, team)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]

    reply = stream_post(
        server,
        f"/api/jobs/{job_id}/llm-call-stream",
        call_body(text="Please use a tool", tools=tools),
        team.key,
    )

    assert reply.done
    deltas = [chunk["choices"][0]["delta"] for chunk in reply.chunks]
    tool_deltas = [delta["tool_calls"][0] for delta in deltas if "tool_calls" in delta]
    assert tool_deltas[0]["function"]["name"] == "get_weather"
    assert reply.chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    call = LLMCall.objects.get(job_id=job_id)
    assert call.finish_reason == "tool_calls"
    recorded = call.response_data["tool_calls"][0]
    assert recorded["function"]["name"] == "get_weather"
    assert '"city"' in recorded["function"]["arguments"]


def test_anthropic_stream_relayed_as_openai_chunks(
    server, team, organization, access_group, fake_provider
):
    ProviderCredential.objects.create(
        organization=organization,
        provider="anthropic",
        name="fake anthropic",
        encrypted_api_key=encrypt_secret("sk-ant-fake-key-123456"),
        api_base=fake_provider.anthropic_base_url,
    )
    claude = ModelAlias.objects.create(
        alias="chat-smart",
        provider="anthropic",
        provider_model="claude-fake-1",
        input_price_per_million="3",
        output_price_per_million="15",
        max_retries=0,
    )
    access_group.aliases.add(claude)
    job_id = create_job(server, team)

    reply = stream_post(
        server,
        f"/api/jobs/{job_id}/llm-call-stream",
        call_body(
            model="chat-smart",
            text="Name three colours",
            max_tokens=50,
            stream_options={"include_usage": True},
        ),
        team.key,
        # The first litellm call of a process imports litellm, which takes
        # seconds, more on a loaded machine.
        timeout=120,
    )

    assert reply.status == 200, reply.body
    assert reply.done
    assert reply.text == "Echo: Name three colours"
    assert {chunk["model"] for chunk in reply.chunks} == {"chat-smart"}
    raw = "".join(event.data for event in reply.events)
    for leaked in ("claude", "anthropic", "msg_", "sk-ant"):
        assert leaked not in raw
    call = LLMCall.objects.get(job_id=job_id)
    assert call.provider == "anthropic"
    assert call.completion_tokens > 0
    assert not call.usage_estimated
    assert reply.chunks[-1]["usage"]["completion_tokens"] == call.completion_tokens


def test_provider_stalling_mid_stream_times_out(server, team, stream_alias):
    stream_alias("stream-5x3000", timeout_seconds=0.3)
    job_id = create_job(server, team)

    reply = stream_post(
        server, f"/api/jobs/{job_id}/llm-call-stream", call_body(), team.key
    )

    assert len(reply.content_events) == 1
    assert [error["error"]["code"] for error in reply.errors] == ["provider_timeout"]
    assert not reply.done
    call = LLMCall.objects.get(job_id=job_id)
    assert call.error_code == "provider_timeout"
    assert call.completion_tokens >= 1
    assert Job.objects.get(pk=job_id).calls_in_flight == 0


def test_disconnect_before_first_chunk_fails_single_call_job(
    server, team, stream_alias, caplog
):
    import httpx

    caplog.set_level(logging.INFO, logger="saasllm.requests")
    stream_alias("slow-3")

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server + "/api/jobs/create-and-call-stream",
            json={**call_body(), "job_type": "story"},
            headers={"Authorization": f"Bearer {team.key}"},
            timeout=0.5,
        )

    job = wait_for(lambda: Job.objects.filter(team_id=team.id, status="failed").first())
    assert job.credits_charged == 0
    assert job.calls_in_flight == 0
    balance = Team.objects.get(pk=team.id)
    assert balance.credits_held == 0
    assert balance.credits_used == 0
    lines = wait_for(
        lambda: [
            record
            for record in caplog.records
            if record.name == "saasllm.requests"
            and record.route == "job-create-and-call-stream"
        ]
    )
    assert [line.status for line in lines] == [499]


def test_huge_max_tokens_rejected(server, team, stream_alias):
    stream_alias("fake-gpt-small")
    job_id = create_job(server, team)

    reply = stream_post(
        server,
        f"/api/jobs/{job_id}/llm-call-stream",
        call_body(max_tokens=10**22),
        team.key,
    )

    assert reply.status == 422
    assert b"max_tokens" in reply.body


def test_single_call_stream_leaves_busy_job_open(server, team, stream_alias):
    # The stream's job id reaches the client first, so the client can make
    # another call on that job while the stream runs.
    import threading

    import httpx

    stream_alias("stream-10x100", name="chat-stream")
    stream_alias("slow-2.5", name="chat-slow")
    headers = {"Authorization": f"Bearer {team.key}"}
    second = {}

    def call_on_stream_job():
        job = wait_for(lambda: Job.objects.filter(team_id=team.id).first())
        second["response"] = httpx.post(
            server + f"/api/jobs/{job.id}/llm-call",
            json=call_body(model="chat-slow"),
            headers=headers,
            timeout=30,
        )

    caller = threading.Thread(target=call_on_stream_job)
    caller.start()
    body = {**call_body(), "job_type": "busy"}
    streamed = stream_post(server, "/api/jobs/create-and-call-stream", body, team.key)
    caller.join(timeout=30)

    assert streamed.done
    summary = streamed.named("job")[0]
    assert summary["status"] == "in_progress"
    assert summary["costs"]["credits_charged"] == 0
    assert second["response"].status_code == 200
    completed = httpx.post(
        server + f"/api/jobs/{summary['job_id']}/complete",
        json={"status": "completed"},
        headers=headers,
    )
    assert completed.status_code == 200
    assert completed.json()["costs"]["total_calls"] == 2
    assert completed.json()["costs"]["credits_charged"] == 1
    assert Team.objects.get(pk=team.id).credits_remaining == 9
