"""Prometheus metrics: access to /metrics, and the facts the gateway counts."""

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import override_settings
from prometheus_client import REGISTRY

from conftest import MASTER_KEY
from jobs.services import create_job
from saasllm import metrics
from saasllm.observability import RequestContext, current_request
from saasllm.ratelimit import (
    RateLimited,
    RateLimiterUnavailable,
    acquire_call_slot,
    check_tokens,
)
from teams.models import Team
from teams.services import settle_job

PROJECT_DIR = Path(__file__).resolve().parents[2]


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests_counted(route: str, method: str = "GET", status: int = 200) -> float:
    return sample(
        "saasllm_http_requests_total", route=route, method=method, status=str(status)
    )


class ProviderFailure(Exception):
    code = "provider_timeout"


def test_metrics_require_admin_key(client):
    response = client.get("/metrics")

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_admin_key"
    assert response.has_header("WWW-Authenticate")


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_X_ADMIN_KEY": "sk-admin-wrong-key-0123456789"},
        {"HTTP_AUTHORIZATION": "Bearer sk-admin-wrong-key-0123456789"},
        {"HTTP_AUTHORIZATION": f"Basic {MASTER_KEY}"},
    ],
    ids=["wrong-admin-key", "wrong-bearer", "not-bearer"],
)
def test_metrics_reject_wrong_credentials(client, headers):
    response = client.get("/metrics", **headers)

    assert response.status_code == 401


def test_metrics_with_admin_key(client, admin_headers):
    response = client.get("/metrics", **admin_headers)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"saasllm_http_requests_total" in response.content
    assert b"saasllm_provider_calls_in_flight" in response.content


def test_metrics_with_bearer_admin_key(client):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {MASTER_KEY}")

    assert response.status_code == 200


@override_settings(METRICS_PUBLIC=True)
def test_public_metrics_need_no_key(client):
    response = client.get("/metrics")

    assert response.status_code == 200
    assert b"saasllm_http_requests_total" in response.content


def test_request_counted_by_route_name(client):
    before = requests_counted("healthz")
    histogram_before = sample(
        "saasllm_http_request_duration_seconds_count", route="healthz", method="GET"
    )

    client.get("/healthz")

    assert requests_counted("healthz") == before + 1
    assert (
        sample(
            "saasllm_http_request_duration_seconds_count",
            route="healthz",
            method="GET",
        )
        == histogram_before + 1
    )


def test_route_label_has_no_ids(client, team, admin_headers):
    job_id = str(uuid.uuid4())
    before = requests_counted("job-detail", status=404)

    client.get(f"/api/jobs/{job_id}", **team.headers)
    exposition = client.get("/metrics", **admin_headers).content.decode()

    assert requests_counted("job-detail", status=404) == before + 1
    assert job_id not in exposition


def test_unknown_path_counted_as_unmatched(client):
    before = requests_counted("unmatched", status=404)

    client.get(f"/no/such/{uuid.uuid4()}")

    assert requests_counted("unmatched", status=404) == before + 1


def test_request_limit_rejection_counted(client, team):
    Team.objects.filter(pk=team.id).update(requests_per_minute=0)
    before = sample("saasllm_rate_limit_rejections_total", kind="requests")

    response = client.get(f"/api/jobs/{uuid.uuid4()}", **team.headers)

    assert response.status_code == 429
    assert sample("saasllm_rate_limit_rejections_total", kind="requests") == before + 1


def test_token_and_concurrency_rejections_counted():
    team = Team(id="metrics-team", tokens_per_minute=0, max_concurrent_calls=0)
    tokens_before = sample("saasllm_rate_limit_rejections_total", kind="tokens")
    slots_before = sample("saasllm_rate_limit_rejections_total", kind="concurrency")

    with pytest.raises(RateLimited):
        check_tokens(team)
    with pytest.raises(RateLimited):
        acquire_call_slot(team)

    assert sample("saasllm_rate_limit_rejections_total", kind="tokens") == (
        tokens_before + 1
    )
    assert sample("saasllm_rate_limit_rejections_total", kind="concurrency") == (
        slots_before + 1
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unavailable_limiter_rejection_counted():
    team = Team(id="metrics-team", tokens_per_minute=10)
    before = sample("saasllm_rate_limit_rejections_total", kind="limiter_unavailable")

    with (
        override_settings(
            REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
            RATE_LIMIT_FAILURE_MODE="closed",
        ),
        pytest.raises(RateLimiterUnavailable),
    ):
        check_tokens(team)

    assert (
        sample("saasllm_rate_limit_rejections_total", kind="limiter_unavailable")
        == before + 1
    )


def test_credits_counted_when_job_completes(
    client, team, django_capture_on_commit_callbacks
):
    created = client.post(
        "/api/jobs/create",
        data={"job_type": "metrics"},
        content_type="application/json",
        **team.headers,
    )
    job_id = created.json()["job_id"]
    called = client.post(
        f"/api/jobs/{job_id}/llm-call",
        data={"model": "chat-fast", "messages": [{"role": "user", "content": "Hi"}]},
        content_type="application/json",
        **team.headers,
    )
    assert called.status_code == 200, called.content
    before = sample("saasllm_credits_charged_total", team_id=team.id)

    with django_capture_on_commit_callbacks(execute=True):
        completed = client.post(
            f"/api/jobs/{job_id}/complete",
            data={"status": "completed"},
            content_type="application/json",
            **team.headers,
        )

    charged = completed.json()["costs"]["credits_charged"]
    assert charged == 1
    assert sample("saasllm_credits_charged_total", team_id=team.id) == before + charged


def test_credits_not_counted_when_settlement_rolls_back(
    team, django_capture_on_commit_callbacks
):
    job = create_job(team=team.team, job_type="metrics")
    before = sample("saasllm_credits_charged_total", team_id=team.id)

    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                settle_job(job=job, credits=2)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass

    assert sample("saasllm_credits_charged_total", team_id=team.id) == before


def test_tokens_counted_by_team():
    before = sample("saasllm_tokens_total", team_id="metrics-team")

    metrics.count_tokens("metrics-team", 13)
    metrics.count_tokens("metrics-team", 0)

    assert sample("saasllm_tokens_total", team_id="metrics-team") == before + 13


def test_timed_provider_call_success():
    alias = f"alias-{uuid.uuid4().hex[:8]}"
    context = RequestContext(request_id="req")
    token = current_request.set(context)
    try:
        with metrics.timed_provider_call(alias):
            assert sample("saasllm_provider_calls_in_flight") >= 1
    finally:
        current_request.reset(token)

    assert sample("saasllm_provider_call_duration_seconds_count", alias=alias) == 1
    assert context.provider_seconds > 0
    assert (
        REGISTRY.get_sample_value(
            "saasllm_provider_errors_total",
            {"alias": alias, "code": "provider_timeout"},
        )
        is None
    )


def test_timed_provider_call_error_counted():
    alias = f"alias-{uuid.uuid4().hex[:8]}"
    in_flight_before = sample("saasllm_provider_calls_in_flight")

    with pytest.raises(ProviderFailure), metrics.timed_provider_call(alias):
        raise ProviderFailure()

    assert sample("saasllm_provider_call_duration_seconds_count", alias=alias) == 1
    assert (
        sample("saasllm_provider_errors_total", alias=alias, code="provider_timeout")
        == 1
    )
    assert sample("saasllm_provider_calls_in_flight") == in_flight_before


def test_timed_provider_call_cancelled():
    alias = f"alias-{uuid.uuid4().hex[:8]}"

    async def cancelled_call():
        with metrics.timed_provider_call(alias):
            raise asyncio.CancelledError()

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled_call())

    assert sample("saasllm_provider_errors_total", alias=alias, code="cancelled") == 1


def test_unexpected_error_code():
    alias = f"alias-{uuid.uuid4().hex[:8]}"

    with pytest.raises(KeyError), metrics.timed_provider_call(alias):
        raise KeyError("bug")

    assert (
        sample("saasllm_provider_errors_total", alias=alias, code="unexpected_error")
        == 1
    )


def test_database_pool_gauges(db):
    connection.ensure_connection()

    metrics.refresh_database_pool_gauges()

    maximum = sample("saasllm_database_pool_connections", state="max")
    size = sample("saasllm_database_pool_connections", state="size")
    if connection.vendor == "postgresql":
        assert maximum == settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"]
        assert size >= 1
    else:
        assert maximum == 0
        assert size == 0


# A served gateway with two workers in multiprocess mode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def served_requests_counted(base_url: str) -> float:
    status, text = fetch(base_url + "/metrics", {"X-Admin-Key": MASTER_KEY})
    assert status == 200, text
    match = re.search(
        r'^saasllm_http_requests_total\{method="GET",route="healthz",status="200"\} '
        r"(\S+)$",
        text,
        re.MULTILINE,
    )
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def multiprocess_gateway(tmp_path):
    """Serve the gateway with two gunicorn workers sharing a metrics directory."""
    port = free_port()
    metrics_dir = tmp_path / "prometheus"
    env = {
        **os.environ,
        # Probes and scrapes need no database; nothing is migrated there.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_FORMAT": "json",
        "REDIS_URL": "",
    }
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
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
            stderr=log,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while fetch_or_none(base_url + "/healthz") is None:
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("gateway did not start: " + log_path.read_text()[-2000:])
        time.sleep(0.1)

    yield base_url, metrics_dir, log_path

    process.terminate()
    process.wait(timeout=30)


def fetch_or_none(url: str):
    try:
        return fetch(url)
    except OSError:
        return None


def test_multiprocess_metrics_add_up_workers(multiprocess_gateway):
    base_url, metrics_dir, _ = multiprocess_gateway
    before = served_requests_counted(base_url)

    for _ in range(30):
        status, _ = fetch(base_url + "/healthz")
        assert status == 200

    # Whichever worker serves a scrape, it reports the total of both.
    totals = [served_requests_counted(base_url) for _ in range(5)]
    assert totals == [before + 30] * 5
    assert list(metrics_dir.glob("counter_*.db"))


def test_served_logs_are_json_lines(multiprocess_gateway):
    base_url, _, log_path = multiprocess_gateway

    fetch(base_url + "/no/such/path", {"X-Request-ID": "served-404"})

    deadline = time.monotonic() + 10
    while "served-404" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line]
    loggers = {record["logger"] for record in records}
    assert "gunicorn.error" in loggers
    assert "uvicorn.error" in loggers
    of_request = {
        r["logger"]: r for r in records if r.get("request_id") == "served-404"
    }
    assert set(of_request) == {"saasllm.requests", "django.request"}
    line = of_request["saasllm.requests"]
    assert line["route"] == "unmatched"
    assert line["status"] == 404
