"""SIGTERM while calls are in flight, through a real gunicorn server."""

import signal
import threading
import time

import httpx
import pytest
from django.db import connection

from catalog.models import ModelAlias
from jobs.models import Job, LLMCall
from jobs.tests.sse_client import stream_post
from saasllm.test_servers import gunicorn_process
from teams.models import Team

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the server process needs a database it can share with the test",
    ),
    pytest.mark.django_db(transaction=True),
]


def test_sigterm_during_calls(team, access_group):
    for name, provider_model in [
        ("chat-short", "stream-20x20"),
        ("chat-long", "stream-100x100"),
        ("chat-slow", "slow-10"),
    ]:
        access_group.aliases.add(
            ModelAlias.objects.create(
                alias=name,
                provider="openai_compatible",
                provider_model=provider_model,
                max_retries=0,
            )
        )
    replies = {}

    def stream(alias):
        replies[alias] = stream_post(
            base_url,
            "/api/jobs/create-and-call-stream",
            {
                "job_type": "shutdown",
                "model": alias,
                "messages": [{"role": "user", "content": "go"}],
            },
            team.key,
        )

    def call(alias):
        replies[alias] = httpx.post(
            base_url + "/api/jobs/create-and-call",
            json={
                "job_type": "shutdown",
                "model": alias,
                "messages": [{"role": "user", "content": "go"}],
            },
            headers={"Authorization": f"Bearer {team.key}"},
            timeout=30,
        )

    with gunicorn_process(SHUTDOWN_GRACE_SECONDS="2") as (base_url, process):
        threads = [
            threading.Thread(target=stream, args=("chat-long",)),
            threading.Thread(target=call, args=("chat-slow",)),
            threading.Thread(target=stream, args=("chat-short",)),
        ]
        for thread in threads:
            thread.start()
        # Every call is in flight once its job exists.
        deadline = time.monotonic() + 20
        while Job.objects.count() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=30)
        exit_code = process.wait(timeout=30)

    assert exit_code == 0
    short, long, slow = (
        replies["chat-short"],
        replies["chat-long"],
        replies["chat-slow"],
    )
    assert short.done
    assert short.named("job")[0]["status"] == "completed"
    assert not long.done
    assert len(long.content_events) > 0
    assert [error["error"]["code"] for error in long.errors] == ["gateway_shutdown"]
    assert slow.status_code == 503
    assert slow.json()["code"] == "gateway_shutdown"

    long_call = LLMCall.objects.get(alias="chat-long")
    assert long_call.error_code == "gateway_shutdown"
    assert long_call.completion_tokens > 0
    assert Job.objects.get(pk=long_call.job_id).status == "failed"
    slow_call = LLMCall.objects.get(alias="chat-slow")
    assert slow_call.error_code == "gateway_shutdown"
    assert Job.objects.get(pk=slow_call.job_id).status == "failed"
    assert not Job.objects.filter(calls_in_flight__gt=0).exists()
    balance = Team.objects.get(pk=team.id)
    assert balance.credits_held == 0
    assert balance.credits_used == 1
