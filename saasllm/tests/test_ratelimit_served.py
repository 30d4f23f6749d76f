"""Rate limits shared by separate processes and by the workers of one server.

Each process counts against the same Redis keys or database rows, so the
limits hold however many workers or instances serve a team.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.apps import apps
from django.db import connection

if not apps.is_installed("ratelimits"):
    pytest.skip(
        "the database backend needs 'ratelimits' in INSTALLED_APPS",
        allow_module_level=True,
    )

from catalog.models import ModelAlias
from jobs.models import Job
from ratelimits.models import CallSlot, RateLimitCounter
from saasllm.test_servers import database_url, gunicorn_gateway
from teams.models import Team

PROJECT_DIR = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"
PROCESS_COUNT = 5
ATTEMPTS_PER_PROCESS = 40
REQUEST_LIMIT = 60
SLOT_LIMIT = 7

requires_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the other processes need a database they can share with the test",
)

# Runs in each process: applies the settings it is given, prints "ready",
# waits for a line on stdin, then makes its attempts and prints how many
# were allowed.
ATTEMPTS_SCRIPT = """
import json
import sys

import django

django.setup()

from django.conf import settings

from saasllm.ratelimit import RateLimited, acquire_call_slot, check_request
from teams.models import Team

options = json.loads(sys.argv[1])
for name, value in options["settings"].items():
    setattr(settings, name, value)
team = Team(
    id=options["team_id"],
    requests_per_minute=options["limit"],
    max_concurrent_calls=options["limit"],
)
attempt = check_request if options["operation"] == "request" else acquire_call_slot
print("ready", flush=True)
sys.stdin.readline()

allowed_count = 0
for _ in range(options["attempts"]):
    try:
        attempt(team)
    except RateLimited:
        continue
    allowed_count += 1
print(allowed_count, flush=True)
"""

# Creates the schema and a team in a fresh SQLite file.
SQLITE_SETUP_SCRIPT = """
import sys

import django

django.setup()

from django.core.management import call_command

from teams.services import create_organization, create_team

call_command("migrate", verbosity=0)
organization = create_organization(organization_id="acme", name="Acme Inc.")
create_team(organization=organization, team_id=sys.argv[1])
"""


def wait_for_fresh_window(min_seconds_left: float = 5) -> None:
    """Sleep into the next minute unless ``min_seconds_left`` remain in this one.

    The attempts must fall into one fixed window for the totals to be exact.
    """
    seconds_left = 60 - time.time() % 60
    if seconds_left < min_seconds_left:
        time.sleep(seconds_left + 0.1)


def run_attempts(*, operation, team_id, limit, env, limiter_settings) -> list[int]:
    """Start the processes, release them together and return their allowed counts."""
    options = {
        "operation": operation,
        "team_id": team_id,
        "limit": limit,
        "attempts": ATTEMPTS_PER_PROCESS,
        "settings": limiter_settings,
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", ATTEMPTS_SCRIPT, json.dumps(options)],
            cwd=PROJECT_DIR,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESS_COUNT)
    ]
    try:
        for process in processes:
            if process.stdout.readline().strip() != "ready":
                process.kill()
                pytest.fail("attempt process failed: " + process.stderr.read()[-2000:])
        wait_for_fresh_window()
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-2000:]
    return [int(stdout.strip()) for stdout, _ in outputs]


@pytest.fixture
def redis_prefix():
    prefix = f"test-ratelimit-{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def redis_settings(prefix: str) -> dict:
    return {"REDIS_URL": REDIS_URL, "RATE_LIMIT_KEY_PREFIX": prefix}


@pytest.fixture
def sqlite_file(tmp_path):
    """A migrated SQLite database file with team ``acme-shared``."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'ratelimit.sqlite3'}"}
    subprocess.run(
        [sys.executable, "-c", SQLITE_SETUP_SCRIPT, "acme-shared"],
        cwd=PROJECT_DIR,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return env


# Separate processes


def test_request_limit_across_processes_redis(redis_prefix):
    allowed = run_attempts(
        operation="request",
        team_id="acme-shared",
        limit=REQUEST_LIMIT,
        env={},
        limiter_settings=redis_settings(redis_prefix),
    )

    client = redis.Redis.from_url(REDIS_URL)
    [counter_key] = client.keys(redis_prefix + "acme-shared:requests:*")
    assert sum(allowed) == REQUEST_LIMIT
    assert client.get(counter_key) == str(REQUEST_LIMIT).encode()
    client.close()


def test_slot_limit_across_processes_redis(redis_prefix):
    allowed = run_attempts(
        operation="slot",
        team_id="acme-shared",
        limit=SLOT_LIMIT,
        env={},
        limiter_settings=redis_settings(redis_prefix),
    )

    client = redis.Redis.from_url(REDIS_URL)
    assert sum(allowed) == SLOT_LIMIT
    assert client.zcard(redis_prefix + "acme-shared:slots") == SLOT_LIMIT
    client.close()


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_request_limit_across_processes_postgresql(organization):
    Team.objects.create(id="acme-shared", organization=organization, name="Shared")

    allowed = run_attempts(
        operation="request",
        team_id="acme-shared",
        limit=REQUEST_LIMIT,
        env={"DATABASE_URL": database_url()},
        limiter_settings={"REDIS_URL": ""},
    )

    assert sum(allowed) == REQUEST_LIMIT
    assert list(RateLimitCounter.objects.values_list("kind", "used_count")) == [
        ("requests", REQUEST_LIMIT)
    ]


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_slot_limit_across_processes_postgresql(organization):
    Team.objects.create(id="acme-shared", organization=organization, name="Shared")

    allowed = run_attempts(
        operation="slot",
        team_id="acme-shared",
        limit=SLOT_LIMIT,
        env={"DATABASE_URL": database_url()},
        limiter_settings={"REDIS_URL": ""},
    )

    assert sum(allowed) == SLOT_LIMIT
    assert CallSlot.objects.filter(team_id="acme-shared").count() == SLOT_LIMIT


def test_request_limit_across_processes_sqlite(sqlite_file):
    allowed = run_attempts(
        operation="request",
        team_id="acme-shared",
        limit=REQUEST_LIMIT,
        env=sqlite_file,
        limiter_settings={"REDIS_URL": ""},
    )

    assert sum(allowed) == REQUEST_LIMIT


def test_slot_limit_across_processes_sqlite(sqlite_file):
    allowed = run_attempts(
        operation="slot",
        team_id="acme-shared",
        limit=SLOT_LIMIT,
        env=sqlite_file,
        limiter_settings={"REDIS_URL": ""},
    )

    assert sum(allowed) == SLOT_LIMIT


# A served gateway with five workers


def send(base_url, method, path, key, body=None):
    """Return the status, the headers and the JSON body of one request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base_url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


@dataclass(frozen=True)
class Gateway:
    base_url: str
    redis_prefix: str | None

    def held_slot_count(self, team_id: str) -> int:
        if self.redis_prefix is None:
            return CallSlot.objects.filter(team_id=team_id).count()
        client = redis.Redis.from_url(REDIS_URL)
        count = client.zcard(f"{self.redis_prefix}{team_id}:slots")
        client.close()
        return count


@pytest.fixture(params=["database", "redis"])
def gateway(request, team):
    """Serve the gateway with five gunicorn workers against the test database."""
    prefix = None
    env = {"WEB_CONCURRENCY": "5", "DATABASE_POOL_MAX_SIZE": "4", "REDIS_URL": ""}
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        env["REDIS_URL"] = REDIS_URL
        env["RATE_LIMIT_KEY_PREFIX"] = prefix

    with gunicorn_gateway(**env) as base_url:
        yield Gateway(base_url=base_url, redis_prefix=prefix)


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_served_request_limit_across_workers(gateway, team):
    Team.objects.filter(pk=team.id).update(requests_per_minute=REQUEST_LIMIT)
    path = f"/api/credits/teams/{team.id}/balance"
    wait_for_fresh_window(min_seconds_left=20)

    with ThreadPoolExecutor(max_workers=20) as executor:
        replies = list(
            executor.map(
                lambda _: send(gateway.base_url, "GET", path, team.key), range(200)
            )
        )

    allowed = [reply for reply in replies if reply[0] == 200]
    rejected = [reply for reply in replies if reply[0] == 429]
    assert len(allowed) == REQUEST_LIMIT
    assert len(rejected) == 200 - REQUEST_LIMIT
    assert {headers["X-RateLimit-Limit"] for _, headers, _ in allowed} == {"60"}
    assert sorted(
        int(headers["X-RateLimit-Remaining"]) for _, headers, _ in allowed
    ) == list(range(REQUEST_LIMIT))
    _, headers, body = rejected[0]
    assert body["code"] == "rate_limit_exceeded"
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == headers["Retry-After"]


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_served_concurrency_limit_across_workers(gateway, team, access_group):
    slow = ModelAlias.objects.create(
        alias="chat-slow", provider="openai_compatible", provider_model="slow-2"
    )
    access_group.aliases.add(slow)
    Team.objects.filter(pk=team.id).update(max_concurrent_calls=2)
    body = {
        "job_type": "served",
        "model": "chat-slow",
        "messages": [{"role": "user", "content": "wait"}],
    }
    start = threading.Barrier(6)

    def create_and_call(_):
        start.wait()
        return send(
            gateway.base_url, "POST", "/api/jobs/create-and-call", team.key, body
        )

    with ThreadPoolExecutor(max_workers=6) as executor:
        replies = list(executor.map(create_and_call, range(6)))
    after = send(gateway.base_url, "POST", "/api/jobs/create-and-call", team.key, body)

    statuses = sorted(status for status, _, _ in replies)
    assert statuses == [200, 200, 429, 429, 429, 429]
    codes = {reply[2].get("code") for reply in replies if reply[0] == 429}
    assert codes == {"concurrency_limit_exceeded"}
    assert after[0] == 200
    assert Job.objects.filter(team_id=team.id).count() == 3
    assert gateway.held_slot_count(team.id) == 0
