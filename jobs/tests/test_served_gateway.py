"""A whole job through a real gunicorn + uvicorn server on PostgreSQL."""

import json
import threading
import time
import urllib.error
import urllib.request
from itertools import pairwise

import pytest
from django.db import connection

from catalog.models import ModelAlias
from jobs.models import LLMCall
from jobs.tests.sse_client import stream_post
from saasllm.test_servers import gunicorn_gateway

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the server process needs a database it can share with the test",
    ),
    pytest.mark.django_db(transaction=True),
]


def request(base_url, method, path, key, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base_url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def gateway(team):
    """Serve the gateway with gunicorn against the test database."""
    with gunicorn_gateway() as base_url:
        yield base_url


def gateway_connections() -> list[tuple[str, str]]:
    """State and last query of the gateway's connections to the test database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT state, query FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchall()


def test_job_end_to_end_over_http(gateway, team):
    status, created = request(
        gateway, "POST", "/api/jobs/create", team.key, {"job_type": "e2e"}
    )
    job_id = created["job_id"]
    replies = [
        request(
            gateway,
            "POST",
            f"/api/jobs/{job_id}/llm-call",
            team.key,
            {
                "model": "chat-fast",
                "messages": [{"role": "user", "content": f"call {n}"}],
            },
        )
        for n in range(3)
    ]
    completed_status, completed = request(
        gateway,
        "POST",
        f"/api/jobs/{job_id}/complete",
        team.key,
        {"status": "completed"},
    )

    assert status == 201
    assert [code for code, _ in replies] == [200, 200, 200]
    assert replies[2][1]["response"]["content"] == "Echo: call 2"
    assert completed_status == 200
    assert completed["costs"]["total_calls"] == 3
    assert completed["costs"]["credits_charged"] == 1
    assert completed["costs"]["credits_remaining"] == 9


def test_no_transaction_open_during_provider_call(gateway, team, access_group):
    slow = ModelAlias.objects.create(
        alias="chat-slow", provider="openai_compatible", provider_model="slow-2"
    )
    access_group.aliases.add(slow)
    _, created = request(
        gateway, "POST", "/api/jobs/create", team.key, {"job_type": "e2e"}
    )
    result = {}

    def slow_call():
        result["reply"] = request(
            gateway,
            "POST",
            f"/api/jobs/{created['job_id']}/llm-call",
            team.key,
            {"model": "chat-slow", "messages": [{"role": "user", "content": "wait"}]},
        )

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(1.0)
    during = gateway_connections()
    caller.join(timeout=30)

    assert result["reply"][0] == 200
    assert not [state for state, _ in during if state and "transaction" in state], (
        during
    )
    assert not [state for state, _ in during if state == "active"], during


def test_stream_through_gunicorn_keeps_provider_pace(gateway, team, access_group):
    storyteller = ModelAlias.objects.create(
        alias="chat-story", provider="openai_compatible", provider_model="stream-50x20"
    )
    access_group.aliases.add(storyteller)

    reply = stream_post(
        gateway,
        "/api/jobs/create-and-call-stream",
        {
            "job_type": "story",
            "model": "chat-story",
            "messages": [{"role": "user", "content": "Tell me a story"}],
            "stream_options": {"include_usage": True},
        },
        team.key,
    )

    assert reply.status == 200
    assert len(reply.content_events) == 50
    assert reply.done
    # The provider sends a chunk every 20 ms, 980 ms from first to last. A
    # relay that buffers delivers them in one burst; one that streams keeps
    # the spacing of most of them.
    arrivals = [event.arrived for event in reply.content_events]
    gaps = [later - earlier for earlier, later in pairwise(arrivals)]
    assert arrivals[-1] - arrivals[0] > 0.5
    assert sum(gap > 0.01 for gap in gaps) >= 25
    assert reply.named("job")[0]["status"] == "completed"
    call = LLMCall.objects.get(job_id=reply.headers["x-job-id"])
    assert call.completion_tokens == 50
    assert not call.usage_estimated
