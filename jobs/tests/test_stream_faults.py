"""Provider faults on the call path over real HTTP: resets and timeouts.

A reset is a TCP RST from the provider after some chunks, with no error
event and no ``[DONE]``. A client must still get the chunks relayed so far,
then exactly one error event and the end of the stream, and the call must be
recorded as failed with its tokens so far, charging nothing and holding no
slot. Both the job API and the OpenAI-compatible ``/v1`` API are covered.
"""

import json
import socket

import httpx
import pytest

from catalog.crypto import encrypt_secret
from catalog.models import ModelAlias, ProviderCredential
from jobs.models import Job, LLMCall
from jobs.services import call_credits
from jobs.tests.sse_client import StreamReply, stream_post
from ratelimits.models import CallSlot
from saasllm.test_servers import ASGIServerThread
from teams.models import Team

pytestmark = pytest.mark.django_db(transaction=True)

ANTHROPIC_KEY = "sk-ant-fake-key-654321"
# Strings of the provider side that no response to a team may contain.
PROVIDER_SIDE_STRINGS = [
    "openai_compatible",
    "anthropic",
    "claude-fake",
    "stream-reset-after",
    "stream-5x",
    "slow-",
    "sk-provider-secret-abcdef123456",
    ANTHROPIC_KEY,
    "upstream-secret-text",
    "chatcmpl-fake",
    "msg_fake",
]
UNREACHABLE_EVENT = {
    "error": {
        "code": "provider_unreachable",
        "message": "The model provider could not be reached. Retry later.",
        "type": "api_error",
    }
}
# The first litellm call of a process imports litellm, which takes seconds.
LITELLM_TIMEOUT_SECONDS = 120


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
def tokens_team(team_factory):
    """A team charged by tokens, allowed one provider call at a time."""
    owner = team_factory(
        "tokens", credits=1000, budget_mode="consumption_tokens", tokens_per_credit=2
    )
    Team.objects.filter(pk=owner.id).update(max_concurrent_calls=1)
    return owner


@pytest.fixture
def add_alias(access_group):
    """Add an alias of the team's access group that serves ``provider_model``."""

    def add(provider_model, name="chat-faulty", provider="openai_compatible", **extra):
        alias = ModelAlias.objects.create(
            alias=name,
            provider=provider,
            provider_model=provider_model,
            input_price_per_million="1",
            output_price_per_million="2",
            **{"max_retries": 0, **extra},
        )
        access_group.aliases.add(alias)
        return alias

    return add


@pytest.fixture
def anthropic_alias(organization, add_alias, fake_provider):
    """Add alias ``chat-claude`` on the fake Anthropic API, served through litellm."""

    def add(provider_model):
        ProviderCredential.objects.create(
            organization=organization,
            provider="anthropic",
            name="fake anthropic",
            encrypted_api_key=encrypt_secret(ANTHROPIC_KEY),
            api_base=fake_provider.anthropic_base_url,
        )
        return add_alias(provider_model, name="chat-claude", provider="anthropic")

    return add


def call_body(model="chat-faulty", **extra):
    return {"model": model, "messages": [{"role": "user", "content": "go on"}], **extra}


def post(server, path, body, key, **headers):
    return httpx.post(
        server + path,
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


def create_job(server, owner) -> str:
    response = post(server, "/api/jobs/create", {"job_type": "faults"}, owner.key)
    assert response.status_code == 201, response.text
    return response.json()["job_id"]


def assert_broken_after(reply: StreamReply, chunk_count: int, error: dict) -> None:
    """Assert ``chunk_count`` chunks, then one error event as the stream's end."""
    assert reply.status == 200
    assert len(reply.content_events) == chunk_count
    assert reply.text == " ".join(f"w{n}" for n in range(1, chunk_count + 1)) + " "
    assert reply.errors == [error]
    assert reply.events[-1].json == error
    assert not reply.done


def assert_failed_call(job_id, code: str, min_completion_tokens: int) -> LLMCall:
    """Assert the job's one call failed with ``code`` and its tokens so far, uncharged."""
    call = LLMCall.objects.get(job_id=job_id)
    assert call.streamed
    assert call.error_code == code
    assert call.completion_tokens >= min_completion_tokens
    assert call.usage_estimated
    assert call.provider_cost_usd > 0
    assert call.client_cost_usd == 0
    return call


def assert_nothing_charged_or_held(owner) -> None:
    balance = Team.objects.get(pk=owner.id)
    assert balance.credits_used == 0
    assert balance.credits_held == 0
    assert CallSlot.objects.filter(team_id=owner.id).count() == 0


# Connection reset mid-stream


def read_until_broken(fake_provider, model: str, stream: bool) -> tuple[bytes, str]:
    """Send a raw request; return the bytes received and how the connection ended."""
    body = json.dumps({"model": model, "stream": stream, "messages": []}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Authorization: Bearer sk-fake-provider-test-key\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    received = b""
    with socket.create_connection(
        ("127.0.0.1", fake_provider.port), timeout=10
    ) as sock:
        sock.sendall(head.encode() + body)
        try:
            while data := sock.recv(65536):
                received += data
        except ConnectionResetError:
            return received, "reset"
    return received, "closed"


@pytest.mark.parametrize(
    ("model", "stream", "chunk_count", "ending"),
    [
        ("stream-reset-after-3", True, 3, "reset"),
        ("stream-reset-after-3", False, 0, "reset"),
        ("stream-fail-after-3", True, 3, "closed"),
    ],
)
def test_fake_provider_resets_connection(
    fake_provider, model, stream, chunk_count, ending
):
    received, ended_by = read_until_broken(fake_provider, model, stream)

    assert ended_by == ending
    assert received.count(b"data: ") == chunk_count
    assert b"[DONE]" not in received


def test_reset_mid_stream_keeps_job_open(server, tokens_team, add_alias):
    add_alias("stream-reset-after-10")
    add_alias("stream-3x1", name="chat-ok")
    job_id = create_job(server, tokens_team)

    reply = stream_post(
        server, f"/api/jobs/{job_id}/llm-call-stream", call_body(), tokens_team.key
    )
    after_failure = Job.objects.get(pk=job_id)
    retried = stream_post(
        server,
        f"/api/jobs/{job_id}/llm-call-stream",
        call_body(model="chat-ok"),
        tokens_team.key,
    )
    completed = post(
        server, f"/api/jobs/{job_id}/complete", {"status": "completed"}, tokens_team.key
    )

    assert_broken_after(reply, 10, UNREACHABLE_EVENT)
    failed = LLMCall.objects.get(job_id=job_id, alias="chat-faulty")
    assert failed.error_code == "provider_unreachable"
    assert failed.completion_tokens >= 10
    assert failed.usage_estimated
    assert failed.client_cost_usd == 0
    assert after_failure.status == "in_progress"
    assert after_failure.calls_in_flight == 0
    assert after_failure.accrued_credits == 0
    # The team may run one call at a time, so the next call proves that the
    # broken call gave its slot back.
    assert retried.done
    succeeded = LLMCall.objects.get(job_id=job_id, alias="chat-ok")
    job = Job.objects.get(pk=job_id)
    assert job.accrued_credits == call_credits(team=tokens_team.team, call=succeeded)
    assert completed.status_code == 200
    assert completed.json()["costs"]["failed_calls"] == 1
    balance = Team.objects.get(pk=tokens_team.id)
    assert balance.credits_used == job.credits_charged
    assert balance.credits_held == 0
    assert CallSlot.objects.filter(team_id=tokens_team.id).count() == 0


def test_reset_mid_stream_fails_single_call_job(server, tokens_team, add_alias):
    add_alias("stream-reset-after-4")

    reply = stream_post(
        server,
        "/api/jobs/create-and-call-stream",
        {**call_body(), "job_type": "faults"},
        tokens_team.key,
    )

    assert_broken_after(reply, 4, UNREACHABLE_EVENT)
    assert reply.named("job") == []
    job_id = reply.headers["x-job-id"]
    assert_failed_call(job_id, "provider_unreachable", 4)
    job = Job.objects.get(pk=job_id)
    assert job.status == "failed"
    assert job.credits_charged == 0
    assert job.calls_in_flight == 0
    assert_nothing_charged_or_held(tokens_team)


def test_v1_reset_mid_stream_fails_own_job(server, tokens_team, add_alias):
    add_alias("stream-reset-after-6")

    reply = stream_post(
        server, "/v1/chat/completions", call_body(stream=True), tokens_team.key
    )

    assert_broken_after(reply, 6, UNREACHABLE_EVENT)
    job_id = reply.headers["x-job-id"]
    assert_failed_call(job_id, "provider_unreachable", 6)
    job = Job.objects.get(pk=job_id)
    assert job.status == "failed"
    assert job.credits_charged == 0
    assert_nothing_charged_or_held(tokens_team)


def test_v1_reset_mid_stream_keeps_named_job_open(server, tokens_team, add_alias):
    add_alias("stream-reset-after-6")
    job_id = create_job(server, tokens_team)

    reply = stream_post(
        server,
        "/v1/chat/completions",
        call_body(stream=True, stream_options={"include_usage": True}),
        tokens_team.key,
        headers={"X-Job-ID": job_id},
    )

    assert_broken_after(reply, 6, UNREACHABLE_EVENT)
    # A broken stream reports no usage chunk: the error event ends it.
    assert all(chunk["choices"] for chunk in reply.chunks)
    assert_failed_call(job_id, "provider_unreachable", 6)
    job = Job.objects.get(pk=job_id)
    assert job.status == "in_progress"
    assert job.calls_in_flight == 0
    assert job.accrued_credits == 0
    assert job.credits_reserved == 0
    # The open job keeps its hold until it is completed.
    balance = Team.objects.get(pk=tokens_team.id)
    assert balance.credits_used == 0
    assert balance.credits_held == job.credits_held
    assert CallSlot.objects.filter(team_id=tokens_team.id).count() == 0


@pytest.mark.parametrize("provider_model", ["stream-reset-after-5", "stream-5x3000"])
def test_anthropic_stream_broken_mid_stream(
    server, tokens_team, anthropic_alias, provider_model
):
    anthropic_alias(provider_model)
    # Shorter than the 3 seconds between chunks of stream-5x3000, and long
    # enough for litellm's first call in the process.
    ModelAlias.objects.filter(alias="chat-claude").update(timeout_seconds=2)

    reply = stream_post(
        server,
        "/api/jobs/create-and-call-stream",
        {**call_body(model="chat-claude"), "job_type": "faults"},
        tokens_team.key,
        timeout=LITELLM_TIMEOUT_SECONDS,
    )

    code = "provider_unreachable" if "reset" in provider_model else "provider_timeout"
    assert reply.status == 200
    assert len(reply.content_events) >= 1
    assert [error["error"]["code"] for error in reply.errors] == [code]
    assert reply.events[-1].json == reply.errors[0]
    assert not reply.done
    job_id = reply.headers["x-job-id"]
    call = LLMCall.objects.get(job_id=job_id)
    assert call.error_code == code
    assert call.completion_tokens >= 1
    assert call.client_cost_usd == 0
    assert Job.objects.get(pk=job_id).status == "failed"
    assert_nothing_charged_or_held(tokens_team)


def test_v1_reset_without_stream_is_502(server, tokens_team, add_alias):
    add_alias("stream-reset-after-3")

    response = post(server, "/v1/chat/completions", call_body(), tokens_team.key)

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "provider_unreachable"
    job_id = response.headers["x-job-id"]
    call = LLMCall.objects.get(job_id=job_id)
    assert call.error_code == "provider_unreachable"
    assert call.total_tokens == 0
    assert Job.objects.get(pk=job_id).status == "failed"
    assert_nothing_charged_or_held(tokens_team)


# Timeouts


@pytest.mark.parametrize(
    "path", ["/api/jobs/create-and-call-stream", "/v1/chat/completions"]
)
def test_stream_timeout_before_first_chunk_is_504(server, tokens_team, add_alias, path):
    add_alias("slow-3", timeout_seconds=0.3)

    reply = stream_post(
        server, path, {**call_body(stream=True), "job_type": "faults"}, tokens_team.key
    )

    assert reply.status == 504
    assert reply.headers["content-type"] == "application/json"
    assert b"provider_timeout" in reply.body
    job_id = reply.headers["x-job-id"]
    call = LLMCall.objects.get(job_id=job_id)
    assert call.error_code == "provider_timeout"
    assert call.streamed
    assert 250 <= call.latency_ms < 3000
    assert Job.objects.get(pk=job_id).status == "failed"
    assert_nothing_charged_or_held(tokens_team)


def test_v1_timeout_before_first_byte_is_504(server, tokens_team, add_alias):
    add_alias("slow-3", timeout_seconds=0.3)

    response = post(server, "/v1/chat/completions", call_body(), tokens_team.key)

    assert response.status_code == 504
    assert response.json()["error"]["code"] == "provider_timeout"
    assert response.json()["error"]["type"] == "api_error"
    job_id = response.headers["x-job-id"]
    call = LLMCall.objects.get(job_id=job_id)
    assert call.error_code == "provider_timeout"
    assert not call.streamed
    assert 250 <= call.latency_ms < 3000
    assert Job.objects.get(pk=job_id).status == "failed"
    assert_nothing_charged_or_held(tokens_team)


def test_v1_stream_stalling_mid_stream_times_out(server, tokens_team, add_alias):
    add_alias("stream-5x3000", timeout_seconds=0.3)

    reply = stream_post(
        server, "/v1/chat/completions", call_body(stream=True), tokens_team.key
    )

    assert reply.status == 200
    assert len(reply.content_events) == 1
    assert [error["error"]["code"] for error in reply.errors] == ["provider_timeout"]
    assert reply.events[-1].json == reply.errors[0]
    assert not reply.done
    job_id = reply.headers["x-job-id"]
    assert_failed_call(job_id, "provider_timeout", 1)
    assert Job.objects.get(pk=job_id).status == "failed"
    assert_nothing_charged_or_held(tokens_team)
