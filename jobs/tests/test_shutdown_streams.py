"""SIGTERM to a real gunicorn server while streams of both APIs are relayed.

Each stream has sent its first chunk when the signal arrives. Streams that
end within the grace period finish with ``[DONE]`` and are charged. The
others end with one ``gateway_shutdown`` error event, are recorded as failed
with the usage streamed so far, and charge nothing. Then the server exits.
"""

import signal
import threading
import time

import httpx
import pytest
from django.db import connection

from catalog.models import ModelAlias
from jobs.models import Job, LLMCall
from jobs.tests.sse_client import stream_post
from ratelimits.models import CallSlot
from saasllm.test_servers import gunicorn_process
from teams.models import Team

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the server process needs a database it can share with the test",
    ),
    pytest.mark.django_db(transaction=True),
]

GRACE_SECONDS = 3
# gunicorn.conf.py gives workers the grace period plus DATABASE_RETRY_SECONDS
# plus 5 seconds to exit, and uvicorn cancels what is left 2 seconds before
# that, so the calls cancelled at the end of the grace period get
# DATABASE_RETRY_SECONDS + 3 seconds to be recorded.
DATABASE_RETRY_SECONDS = 10
GRACEFUL_TIMEOUT_SECONDS = GRACE_SECONDS + DATABASE_RETRY_SECONDS + 5
# Streams of 1.5 seconds finish within the grace period; streams of 10
# seconds do not.
SHORT_MODEL = "stream-15x100"
LONG_MODEL = "stream-100x100"
SHUTDOWN_EVENT = {
    "error": {
        "code": "gateway_shutdown",
        "message": (
            "The gateway instance stopped before the provider finished. Retry the "
            "call; another instance will serve it."
        ),
        "type": "api_error",
    }
}


@pytest.fixture
def tokens_team(team_factory, access_group):
    """A team charged by tokens, with aliases for short and long streams."""
    for name, provider_model in [
        ("chat-short", SHORT_MODEL),
        ("chat-long", LONG_MODEL),
    ]:
        access_group.aliases.add(
            ModelAlias.objects.create(
                alias=name,
                provider="openai_compatible",
                provider_model=provider_model,
                input_price_per_million="1",
                output_price_per_million="2",
                max_retries=0,
            )
        )
    owner = team_factory(
        "tokens", credits=1000, budget_mode="consumption_tokens", tokens_per_credit=2
    )
    Team.objects.filter(pk=owner.id).update(max_concurrent_calls=10)
    return owner


def body(alias: str) -> dict:
    return {
        "model": alias,
        "messages": [{"role": "user", "content": "keep going"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        # Keeps each call's credit reservation within the team's credits.
        "max_tokens": 200,
    }


def wait_for_provider_requests(fake_provider, since: int, threads, replies) -> None:
    """Wait until the provider has started a stream for each thread."""
    deadline = time.monotonic() + 30
    while len(fake_provider.requests) - since < len(threads):
        ended = not any(thread.is_alive() for thread in threads)
        assert not ended, f"a stream failed to start: {replies}"
        assert time.monotonic() < deadline, "the streams did not reach the provider"
        time.sleep(0.02)


def test_sigterm_during_both_api_streams(tokens_team, fake_provider):
    replies = {}
    ended_at = {}

    def stream(name, path, alias, headers=None):
        replies[name] = stream_post(
            base_url, path, body(alias), tokens_team.key, headers=headers
        )
        ended_at[name] = time.monotonic()

    with gunicorn_process(
        SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
        DATABASE_RETRY_SECONDS=str(DATABASE_RETRY_SECONDS),
    ) as (
        base_url,
        process,
    ):
        open_job_id = httpx.post(
            base_url + "/api/jobs/create",
            json={"job_type": "shutdown"},
            headers={"Authorization": f"Bearer {tokens_team.key}"},
        ).json()["job_id"]
        streams = {
            "v1 short": ("/v1/chat/completions", "chat-short", None),
            "v1 long": ("/v1/chat/completions", "chat-long", None),
            "job long": (
                f"/api/jobs/{open_job_id}/llm-call-stream",
                "chat-long",
                None,
            ),
        }
        since = len(fake_provider.requests)
        threads = [
            threading.Thread(target=stream, args=(name, *arguments))
            for name, arguments in streams.items()
        ]
        for thread in threads:
            thread.start()
        wait_for_provider_requests(fake_provider, since, threads, replies)
        # The provider sends each first chunk at once; let it reach the client.
        time.sleep(0.2)
        signalled_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        # New connections are refused while the streams finish.
        time.sleep(0.5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(base_url + "/healthz", timeout=5)
        for thread in threads:
            thread.join(timeout=30)
        exit_code = process.wait(timeout=30)
        exited_at = time.monotonic()

    assert exit_code == 0
    assert exited_at - signalled_at < GRACEFUL_TIMEOUT_SECONDS
    short = replies["v1 short"]
    assert short.done
    assert len(short.content_events) == 15
    assert short.chunks[-1]["usage"]["completion_tokens"] == 15
    assert ended_at["v1 short"] - signalled_at < GRACE_SECONDS
    for name in ("v1 long", "job long"):
        reply = replies[name]
        assert reply.status == 200, name
        assert 0 < len(reply.content_events) < 100, name
        assert reply.errors == [SHUTDOWN_EVENT], name
        assert reply.events[-1].json == SHUTDOWN_EVENT, name
        assert not reply.done, name
        assert ended_at[name] - signalled_at >= GRACE_SECONDS - 0.5, name

    short_job = Job.objects.get(pk=short.headers["x-job-id"])
    short_call = short_job.calls.get()
    assert short_job.status == "completed"
    assert short_call.error_code == ""
    assert short_job.credits_charged > 0
    long_job = Job.objects.get(pk=replies["v1 long"].headers["x-job-id"])
    assert long_job.status == "failed"
    assert long_job.credits_charged == 0
    failed_calls = LLMCall.objects.filter(alias="chat-long")
    assert failed_calls.count() == 2
    for call in failed_calls:
        assert call.error_code == "gateway_shutdown"
        assert call.completion_tokens > 0
        assert call.usage_estimated
        assert call.client_cost_usd == 0
    open_job = Job.objects.get(pk=open_job_id)
    assert open_job.status == "in_progress"
    assert open_job.calls_in_flight == 0
    assert open_job.accrued_credits == 0
    assert not Job.objects.filter(calls_in_flight__gt=0).exists()
    assert CallSlot.objects.filter(team_id=tokens_team.id).count() == 0
    balance = Team.objects.get(pk=tokens_team.id)
    assert balance.credits_used == short_job.credits_charged
    assert balance.credits_held == open_job.credits_held
