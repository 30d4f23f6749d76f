"""A whole job through a real gunicorn + uvicorn server on PostgreSQL."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from catalog.models import ModelAlias

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the server process needs a database it can share with the test",
    ),
    pytest.mark.django_db(transaction=True),
]

PROJECT_DIR = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    settings_dict = connection.settings_dict
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:"
            f"{settings_dict['PORT']}/{settings_dict['NAME']}"
        ),
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "DATABASE_POOL_MAX_SIZE": "4",
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "saasllm.asgi:application",
        ],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base_url + "/healthz", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("gateway did not start: " + process.stderr.read().decode()[-2000:])
    yield base_url
    process.terminate()
    process.wait(timeout=30)


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
