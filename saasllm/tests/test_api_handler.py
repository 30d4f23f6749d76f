"""The team API's call path through TeamApiHandler, over real HTTP."""

import time

import httpx
import pytest
from django.core.signals import request_finished, request_started
from django.test import override_settings

from saasllm.api_handler import TEAM_API_MIDDLEWARE, path_info, serves_team_api
from saasllm.test_servers import ASGIServerThread

pytestmark = pytest.mark.django_db(transaction=True)

JOB_ID = "3f0e7a52-0c4b-4f8e-9d51-6a2b1c0d9e77"
CALL_BODY = {"model": "chat-fast", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/create",
        "/api/jobs/create-and-call",
        "/api/jobs/create-and-call-stream",
        f"/api/jobs/{JOB_ID}/llm-call",
        f"/api/jobs/{JOB_ID}/llm-call-stream",
        f"/api/jobs/{JOB_ID}/complete",
        "/v1/chat/completions",
        f"/api/jobs/{JOB_ID}",
        f"/api/jobs/{JOB_ID}/costs",
        f"/api/jobs/{JOB_ID}/metadata",
        "/api/teams/acme-research/usage",
        "/api/teams/acme-research/jobs",
        "/api/credits/teams/acme-research/balance",
        "/api/credits/teams/acme-research/transactions",
        "/v1/models",
    ],
)
def test_team_api_served_by_team_handler(path):
    assert serves_team_api(path)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/teams/team/",
        "/api/teams",
        "/api/organizations",
        "/api/jobs/teams/acme-research",
        "/healthz",
        "/metrics",
        "/no/such/path",
    ],
)
def test_other_paths_served_by_django(path):
    assert not serves_team_api(path)


def test_path_below_mount_point():
    scope = {"path": "/gateway/v1/chat/completions", "root_path": "/gateway"}

    assert path_info(scope) == "/v1/chat/completions"


def test_team_middleware_keeps_no_session_middleware():
    assert not any("session" in name.lower() for name in TEAM_API_MIDDLEWARE)
    assert not any("csrf" in name.lower() for name in TEAM_API_MIDDLEWARE)


@pytest.fixture
def server(team):
    gateway = ASGIServerThread()
    gateway.start()
    yield gateway.base_url
    gateway.stop()


@pytest.fixture
def signals_sent():
    sent = []

    def started(**kwargs):
        sent.append("started")

    def finished(**kwargs):
        sent.append("finished")

    request_started.connect(started, weak=False)
    request_finished.connect(finished, weak=False)
    yield sent
    request_started.disconnect(started)
    request_finished.disconnect(finished)


def test_call_sends_no_request_signals(server, team, signals_sent):
    response = httpx.post(
        server + "/v1/chat/completions",
        json=CALL_BODY,
        headers={"Authorization": f"Bearer {team.key}"},
    )

    assert response.status_code == 200
    assert signals_sent == []


def test_other_paths_send_request_signals(server, signals_sent):
    response = httpx.get(server + "/favicon.ico")
    # request_finished is sent when the server closes the response, which
    # may be just after the client has read it.
    deadline = time.monotonic() + 5
    while "finished" not in signals_sent and time.monotonic() < deadline:
        time.sleep(0.01)

    assert response.status_code == 301
    assert "started" in signals_sent
    assert "finished" in signals_sent


def test_call_has_security_headers(server, team):
    response = httpx.post(
        server + "/api/jobs/create-and-call",
        json={**CALL_BODY, "job_type": "check"},
        headers={"Authorization": f"Bearer {team.key}"},
    )

    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Request-ID"]
    assert float(response.headers["X-Gateway-Overhead-Ms"]) >= 0


def test_unknown_host_rejected(server, team):
    response = httpx.post(
        server + "/v1/chat/completions",
        json=CALL_BODY,
        headers={"Authorization": f"Bearer {team.key}", "Host": "evil.example"},
    )

    assert response.status_code == 400


def test_cors_preflight_answered(server):
    with override_settings(CORS_ALLOWED_ORIGINS=["https://app.example"]):
        response = httpx.options(
            server + "/v1/chat/completions",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_bad_key_is_json_401(server):
    response = httpx.post(
        server + "/api/jobs/create",
        json={"job_type": "check"},
        headers={"Authorization": "Bearer sk-not-a-key"},
    )

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"


def test_job_round_trip(server, team):
    headers = {"Authorization": f"Bearer {team.key}"}

    created = httpx.post(
        server + "/api/jobs/create", json={"job_type": "check"}, headers=headers
    )
    job_id = created.json()["job_id"]
    called = httpx.post(
        server + f"/api/jobs/{job_id}/llm-call", json=CALL_BODY, headers=headers
    )
    completed = httpx.post(
        server + f"/api/jobs/{job_id}/complete",
        json={"status": "completed"},
        headers=headers,
    )

    assert created.status_code == 201
    assert called.status_code == 200
    assert completed.status_code == 200
    assert completed.json()["costs"]["credits_charged"] == 1
    assert "X-RateLimit-Limit-Requests" not in created.headers


def test_team_reads_served_in_one_step(server, team, signals_sent):
    headers = {"Authorization": f"Bearer {team.key}"}
    created = httpx.post(
        server + "/api/jobs/create", json={"job_type": "check"}, headers=headers
    )
    job_id = created.json()["job_id"]

    job = httpx.get(server + f"/api/jobs/{job_id}", headers=headers)
    balance = httpx.get(
        server + f"/api/credits/teams/{team.id}/balance", headers=headers
    )
    unknown = httpx.get(server + f"/api/jobs/{JOB_ID}", headers=headers)

    assert job.status_code == 200
    assert job.json()["job_id"] == job_id
    assert job.headers["X-Content-Type-Options"] == "nosniff"
    assert balance.status_code == 200
    assert balance.json()["credits_held"] == 1
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "job_not_found"
    assert signals_sent == []


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probe_answers_any_host(server, path):
    response = httpx.get(server + path, headers={"Host": "10.0.0.5:8000"})

    assert response.status_code == 200
    assert response.headers["X-Request-ID"]


def test_probe_rejects_post_as_json(server):
    response = httpx.post(server + "/healthz")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "GET, HEAD"


def test_cors_exposes_job_id(server, team):
    with override_settings(CORS_ALLOWED_ORIGINS=["https://app.example"]):
        response = httpx.post(
            server + "/v1/chat/completions",
            json=CALL_BODY,
            headers={
                "Authorization": f"Bearer {team.key}",
                "Origin": "https://app.example",
            },
        )

    assert response.status_code == 200
    exposed = response.headers["Access-Control-Expose-Headers"].lower()
    assert "x-job-id" in exposed
