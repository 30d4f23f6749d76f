"""CORS admits listed browser origins only, on every status, and never authenticates.

This module is also the URLconf of the tests marked with ``pytest.mark.urls``.
It adds a view that fails and a view that raises a 429 error to the gateway's
URLs.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from django.urls import include, path
from rest_framework.views import APIView

from saasllm.checks import check_cors_origins
from saasllm.errors import ApiError
from saasllm.settings import read_cors_origins

# The gateway's error handlers, for when this module is the URLconf.
from saasllm.urls import handler400, handler403, handler404, handler500  # noqa: F401
from teams.models import Team

PROJECT_DIR = Path(__file__).resolve().parents[2]
ADMIN_PANEL = "https://admin.example.com"
STRANGER = "https://evil.example.net"
REQUEST_HEADERS = [
    "authorization",
    "content-type",
    "x-admin-key",
    "idempotency-key",
    "x-job-id",
]
EXPOSED_HEADERS = [
    "retry-after",
    "x-request-id",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
]
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "prod-secret-key-0123456789abcdefghijklmnopqrstuv",
    "MASTER_KEY": "sk-admin-prod-master-key-0123456789",
    "ENCRYPTION_KEY": "cHJvZC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcy0wMDA=",
    "ALLOWED_HOSTS": "gateway.example.com",
    "DATABASE_URL": "sqlite:///:memory:",
}


class RateLimited(ApiError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests."
    retry_after = 7


class RateLimitedView(APIView):
    def get(self, request):
        raise RateLimited()


def failing_view(request):
    raise RuntimeError("The view failed on purpose.")


urlpatterns = [
    path("test/rate-limited", RateLimitedView.as_view()),
    path("test/fails", failing_view),
    path("", include("saasllm.urls")),
]


@pytest.fixture(autouse=True)
def admin_panel_origin(settings):
    settings.CORS_ALLOWED_ORIGINS = [ADMIN_PANEL]


@pytest.fixture
def browser():
    """A client that returns 500 responses instead of raising the view's error."""
    return Client(raise_request_exception=False)


def preflight(client, path, origin, method="POST", headers=REQUEST_HEADERS):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=", ".join(headers),
    )


def split_header(response, name):
    return [value.strip() for value in response.headers.get(name, "").split(",")]


def assert_cors_allowed(response, origin=ADMIN_PANEL):
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    for header in EXPOSED_HEADERS:
        assert header in split_header(response, "Access-Control-Expose-Headers")


# Preflight


@pytest.mark.parametrize("path", ["/api/jobs/create", "/api/teams"])
def test_preflight_needs_no_key(client, path):
    response = preflight(client, path, ADMIN_PANEL)

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ADMIN_PANEL
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    allowed = split_header(response, "Access-Control-Allow-Headers")
    for header in REQUEST_HEADERS:
        assert header in allowed
    assert "POST" in split_header(response, "Access-Control-Allow-Methods")


def test_preflight_from_unknown_origin(client):
    response = preflight(client, "/api/jobs/create", STRANGER)

    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_preflight_from_null_origin(client):
    response = preflight(client, "/api/jobs/create", "null")

    assert "Access-Control-Allow-Origin" not in response.headers


# Actual requests, per status


def test_201_has_cors_headers(client, team):
    response = client.post(
        "/api/jobs/create",
        {"job_type": "triage"},
        content_type="application/json",
        HTTP_ORIGIN=ADMIN_PANEL,
        **team.headers,
    )

    assert response.status_code == 201
    assert_cors_allowed(response)


def test_unknown_origin_gets_no_cors_headers(client, team):
    response = client.post(
        "/api/jobs/create",
        {"job_type": "triage"},
        content_type="application/json",
        HTTP_ORIGIN=STRANGER,
        **team.headers,
    )

    assert response.status_code == 201
    assert "Access-Control-Allow-Origin" not in response.headers


def test_allowed_origin_still_needs_key(client, db):
    response = client.get("/api/teams", HTTP_ORIGIN=ADMIN_PANEL)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_admin_key"
    assert_cors_allowed(response)


def test_401_has_cors_headers(client, db):
    response = client.post(
        "/api/jobs/create",
        {"job_type": "triage"},
        content_type="application/json",
        HTTP_ORIGIN=ADMIN_PANEL,
        HTTP_AUTHORIZATION="Bearer sk-unknown0000000000000000000000000000000000000000",
    )

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
    assert_cors_allowed(response)


def test_403_has_cors_headers(client, team):
    Team.objects.filter(pk=team.team.pk).update(status=Team.Status.SUSPENDED)

    response = client.post(
        "/api/jobs/create",
        {"job_type": "triage"},
        content_type="application/json",
        HTTP_ORIGIN=ADMIN_PANEL,
        **team.headers,
    )

    assert response.status_code == 403
    assert response.json()["code"] == "team_suspended"
    assert_cors_allowed(response)


def test_404_has_cors_headers(client, team):
    response = client.get(
        "/api/jobs/00000000-0000-0000-0000-000000000000",
        HTTP_ORIGIN=ADMIN_PANEL,
        **team.headers,
    )

    assert response.status_code == 404
    assert response.json()["code"] == "job_not_found"
    assert_cors_allowed(response)


def test_unknown_path_404_has_cors_headers(client):
    response = client.get("/api/no-such-endpoint", HTTP_ORIGIN=ADMIN_PANEL)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert_cors_allowed(response)


@pytest.mark.urls("saasllm.tests.test_cors")
def test_429_exposes_retry_after(client):
    response = client.get("/test/rate-limited", HTTP_ORIGIN=ADMIN_PANEL)

    assert response.status_code == 429
    assert response.json() == {"detail": "Too many requests.", "code": "rate_limited"}
    assert response.headers["Retry-After"] == "7"
    assert_cors_allowed(response)


@pytest.mark.urls("saasllm.tests.test_cors")
def test_500_has_cors_headers(browser):
    response = browser.get("/test/fails", HTTP_ORIGIN=ADMIN_PANEL)

    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
    assert_cors_allowed(response)


@pytest.mark.urls("saasllm.tests.test_cors")
def test_500_has_cors_headers_under_asgi():
    client = AsyncClient(raise_request_exception=False)

    response = async_to_sync(client.get)("/test/fails", headers={"origin": ADMIN_PANEL})

    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
    assert_cors_allowed(response)


def test_preflight_under_asgi(db):
    client = AsyncClient()

    response = async_to_sync(client.options)(
        "/api/jobs/create",
        headers={
            "origin": ADMIN_PANEL,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ADMIN_PANEL


# Server-side clients


def test_request_without_origin_unaffected(client, team):
    response = client.post(
        "/api/jobs/create",
        {"job_type": "triage"},
        content_type="application/json",
        **team.headers,
    )

    assert response.status_code == 201
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_empty_origin_list_keeps_api_working(client, team, settings):
    settings.CORS_ALLOWED_ORIGINS = []

    response = client.post(
        "/api/jobs/create",
        {"job_type": "triage"},
        content_type="application/json",
        **team.headers,
    )

    assert response.status_code == 201


# System checks


def check_ids(errors):
    return [error.id for error in errors]


def test_check_passes_valid_origins(settings):
    settings.CORS_ALLOWED_ORIGINS = [
        "https://admin.example.com",
        "http://localhost:3000",
        "https://admin.example.com:8443",
        "https://admin.example.com/",
    ]

    assert check_cors_origins(None) == []


@pytest.mark.parametrize(
    ("origin", "error_id"),
    [
        ("*", "saasllm.E001"),
        ("https://*.example.com", "saasllm.E001"),
        ("admin.example.com", "saasllm.E002"),
        ("null", "saasllm.E002"),
        ("https://admin.example.com/panel", "saasllm.E002"),
        ("https://admin.example.com?x=1", "saasllm.E002"),
        ("https://admin.example.com#top", "saasllm.E002"),
        ("https://user@admin.example.com", "saasllm.E002"),
        ("https://admin.example.com:99999", "saasllm.E002"),
        ("ftp://files.example.com", "saasllm.E003"),
        ("file://", "saasllm.E002"),
        ("chrome-extension://abcdef", "saasllm.E003"),
    ],
)
def test_check_rejects_bad_origin(settings, origin, error_id):
    settings.CORS_ALLOWED_ORIGINS = [origin]

    errors = check_cors_origins(None)

    assert check_ids(errors) == [error_id]
    assert repr(origin) in errors[0].msg


def test_check_names_environment_variable(settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://admin.example.com/login"]
    settings.CORS_ORIGIN_SOURCES = {
        "https://admin.example.com/login": "ADMIN_PANEL_URL"
    }

    errors = check_cors_origins(None)

    assert "from ADMIN_PANEL_URL" in errors[0].msg
    assert errors[0].hint.startswith("Fix ADMIN_PANEL_URL.")


def test_check_rejects_allow_all_with_credentials(settings):
    settings.CORS_ALLOW_ALL_ORIGINS = True
    settings.CORS_ALLOW_CREDENTIALS = True

    assert check_ids(check_cors_origins(None)) == ["saasllm.E004"]


def test_check_accepts_allow_all_without_credentials(settings):
    settings.CORS_ALLOW_ALL_ORIGINS = True
    settings.CORS_ALLOW_CREDENTIALS = False

    assert check_cors_origins(None) == []


def test_wildcard_entry_admits_null_origin(client, settings):
    # The reason saasllm.E001 is an error: django-cors-headers compares only
    # scheme and host, and both are empty for "*" and for "null".
    settings.CORS_ALLOWED_ORIGINS = ["*"]

    response = client.get("/healthz", HTTP_ORIGIN="null")

    assert response.headers["Access-Control-Allow-Origin"] == "null"


# Reading the environment


def test_origin_entries_are_normalized(monkeypatch):
    monkeypatch.setenv(
        "CORS_ALLOWED_ORIGINS", " https://a.example.com/ ,, HTTPS://B.Example.com ,"
    )
    monkeypatch.setenv("ADMIN_PANEL_URL", "https://admin.example.com/")
    monkeypatch.setenv("ADDITIONAL_CORS_ORIGINS", "https://a.example.com, ")

    origins = read_cors_origins(debug=False)

    assert origins == {
        "https://a.example.com": "CORS_ALLOWED_ORIGINS",
        "https://b.example.com": "CORS_ALLOWED_ORIGINS",
        "https://admin.example.com": "ADMIN_PANEL_URL",
    }


def test_unset_variables_allow_no_origin(monkeypatch):
    for name in ("CORS_ALLOWED_ORIGINS", "ADMIN_PANEL_URL", "ADDITIONAL_CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)

    assert read_cors_origins(debug=False) == {}


def test_debug_adds_local_admin_panels(monkeypatch):
    for name in ("CORS_ALLOWED_ORIGINS", "ADMIN_PANEL_URL", "ADDITIONAL_CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)

    origins = read_cors_origins(debug=True)

    assert list(origins) == [
        "http://localhost:3000",
        "http://localhost:3001",
        "http://localhost:3002",
    ]


def run_check(env_overrides):
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=PROJECT_DIR,
        env={**os.environ, **PRODUCTION_ENV, **env_overrides},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_manage_check_rejects_wildcard():
    result = run_check(
        {"ADDITIONAL_CORS_ORIGINS": "https://admin.example.com, https://*.example.com"}
    )

    assert result.returncode != 0
    assert "saasllm.E001" in result.stderr
    assert "'https://*.example.com' from ADDITIONAL_CORS_ORIGINS" in result.stderr


def test_manage_check_reports_malformed_origin_once():
    result = run_check({"ADMIN_PANEL_URL": "admin.example.com"})

    assert result.returncode != 0
    assert "'admin.example.com' from ADMIN_PANEL_URL" in result.stderr
    assert "corsheaders.E013" not in result.stderr


def test_manage_check_passes_listed_origins():
    result = run_check(
        {
            "CORS_ALLOWED_ORIGINS": "https://admin.example.com/, ,",
            "ADMIN_PANEL_URL": "https://panel.example.com",
        }
    )

    assert result.returncode == 0, result.stderr
