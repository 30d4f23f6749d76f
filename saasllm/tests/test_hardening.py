"""Security headers, the request body limit, and malformed input that must not 500."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient, Client

from jobs.models import Job
from jobs.services import create_job
from saasllm.middleware import RequestBodyLimitMiddleware
from saasllm.parsers import MAX_JSON_DEPTH, exceeds_depth

PROJECT_DIR = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "prod-secret-key-0123456789abcdefghijklmnopqrstuv",
    "MASTER_KEY": "sk-admin-prod-master-key-0123456789",
    "ENCRYPTION_KEY": "cHJvZC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcy0wMDA=",
    "ALLOWED_HOSTS": "gateway.example.com",
    "DATABASE_URL": "sqlite:///:memory:",
}
SMALL_LIMIT = 4096
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def client():
    """A client that returns 500 responses, so a test can assert their absence."""
    return Client(raise_request_exception=False)


@pytest.fixture
def asgi_client():
    return AsyncClient(raise_request_exception=False)


@pytest.fixture
def job(team):
    return create_job(team=team.team, job_type="triage", user_id="", metadata=None)


def post_json(client, path, body, **headers):
    """POST ``body`` as the raw request body (bytes or str) with a JSON type."""
    return client.post(path, body, content_type="application/json", **headers)


def asgi_post_json(client, path, body, authorization):
    return async_to_sync(client.post)(
        path,
        body,
        content_type="application/json",
        headers={"authorization": authorization},
    )


def assert_error(response, status, code):
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str)


def run_manage(env_overrides, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env={**os.environ, **PRODUCTION_ENV, **env_overrides},
        capture_output=True,
        text=True,
        timeout=60,
    )


def print_settings(env_overrides, *names):
    """Return the named settings as a start-up with ``env_overrides`` reads them."""
    code = "from django.conf import settings; " + "; ".join(
        f"print(repr(settings.{name}))" for name in names
    )
    result = run_manage(env_overrides, "shell", "--verbosity", "0", "-c", code)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


# Security headers


def assert_security_headers(response):
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_json_error_has_security_headers(client, team):
    response = client.get("/api/jobs/00000000-0000-0000-0000-000000000000")

    assert response.status_code == 401
    assert_security_headers(response)


def test_json_success_has_security_headers(client, team):
    response = post_json(
        client, "/api/jobs/create", '{"job_type": "a"}', **team.headers
    )

    assert response.status_code == 201
    assert_security_headers(response)


def test_health_has_security_headers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert_security_headers(response)


def test_admin_html_has_security_headers(client, db):
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert_security_headers(response)


def test_asgi_response_has_security_headers(asgi_client, db):
    response = async_to_sync(asgi_client.get)("/api/teams")

    assert response.status_code == 401
    assert_security_headers(response)


def test_hsts_on_https(client):
    response = client.get("/healthz", secure=True)

    assert (
        response.headers["Strict-Transport-Security"]
        == "max-age=31536000; includeSubDomains"
    )


def test_no_hsts_on_plain_http(client):
    response = client.get("/healthz")

    assert "Strict-Transport-Security" not in response.headers


def test_https_behind_proxy_gets_hsts(client):
    response = client.get("/healthz", HTTP_X_FORWARDED_PROTO="https")

    assert "Strict-Transport-Security" in response.headers


def test_csrf_cookie_is_secure(client, db):
    response = client.get("/admin/login/")

    cookie = response.cookies["csrftoken"]
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Lax"


def test_production_cookies_and_hsts():
    values = print_settings(
        {},
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    )

    assert values == ["True", "True", "31536000", "True"]


def test_debug_does_not_require_https():
    values = print_settings(
        {"DEBUG": "true"},
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
    )

    assert values == ["False", "False", "0"]


# Request body size


def test_body_limit_defaults_to_two_mebibytes(settings):
    assert settings.MAX_REQUEST_BODY_BYTES == 2 * 1024 * 1024
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.MAX_REQUEST_BODY_BYTES


def test_body_limit_reads_environment():
    values = print_settings(
        {"MAX_REQUEST_BODY_BYTES": "65536"},
        "MAX_REQUEST_BODY_BYTES",
        "DATA_UPLOAD_MAX_MEMORY_SIZE",
    )

    assert values == ["65536", "65536"]


def test_malformed_body_limit_is_named():
    result = run_manage({"MAX_REQUEST_BODY_BYTES": "2MB"}, "check")

    assert result.returncode != 0
    assert "MAX_REQUEST_BODY_BYTES must be an integer" in result.stderr


def test_default_limit_rejects_larger_body(client, team):
    body = json.dumps({"job_type": "a", "user_id": "x" * (2 * 1024 * 1024)})

    response = post_json(client, "/api/jobs/create", body, **team.headers)

    assert_error(response, 413, "request_too_large")
    assert response.json()["detail"] == (
        "The request body is larger than the limit of 2097152 bytes."
    )
    assert Job.objects.count() == 0


def padded_body(size: int, **fields) -> str:
    """A JSON object of exactly ``size`` bytes, padded in its ``user_id``."""
    body = json.dumps({**fields, "user_id": ""})
    return json.dumps({**fields, "user_id": "x" * (size - len(body))})


def test_body_at_limit_is_accepted(client, team, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
    body = padded_body(SMALL_LIMIT, job_type="a")

    response = post_json(client, "/api/jobs/create", body, **team.headers)

    assert len(body) == SMALL_LIMIT
    assert response.status_code != 413


def test_oversized_body_sync_view(client, team, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
    body = padded_body(SMALL_LIMIT + 1, job_type="a")

    response = post_json(client, "/api/jobs/create", body, **team.headers)

    assert_error(response, 413, "request_too_large")
    assert Job.objects.count() == 0


@pytest.mark.parametrize("path", ["/api/jobs/create-and-call", "job-llm-call"])
def test_oversized_body_async_views(client, team, job, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
    if path == "job-llm-call":
        path = f"/api/jobs/{job.id}/llm-call"
    body = padded_body(
        SMALL_LIMIT + 1, job_type="a", model="chat-fast", messages=MESSAGES
    )

    response = post_json(client, path, body, **team.headers)

    assert_error(response, 413, "request_too_large")
    assert job.calls.count() == 0


def test_oversized_body_under_asgi(asgi_client, team, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
    body = padded_body(
        SMALL_LIMIT + 1, job_type="a", model="chat-fast", messages=MESSAGES
    )

    response = asgi_post_json(
        asgi_client,
        "/api/jobs/create-and-call",
        body,
        team.headers["HTTP_AUTHORIZATION"],
    )

    assert_error(response, 413, "request_too_large")
    assert Job.objects.count() == 0


def test_oversized_content_length_not_read(client, team, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT

    # The body is short, but Content-Length claims more than the limit, so
    # the body is never read.
    response = post_json(
        client,
        "/api/jobs/create",
        '{"job_type": "a"}',
        CONTENT_LENGTH=str(SMALL_LIMIT + 1),
        **team.headers,
    )

    assert_error(response, 413, "request_too_large")


def test_oversized_form_outside_drf(client, db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT

    response = client.post(
        "/admin/login/", {"username": "admin", "password": "x" * SMALL_LIMIT}
    )

    assert_error(response, 413, "request_too_large")


def test_413_keeps_cors_headers(client, team, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
    settings.CORS_ALLOWED_ORIGINS = ["https://admin.example.com"]
    body = padded_body(SMALL_LIMIT + 1, job_type="a")

    response = post_json(
        client,
        "/api/jobs/create",
        body,
        HTTP_ORIGIN="https://admin.example.com",
        **team.headers,
    )

    assert response.status_code == 413
    assert (
        response.headers["Access-Control-Allow-Origin"] == "https://admin.example.com"
    )


# Malformed credentials

MALFORMED_CREDENTIALS = [
    pytest.param("Bearer " + "é" * 10, id="non-ascii"),
    pytest.param("Bearer sk-" + "\x00" * 8, id="nul-bytes"),
    pytest.param("Bearer  sk-abc  ", id="extra-spaces"),
    pytest.param("bearer sk-abc", id="lowercase-scheme"),
    pytest.param("Bearer\tsk-abc", id="tab"),
    pytest.param("Bearer sk-" + "a" * 10_000, id="10kb-key"),
    pytest.param("x" * 10_000, id="10kb-header"),
    pytest.param("Bearer", id="scheme-only"),
    pytest.param("Bearer sk-a sk-b", id="two-keys"),
    pytest.param("Basic dXNlcjpwYXNz", id="basic-auth"),
    pytest.param("", id="empty"),
    pytest.param("sk-" + "é" * 40, id="no-scheme-non-ascii"),
]


@pytest.mark.parametrize("value", MALFORMED_CREDENTIALS)
def test_malformed_authorization_is_401(client, team, value):
    response = post_json(
        client, "/api/jobs/create", '{"job_type": "a"}', HTTP_AUTHORIZATION=value
    )

    assert_error(response, 401, "invalid_api_key")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert Job.objects.count() == 0


@pytest.mark.parametrize("value", MALFORMED_CREDENTIALS)
def test_malformed_admin_key_is_401(client, db, value):
    response = client.get("/api/teams", HTTP_X_ADMIN_KEY=value)

    assert_error(response, 401, "invalid_admin_key")


@pytest.mark.parametrize("value", MALFORMED_CREDENTIALS)
def test_malformed_authorization_async_view(client, team, value):
    body = json.dumps({"job_type": "a", "model": "chat-fast", "messages": MESSAGES})

    response = post_json(
        client, "/api/jobs/create-and-call", body, HTTP_AUTHORIZATION=value
    )

    assert_error(response, 401, "invalid_api_key")
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "value",
    ["Bearer " + "é" * 10, "Bearer sk-\x00\x00", "Bearer \tsk-abc", "y" * 10_000],
)
def test_malformed_headers_under_asgi(asgi_client, team, value):
    body = json.dumps({"job_type": "a", "model": "chat-fast", "messages": MESSAGES})

    team_response = asgi_post_json(asgi_client, "/api/jobs/create", body, value)
    async_response = asgi_post_json(
        asgi_client, "/api/jobs/create-and-call", body, value
    )
    admin_response = async_to_sync(asgi_client.get)(
        "/api/teams", headers={"x-admin-key": value}
    )

    assert_error(team_response, 401, "invalid_api_key")
    assert_error(async_response, 401, "invalid_api_key")
    assert_error(admin_response, 401, "invalid_admin_key")


# Malformed bodies

NOT_AN_OBJECT = [
    pytest.param("[]", id="empty-array"),
    pytest.param('[{"job_type": "a"}]', id="array"),
    pytest.param('"job"', id="string"),
    pytest.param("42", id="integer"),
    pytest.param("4.2e300", id="float"),
    pytest.param("true", id="boolean"),
]
NOT_JSON = [
    pytest.param(b'{"job_type": "\xff\xfe"}', id="invalid-utf8"),
    pytest.param(b"\xc3\x28", id="invalid-utf8-only"),
    pytest.param('{"job_type": ', id="truncated"),
    pytest.param('{"job_type": NaN}', id="nan"),
    pytest.param("{'job_type': 'a'}", id="single-quotes"),
    pytest.param("\x00", id="nul"),
]


def deeply_nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def nested_objects(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


TOO_DEEP = [
    pytest.param(deeply_nested(10_000), id="10000-arrays"),
    pytest.param(nested_objects(10_000), id="10000-objects"),
    pytest.param(
        '{"job_type": "a", "metadata": ' + nested_objects(950) + "}",
        id="950-in-metadata",
    ),
    pytest.param(
        '{"job_type": "a", "metadata": ' + nested_objects(MAX_JSON_DEPTH) + "}",
        id="just-over-limit",
    ),
]


@pytest.mark.parametrize("body", NOT_AN_OBJECT)
def test_non_object_body_is_422(client, team, body):
    response = post_json(client, "/api/jobs/create", body, **team.headers)

    assert_error(response, 422, "validation_error")
    assert Job.objects.count() == 0


@pytest.mark.parametrize("body", NOT_JSON)
def test_non_json_body_is_400(client, team, body):
    response = post_json(client, "/api/jobs/create", body, **team.headers)

    assert_error(response, 400, "malformed_json")
    assert Job.objects.count() == 0


@pytest.mark.parametrize("body", TOO_DEEP)
def test_deeply_nested_body_is_400(client, team, body):
    response = post_json(client, "/api/jobs/create", body, **team.headers)

    assert_error(response, 400, "json_too_deep")
    assert Job.objects.count() == 0


@pytest.mark.parametrize("body", [*NOT_AN_OBJECT, *NOT_JSON, *TOO_DEEP])
def test_malformed_body_in_llm_call(client, team, job, body):
    response = post_json(client, f"/api/jobs/{job.id}/llm-call", body, **team.headers)

    assert response.status_code in (400, 422)
    assert response.json()["code"] in (
        "validation_error",
        "malformed_json",
        "json_too_deep",
    )
    assert job.calls.count() == 0


INFINITE_NUMBER_CALL = (
    '{"model": "chat-fast", "messages": [{"role": "user", "content": "hi"}], '
    '"call_metadata": {"ratio": 1e999}}'
)


def test_infinite_number_in_call_is_422(client, team, job):
    response = post_json(
        client, f"/api/jobs/{job.id}/llm-call", INFINITE_NUMBER_CALL, **team.headers
    )

    assert_error(response, 422, "validation_error")
    assert response.json()["errors"] == {
        "call_metadata": ["Numbers must be finite: at most about 1.8e308 in size."]
    }
    job.refresh_from_db()
    assert job.calls.count() == 0
    assert job.calls_in_flight == 0


def test_field_gets_both_value_errors(client, team):
    body = '{"job_type": "a", "metadata": {"n": 1e999, "note": "a\\u0000b"}}'

    response = post_json(client, "/api/jobs/create", body, **team.headers)

    assert_error(response, 422, "validation_error")
    assert response.json()["errors"] == {
        "metadata": [
            "Null characters are not allowed.",
            "Numbers must be finite: at most about 1.8e308 in size.",
        ]
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"job_type": "a", "metadata": {"n": -1e999}}', id="metadata"),
        pytest.param('{"job_type": "a", "metadata": {"n": [1, 2e400]}}', id="list"),
        pytest.param("[1e999]", id="array"),
    ],
)
def test_infinite_number_is_422(client, team, body):
    response = post_json(client, "/api/jobs/create", body, **team.headers)

    assert_error(response, 422, "validation_error")
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(deeply_nested(10_000), id="10000-arrays"),
        pytest.param(b'{"model": "\xff"}', id="invalid-utf8"),
        pytest.param("[1, 2]", id="array"),
    ],
)
def test_malformed_body_under_asgi(asgi_client, team, body):
    response = asgi_post_json(
        asgi_client,
        "/api/jobs/create-and-call",
        body,
        team.headers["HTTP_AUTHORIZATION"],
    )

    assert response.status_code in (400, 422)
    assert Job.objects.count() == 0


def test_form_body_is_415(client, team):
    response = client.post("/api/jobs/create", {"job_type": "a"}, **team.headers)

    assert_error(response, 415, "unsupported_media_type")


# Depth limit


def test_depth_at_limit_is_accepted():
    value = json.loads(deeply_nested(MAX_JSON_DEPTH))

    assert exceeds_depth(value, MAX_JSON_DEPTH) is False


def test_depth_over_limit_is_detected():
    value = json.loads(deeply_nested(MAX_JSON_DEPTH + 1))

    assert exceeds_depth(value, MAX_JSON_DEPTH) is True


@pytest.mark.parametrize("value", [1, "text", None, [], {}, [1, {"a": [2]}]])
def test_shallow_values_are_within_depth(value):
    assert exceeds_depth(value, 3) is False


def test_depth_counts_dicts_and_lists():
    value = {"a": [{"b": [1]}]}

    assert exceeds_depth(value, 4) is False
    assert exceeds_depth(value, 3) is True


# Body limit in front of Django's ASGI handler


class ScriptedClient:
    """Feeds body chunks to an ASGI app and records what the app sends back."""

    def __init__(self, chunks):
        self.messages = [
            {"type": "http.request", "body": chunk, "more_body": True}
            for chunk in chunks
        ]
        if self.messages:
            self.messages[-1]["more_body"] = False
        self.chunks_read = 0
        self.sent = []
        self.response_done = None

    async def receive(self):
        await asyncio.sleep(0)
        if self.messages:
            self.chunks_read += 1
            return self.messages.pop(0)
        await self.response_done.wait()
        return {"type": "http.disconnect"}

    async def send(self, message):
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.response_done.set()

    def run(self, app, scope):
        async def main():
            self.response_done = asyncio.Event()
            await app(scope, self.receive, self.send)

        async_to_sync(main)()

    @property
    def status(self):
        return self.sent[0]["status"]

    @property
    def headers(self):
        return {
            name.decode(): value.decode() for name, value in self.sent[0]["headers"]
        }

    def json(self):
        return json.loads(
            b"".join(message.get("body", b"") for message in self.sent[1:])
        )


class RecordingApp:
    """An ASGI app that reads the body as Django does, then one more message."""

    def __init__(self, client):
        self.client = client
        self.messages = []
        self.chunks_read_at_first_message = None

    async def __call__(self, scope, receive, send):
        while True:
            message = await receive()
            if self.chunks_read_at_first_message is None:
                self.chunks_read_at_first_message = self.client.chunks_read
            self.messages.append(message)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        self.messages.append(await receive())

    @property
    def body(self):
        return b"".join(message.get("body", b"") for message in self.messages)


def http_scope(path="/api/jobs/create", headers=()):
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def run_limited(chunks, headers=()):
    client = ScriptedClient(chunks)
    app = RecordingApp(client)
    client.run(RequestBodyLimitMiddleware(app), http_scope(headers=headers))
    return app, client


def test_body_within_limit_passes_unchanged(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 16

    app, _ = run_limited([b"a" * 8, b"b" * 8])

    assert app.messages == [
        {"type": "http.request", "body": b"a" * 8, "more_body": True},
        {"type": "http.request", "body": b"b" * 8, "more_body": False},
        {"type": "http.disconnect"},
    ]


def test_chunked_body_is_cut_after_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 16

    app, client = run_limited([b"x" * 10] * 5)

    assert app.body == b"x" * 17
    assert app.messages[-2]["more_body"] is False
    assert app.messages[-1] == {"type": "http.disconnect"}
    assert client.chunks_read == 5


def test_declared_length_over_limit_reads_nothing(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 16

    app, client = run_limited(
        [b"x" * 500, b"x" * 500], headers=[(b"content-length", b"1000")]
    )

    assert app.messages[0] == {"type": "http.request", "body": b"", "more_body": False}
    assert app.chunks_read_at_first_message == 0
    assert app.messages[-1] == {"type": "http.disconnect"}


def test_body_one_byte_over_limit_reaches_django(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 16

    app, _ = run_limited([b"x" * 17])

    assert app.body == b"x" * 17


CHUNKED = [(b"transfer-encoding", b"chunked")]


def test_chunked_body_gets_content_length(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 16
    client = ScriptedClient([b"a" * 8, b"b" * 4])
    seen = {}

    async def app(scope, receive, send):
        seen["headers"] = dict(scope["headers"])
        seen["message"] = await receive()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    client.run(RequestBodyLimitMiddleware(app), http_scope(headers=CHUNKED))

    assert seen["headers"][b"content-length"] == b"12"
    assert b"transfer-encoding" not in seen["headers"]
    assert seen["message"] == {
        "type": "http.request",
        "body": b"a" * 8 + b"b" * 4,
        "more_body": False,
    }


def test_oversized_chunked_body_is_cut(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 16

    app, client = run_limited([b"x" * 10] * 5, headers=CHUNKED)

    assert app.body == b"x" * 17
    assert app.messages[-1] == {"type": "http.disconnect"}


# The ASGI handler runs the view's database step in a thread of its own, which
# needs a committed team.
@pytest.mark.django_db(transaction=True)
def test_chunked_body_reaches_the_view(team, settings):
    body = json.dumps({"job_type": "chunked"}).encode()
    client = ScriptedClient([body[:5], body[5:]])
    scope = http_scope(
        "/api/jobs/create",
        headers=[
            *CHUNKED,
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {team.key}".encode()),
        ],
    )

    client.run(RequestBodyLimitMiddleware(ASGIHandler()), scope)

    assert client.status == 201
    assert Job.objects.get(pk=client.json()["job_id"]).job_type == "chunked"


def test_lifespan_scope_passes_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    async_to_sync(RequestBodyLimitMiddleware(app))({"type": "lifespan"}, None, None)

    assert seen == ["lifespan"]


def test_oversized_upload_gets_413_through_asgi_stack(db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
    settings.CORS_ALLOWED_ORIGINS = ["https://admin.example.com"]
    client = ScriptedClient([b"x" * SMALL_LIMIT] * 4)
    scope = http_scope(
        "/api/jobs/create-and-call",
        headers=[
            (b"content-type", b"application/json"),
            (b"content-length", str(SMALL_LIMIT * 4).encode()),
            (b"origin", b"https://admin.example.com"),
            # Well-formed, so the body is read before the key is looked up.
            (b"authorization", b"Bearer sk-abcdefgh" + b"x" * 43),
        ],
    )

    client.run(RequestBodyLimitMiddleware(ASGIHandler()), scope)

    assert client.status == 413
    assert client.json()["code"] == "request_too_large"
    assert client.headers["access-control-allow-origin"] == "https://admin.example.com"
