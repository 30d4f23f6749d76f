"""Redis going down and coming back while a gunicorn gateway serves calls.

Each test starts its own redis-server on a free loopback port, points a
served gateway at it, then stops (or pauses) and restarts it on the same
port. ``RATE_LIMIT_FAILURE_MODE`` decides what teams with limits get while
Redis is gone: 503 ``rate_limiter_unavailable`` (closed) or unlimited calls
and a warning in the server's log (open). Once Redis is back, every worker
must count again without a restart.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from django.db import connection

from catalog.models import ModelAlias
from jobs.models import Job, LLMCall
from jobs.tests.sse_client import stream_post
from saasllm.test_servers import free_port, gunicorn_process
from teams.models import Team

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the server process needs a database it can share with the test",
    ),
    pytest.mark.django_db(transaction=True),
]

REDIS_PASSWORD = "redis-outage-test-password-8d41"
KEY_PREFIX = "saasllm:ratelimit:"
REDIS_START_TIMEOUT_SECONDS = 10
# A call must get its response within this many seconds while Redis is
# down, rejected or not. The limiter gives up on a Redis command after 0.5
# seconds.
MAX_DOWN_SECONDS = 5
UNAVAILABLE_CODE = "rate_limiter_unavailable"
PROVIDER_SECRET = "sk-provider-secret-abcdef123456"


class RedisServer:
    """A redis-server of this test alone, on 127.0.0.1, without persistence."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{REDIS_PASSWORD}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def start(self) -> None:
        """Start serving on ``port``, empty, and return once it replies to PING."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--requirepass",
                REDIS_PASSWORD,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + REDIS_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "redis-server exited at start"
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Stop the server and return once its port refuses connections."""
        self.process.terminate()
        self.process.wait(timeout=REDIS_START_TIMEOUT_SECONDS)
        with pytest.raises(ConnectionRefusedError), socket.socket() as sock:
            sock.connect(("127.0.0.1", self.port))

    def pause(self) -> None:
        """Freeze the server: connections stay open, but no command gets a reply."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def counter(self, team_id: str, kind: str) -> int | None:
        """Return the team's count of ``kind`` in this minute's window, if any."""
        window_start = int(time.time() // 60) * 60
        with self.client() as client:
            value = client.get(f"{KEY_PREFIX}{team_id}:{kind}:{window_start}")
        return None if value is None else int(value)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@dataclass
class Gateway:
    base_url: str
    process: subprocess.Popen

    def log(self) -> str:
        """Return what the server wrote to its log so far.

        gunicorn_process logs to an unnamed temporary file, which stays
        readable through the master's stderr descriptor while it runs.
        """
        return Path(f"/proc/{self.process.pid}/fd/2").read_text(errors="replace")

    def limiter_warnings(self) -> list[str]:
        """Return the messages the rate limiter logged at WARNING."""
        messages = []
        for line in self.log().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if (
                record.get("logger") == "saasllm.ratelimit.limits"
                and record.get("level") == "WARNING"
            ):
                messages.append(record["message"])
        return messages


@contextmanager
def served_gateway(redis_server: RedisServer, failure_mode: str):
    """Serve the gateway with two workers, counting in ``redis_server``."""
    with gunicorn_process(
        WEB_CONCURRENCY="2",
        REDIS_URL=redis_server.url,
        RATE_LIMIT_FAILURE_MODE=failure_mode,
        LOG_FORMAT="json",
    ) as (base_url, process):
        yield Gateway(base_url, process)


@pytest.fixture
def slow_alias(access_group):
    alias = ModelAlias.objects.create(
        alias="chat-slow",
        provider="openai_compatible",
        provider_model="slow-1.5",
        max_retries=0,
    )
    access_group.aliases.add(alias)
    return alias


def set_limits(team, **limits) -> None:
    Team.objects.filter(pk=team.id).update(**limits)


def wait_for_fresh_window(min_seconds_left: float) -> None:
    """Sleep into the next minute unless ``min_seconds_left`` remain in this one.

    Request counts are exact only while the requests fall into one window.
    """
    seconds_left = 60 - time.time() % 60
    if seconds_left < min_seconds_left:
        time.sleep(seconds_left + 0.1)


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: dict
    seconds: float

    @property
    def code(self) -> str | None:
        """The error code, in the job API's shape or OpenAI's."""
        if "error" in self.body:
            return self.body["error"].get("code")
        return self.body.get("code")


def send(base_url: str, path: str, key: str, body: dict, **headers) -> Reply:
    started = time.monotonic()
    response = httpx.post(
        base_url + path,
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )
    return Reply(
        status=response.status_code,
        headers=response.headers,
        body=response.json(),
        seconds=time.monotonic() - started,
    )


def readiness(gateway: Gateway) -> tuple[int, str]:
    """Return the status of /readyz and the state of its Redis check."""
    response = httpx.get(gateway.base_url + "/readyz", timeout=30)
    return response.status_code, response.json()["checks"]["redis"]


def call_body(model="chat-fast", **extra) -> dict:
    return {
        "job_type": "outage",
        "model": model,
        "messages": [{"role": "user", "content": "count me"}],
        **extra,
    }


def create_and_call(gateway: Gateway, team, model="chat-fast") -> Reply:
    return send(
        gateway.base_url, "/api/jobs/create-and-call", team.key, call_body(model)
    )


def chat_completion(gateway: Gateway, team, **headers) -> Reply:
    return send(
        gateway.base_url, "/v1/chat/completions", team.key, call_body(), **headers
    )


def assert_no_secrets(text: str, team) -> None:
    for secret in (REDIS_PASSWORD, team.key, os.environ["MASTER_KEY"], PROVIDER_SECRET):
        assert secret not in text


def test_closed_mode_rejects_while_down(redis_server, team):
    set_limits(
        team, requests_per_minute=4, tokens_per_minute=100_000, max_concurrent_calls=2
    )

    with served_gateway(redis_server, "closed") as gateway:
        before = create_and_call(gateway, team)
        job_id = send(
            gateway.base_url, "/api/jobs/create", team.key, {"job_type": "open"}
        ).body["job_id"]
        jobs_before = Job.objects.count()
        held_before = Team.objects.get(pk=team.id).credits_held

        redis_server.stop()
        down = {
            "create-and-call": create_and_call(gateway, team),
            "llm-call": send(
                gateway.base_url,
                f"/api/jobs/{job_id}/llm-call",
                team.key,
                call_body(),
            ),
            "v1": chat_completion(gateway, team),
            "v1 in job": chat_completion(gateway, team, **{"X-Job-ID": job_id}),
        }
        streamed = stream_post(
            gateway.base_url,
            "/api/jobs/create-and-call-stream",
            call_body(),
            team.key,
        )
        v1_streamed = stream_post(
            gateway.base_url, "/v1/chat/completions", call_body(stream=True), team.key
        )
        balance_while_down = Team.objects.get(pk=team.id)
        jobs_while_down = Job.objects.count()
        job_while_down = Job.objects.get(pk=job_id)
        ready_while_down = readiness(gateway)
        warnings = gateway.limiter_warnings()

        redis_server.start()
        wait_for_fresh_window(min_seconds_left=20)
        after = [create_and_call(gateway, team) for _ in range(4)]
        over_limit = create_and_call(gateway, team)
        ready_after = readiness(gateway)
        log = gateway.log()

    assert before.status == 200
    assert before.headers["X-RateLimit-Limit"] == "4"
    for name, reply in down.items():
        assert reply.status == 503, name
        assert reply.code == UNAVAILABLE_CODE, name
        assert reply.seconds < MAX_DOWN_SECONDS, name
    assert down["v1"].body["error"]["type"] == "api_error"
    assert streamed.status == 503
    assert json.loads(streamed.body)["code"] == UNAVAILABLE_CODE
    assert v1_streamed.status == 503
    assert json.loads(v1_streamed.body)["error"]["code"] == UNAVAILABLE_CODE
    # Nothing was admitted: no job, no call, no hold.
    assert jobs_while_down == jobs_before
    assert job_while_down.call_count == 0
    assert job_while_down.calls_in_flight == 0
    assert balance_while_down.credits_held == held_before
    assert ready_while_down == (503, "unreachable")
    assert ready_after == (200, "ok")
    assert warnings
    assert all(
        message.startswith(
            "Rate limiter unavailable, rejecting team requests with 503: "
        )
        for message in warnings
    )
    assert [reply.status for reply in after] == [200, 200, 200, 200]
    assert [reply.headers["X-RateLimit-Remaining"] for reply in after] == [
        "3",
        "2",
        "1",
        "0",
    ]
    assert over_limit.status == 429
    assert over_limit.code == "rate_limit_exceeded"
    assert 1 <= int(over_limit.headers["Retry-After"]) <= 60
    assert redis_server.counter(team.id, "requests") == 4
    assert redis_server.counter(team.id, "tokens") == sum(
        reply.body["costs"]["total_tokens"] for reply in after
    )
    assert_no_secrets(log, team)


def test_open_mode_allows_while_down(redis_server, team_factory, slow_alias):
    team = team_factory("acme-outage", credits=100)
    set_limits(team, requests_per_minute=4, max_concurrent_calls=1)

    with served_gateway(redis_server, "open") as gateway:
        redis_server.stop()
        sequential = [create_and_call(gateway, team) for _ in range(5)]
        sequential.append(chat_completion(gateway, team))
        with ThreadPoolExecutor(max_workers=2) as executor:
            concurrent = list(
                executor.map(
                    lambda _: create_and_call(gateway, team, "chat-slow"), range(2)
                )
            )
        ready_while_down = readiness(gateway)
        warnings = gateway.limiter_warnings()

        redis_server.start()
        wait_for_fresh_window(min_seconds_left=20)
        barrier = threading.Barrier(2)

        def racing_call(_):
            barrier.wait()
            return create_and_call(gateway, team, "chat-slow")

        with ThreadPoolExecutor(max_workers=2) as executor:
            racing = list(executor.map(racing_call, range(2)))
        after = [create_and_call(gateway, team) for _ in range(2)]
        over_limit = create_and_call(gateway, team)
        log = gateway.log()

    # Above every limit, and yet each call went through without delay.
    assert [reply.status for reply in sequential] == [200] * 6
    assert all(reply.seconds < MAX_DOWN_SECONDS for reply in sequential)
    assert all("X-RateLimit-Limit" not in reply.headers for reply in sequential)
    assert [reply.status for reply in concurrent] == [200, 200]
    # The instance stays in rotation, because it still serves calls.
    assert ready_while_down == (200, "unreachable")
    assert warnings
    assert warnings[0].startswith(
        "Rate limiter unavailable, letting team requests through unlimited "
        "(RATE_LIMIT_FAILURE_MODE is open): "
    )
    assert_no_secrets(log, team)
    # Once Redis is back, the team again gets one slot and 4 requests a minute.
    assert sorted(reply.status for reply in racing) == [200, 429]
    assert {reply.code for reply in racing if reply.status == 429} == {
        "concurrency_limit_exceeded"
    }
    assert [reply.status for reply in after] == [200, 200]
    assert after[-1].headers["X-RateLimit-Remaining"] == "0"
    assert over_limit.status == 429
    assert over_limit.code == "rate_limit_exceeded"
    with redis_server.client() as client:
        assert client.zcard(f"{KEY_PREFIX}{team.id}:slots") == 0
    balance = Team.objects.get(pk=team.id)
    assert balance.credits_held == 0
    assert balance.credits_used == 6 + 2 + 1 + 2


@pytest.mark.parametrize("failure_mode", ["closed", "open"])
def test_redis_lost_mid_call_records_it(redis_server, team, slow_alias, failure_mode):
    set_limits(team, tokens_per_minute=100_000, max_concurrent_calls=1)

    with served_gateway(redis_server, failure_mode) as gateway:
        with ThreadPoolExecutor(max_workers=1) as executor:
            in_flight = executor.submit(create_and_call, gateway, team, "chat-slow")
            deadline = time.monotonic() + 20
            with redis_server.client() as client:
                while not client.zcard(f"{KEY_PREFIX}{team.id}:slots"):
                    assert time.monotonic() < deadline, "the call took no slot"
                    time.sleep(0.02)
            redis_server.stop()
            reply = in_flight.result(timeout=30)
        redis_server.start()
        after = create_and_call(gateway, team)
        warnings = gateway.limiter_warnings()

    # The call had started, so it ends as usual and is charged.
    assert reply.status == 200
    assert reply.body["status"] == "completed"
    assert LLMCall.objects.get(job_id=reply.body["job_id"]).error_code == ""
    # Each worker logs one limiter warning a minute, so only the first of
    # the two (tokens not counted, slot left to expire) shows.
    assert warnings
    assert all(w.startswith("Rate limiter unavailable, ") for w in warnings)
    # The restarted Redis has no slot of the lost one, so the team may call.
    assert after.status == 200
    balance = Team.objects.get(pk=team.id)
    assert balance.credits_held == 0
    assert balance.credits_used == 2


def test_restart_replaces_pooled_connections(redis_server, team):
    set_limits(team, requests_per_minute=1000, max_concurrent_calls=5)

    with served_gateway(redis_server, "closed") as gateway:
        # Enough calls that both workers hold pooled connections.
        before = [create_and_call(gateway, team) for _ in range(4)]
        redis_server.stop()
        redis_server.start()
        after = [create_and_call(gateway, team) for _ in range(4)]

    assert [reply.status for reply in before] == [200] * 4
    # Each worker's pooled connections died with the old server, so they
    # must be replaced on first use instead of failing the calls with 503.
    assert [reply.status for reply in after] == [200] * 4


@pytest.mark.parametrize(("failure_mode", "status"), [("closed", 503), ("open", 200)])
def test_paused_redis_times_out(redis_server, team, failure_mode, status):
    set_limits(
        team,
        requests_per_minute=1000,
        tokens_per_minute=100_000,
        max_concurrent_calls=5,
    )

    with served_gateway(redis_server, failure_mode) as gateway:
        before = create_and_call(gateway, team)
        redis_server.pause()
        paused = [create_and_call(gateway, team) for _ in range(3)]
        redis_server.resume()
        wait_for_fresh_window(min_seconds_left=20)
        after = []
        for _ in range(4):
            reply = create_and_call(gateway, team)
            after.append((reply, redis_server.counter(team.id, "requests")))

    assert before.status == 200
    for reply in paused:
        assert reply.status == status
        assert reply.seconds < MAX_DOWN_SECONDS
    if status == 503:
        assert {reply.code for reply in paused} == {UNAVAILABLE_CODE}
    # Redis may still run the commands that timed out once it resumes, but
    # their replies must never be read as replies to later commands, so each
    # call's headers match the counter it left behind.
    for reply, counted in after:
        assert reply.status == 200
        assert reply.headers["X-RateLimit-Remaining"] == str(1000 - counted)
    counts = [counted for _, counted in after]
    assert counts == list(range(counts[0], counts[0] + 4))
