"""Request ids, the per-request log line, JSON logs and the overhead header."""

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, RequestFactory, override_settings
from django.urls import path
from prometheus_client import REGISTRY

from saasllm.logformat import JsonFormatter, TextFormatter
from saasllm.middleware import observe_requests
from saasllm.observability import (
    RequestContext,
    RequestIdFilter,
    add_provider_time,
    annotate,
    current_request,
    redact_keys,
    request_id_from_header,
)
from saasllm.urls import urlpatterns as project_urlpatterns

PROJECT_DIR = Path(__file__).resolve().parents[2]
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
PROMPT_MARKER = "prompt-marker-4f1c9e do not log this sentence"

# Views of a streaming response for the tests below; the gateway's own
# streaming endpoints belong to the job API.
stream_events: list[str] = []


def sync_stream_view(request):
    def events():
        stream_events.append("started")
        add_provider_time(1.0)
        yield b"data: one\n\n"
        yield b"data: two\n\n"

    return StreamingHttpResponse(events(), content_type="text/event-stream")


async def async_stream_view(request):
    async def events():
        stream_events.append("started")
        add_provider_time(1.0)
        yield b"data: one\n\n"
        yield b"data: two\n\n"

    return StreamingHttpResponse(events(), content_type="text/event-stream")


def slow_provider_view(request):
    add_provider_time(3600.0)
    logging.getLogger("saasllm.tests").warning("inside the view")
    return HttpResponse("ok")


urlpatterns = [
    path("test/sync-stream", sync_stream_view, name="test-sync-stream"),
    path("test/async-stream", async_stream_view, name="test-async-stream"),
    path("test/slow-provider", slow_provider_view, name="test-slow-provider"),
    *project_urlpatterns,
]


class LogCapture:
    def __init__(self, buffer: io.StringIO):
        self.buffer = buffer

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines() if line]

    def request_lines(self) -> list[dict]:
        return [r for r in self.records() if r["logger"] == "saasllm.requests"]


@pytest.fixture
def logs():
    """Send the configured console handler's JSON lines to a buffer."""
    handler = next(
        handler
        for handler in logging.getLogger().handlers
        if any(isinstance(f, RequestIdFilter) for f in handler.filters)
    )
    buffer = io.StringIO()
    previous_stream = handler.setStream(buffer)
    previous_formatter = handler.formatter
    handler.setFormatter(JsonFormatter())
    yield LogCapture(buffer)
    handler.setStream(previous_stream)
    handler.setFormatter(previous_formatter)


@pytest.fixture
def quiet_lines_shown():
    """Let the DEBUG lines of probes and scrapes through."""
    logger = logging.getLogger("saasllm.requests")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    yield
    logger.setLevel(previous)


@pytest.fixture
def stream_log():
    stream_events.clear()
    return stream_events


def test_request_id_generated_when_missing(client):
    response = client.get("/healthz")

    assert GENERATED_ID.fullmatch(response["X-Request-ID"])


def test_request_id_from_client_echoed(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="client-42_req:7/a=b")

    assert response["X-Request-ID"] == "client-42_req:7/a=b"


@pytest.mark.parametrize(
    "value",
    ["", "two words", "x" * 129, "caf\u00e9", "line\nbreak", "tab\there"],
    ids=["empty", "space", "too-long", "non-ascii", "newline", "tab"],
)
def test_invalid_request_id_replaced(client, value):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=value)

    assert GENERATED_ID.fullmatch(response["X-Request-ID"])
    assert response["X-Request-ID"] != value


def test_request_id_of_max_length_kept():
    value = "a" * 128

    assert request_id_from_header(value) == value


def test_request_id_and_overhead_on_error_responses(db, client):
    not_found = client.get("/no/such/path", HTTP_X_REQUEST_ID="req-404")
    unauthorized = client.get(
        f"/api/jobs/{uuid.uuid4()}",
        HTTP_AUTHORIZATION="Bearer sk-not-a-real-key-000000000000",
        HTTP_X_REQUEST_ID="req-401",
    )

    assert not_found.status_code == 404
    assert not_found["X-Request-ID"] == "req-404"
    assert float(not_found["X-Gateway-Overhead-Ms"]) >= 0
    assert unauthorized.status_code == 401
    assert unauthorized["X-Request-ID"] == "req-401"
    assert float(unauthorized["X-Gateway-Overhead-Ms"]) >= 0


def test_overhead_header_is_milliseconds(client):
    response = client.get("/healthz")

    assert re.fullmatch(r"\d+\.\d", response["X-Gateway-Overhead-Ms"])


@pytest.mark.urls(__name__)
def test_overhead_leaves_out_provider_time(client, logs):
    response = client.get("/test/slow-provider")

    # The view reported an hour of provider time, more than the request took.
    assert response["X-Gateway-Overhead-Ms"] == "0.0"
    (line,) = logs.request_lines()
    assert line["provider_ms"] == 3600000.0
    assert line["overhead_ms"] == 0.0


@pytest.mark.urls(__name__)
def test_view_records_carry_request_id(client, logs):
    client.get("/test/slow-provider", HTTP_X_REQUEST_ID="req-view")

    (record,) = [r for r in logs.records() if r["logger"] == "saasllm.tests"]
    assert record["message"] == "inside the view"
    assert record["request_id"] == "req-view"


def test_django_error_records_carry_request_id(db, client, logs):
    client.get(
        f"/api/jobs/{uuid.uuid4()}",
        HTTP_AUTHORIZATION="Bearer sk-not-a-real-key-000000000000",
        HTTP_X_REQUEST_ID="req-unauthorized",
    )

    # Django logs 4xx responses after the middleware has returned.
    (record,) = [r for r in logs.records() if r["logger"] == "django.request"]
    assert record["message"].startswith("Unauthorized")
    assert record["request_id"] == "req-unauthorized"
    assert record["status_code"] == 401


def test_records_after_request_have_no_request_id(client, logs):
    client.get("/healthz", HTTP_X_REQUEST_ID="req-finished")
    logging.getLogger("saasllm.tests").warning("after the request")

    (record,) = [r for r in logs.records() if r["logger"] == "saasllm.tests"]
    assert "request_id" not in record


def test_team_request_log_line(client, team, logs):
    key_prefix = team.team.keys.get().prefix

    response = client.post(
        "/api/jobs/create",
        data={"job_type": "ticket_triage"},
        content_type="application/json",
        HTTP_X_REQUEST_ID="req-create",
        **team.headers,
    )

    assert response.status_code == 201
    (line,) = logs.request_lines()
    assert line["level"] == "INFO"
    assert line["request_id"] == "req-create"
    assert line["method"] == "POST"
    assert line["route"] == "job-create"
    assert line["path"] == "/api/jobs/create"
    assert line["status"] == 201
    assert line["team_id"] == "acme-research"
    assert line["key_prefix"] == key_prefix
    assert line["streaming"] is False
    assert isinstance(line["duration_ms"], float)
    assert isinstance(line["overhead_ms"], float)
    assert line["overhead_ms"] == float(response["X-Gateway-Overhead-Ms"])
    assert "alias" not in line
    assert "tokens" not in line
    assert team.key not in logs.text


def test_rejected_team_still_logged(client, team, logs):
    team.team.status = "suspended"
    team.team.save(update_fields=["status"])

    response = client.get(f"/api/jobs/{uuid.uuid4()}", **team.headers)

    assert response.status_code == 403
    (line,) = logs.request_lines()
    assert line["team_id"] == "acme-research"
    assert line["status"] == 403


def test_llm_call_logs_no_prompt_or_key(client, team, logs):
    created = client.post(
        "/api/jobs/create",
        data={"job_type": "ticket_triage"},
        content_type="application/json",
        **team.headers,
    )
    job_id = created.json()["job_id"]

    response = client.post(
        f"/api/jobs/{job_id}/llm-call",
        data={
            "model": "chat-fast",
            "messages": [{"role": "user", "content": PROMPT_MARKER}],
        },
        content_type="application/json",
        **team.headers,
    )

    assert response.status_code == 200, response.content
    call_line = logs.request_lines()[-1]
    assert call_line["route"] == "job-llm-call"
    assert call_line["team_id"] == "acme-research"
    assert "prompt-marker" not in logs.text
    assert team.key not in logs.text
    assert "sk-provider-secret" not in logs.text


def test_probe_lines_logged_at_debug(client, logs, quiet_lines_shown):
    client.get("/healthz")

    (line,) = logs.request_lines()
    assert line["level"] == "DEBUG"
    assert line["route"] == "healthz"


def test_probe_lines_hidden_at_info(client, logs):
    client.get("/healthz")

    assert logs.request_lines() == []


def test_unmatched_path_logged_as_unmatched(client, logs):
    client.get("/no/such/path")

    (line,) = logs.request_lines()
    assert line["route"] == "unmatched"
    assert line["path"] == "/no/such/path"
    assert line["status"] == 404


def test_whole_key_in_path_redacted(client, team, admin_headers, logs):
    path = f"/api/teams/{team.id}/keys/{team.key}/revoke"

    response = client.post(path, **admin_headers)

    assert response.status_code == 404
    assert team.key not in logs.text
    expected_path = f"/api/teams/{team.id}/keys/sk-[redacted]/revoke"
    assert logs.request_lines()[-1]["path"] == expected_path
    (not_found,) = [r for r in logs.records() if r["logger"] == "django.request"]
    assert not_found["message"] == f"Not Found: {expected_path}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/keys/sk-ab12cd34/revoke", "/keys/sk-ab12cd34/revoke"),
        ("/keys/sk-ab12cd34...wxyz", "/keys/sk-ab12cd34...wxyz"),
        ("/teams/risk-assessment-team", "/teams/risk-assessment-team"),
        ("/keys/sk-ab12cd34x/revoke", "/keys/sk-[redacted]/revoke"),
        ("Bearer sk-admin-test-master-key", "Bearer sk-[redacted]"),
    ],
)
def test_redact_keys(text, expected):
    assert redact_keys(text) == expected


@pytest.mark.urls(__name__)
def test_sync_stream_not_consumed_by_middleware(client, logs, stream_log):
    response = client.get("/test/sync-stream", HTTP_X_REQUEST_ID="req-stream")

    assert stream_log == []
    assert response.streaming
    assert response["Content-Type"] == "text/event-stream"
    assert not response.has_header("Content-Encoding")
    assert response["X-Request-ID"] == "req-stream"
    assert float(response["X-Gateway-Overhead-Ms"]) >= 0
    assert logs.request_lines() == []

    # The test client closes the response at the end of its content, as a
    # server does.
    body = b"".join(response.streaming_content)

    assert body == b"data: one\n\ndata: two\n\n"
    (line,) = logs.request_lines()
    assert line["streaming"] is True
    assert line["request_id"] == "req-stream"
    assert line["route"] == "test-sync-stream"
    assert line["provider_ms"] == 1000.0


@pytest.mark.urls(__name__)
def test_async_stream_not_consumed_by_middleware(logs, stream_log):
    async def fetch():
        response = await AsyncClient().get(
            "/test/async-stream", headers={"X-Request-ID": "req-async-stream"}
        )
        started_before_reading = list(stream_log)
        body = b"".join([chunk async for chunk in response.streaming_content])
        return response, started_before_reading, body

    response, started_before_reading, body = async_to_sync(fetch)()

    assert started_before_reading == []
    assert response["X-Request-ID"] == "req-async-stream"
    assert not response.has_header("Content-Encoding")
    assert body == b"data: one\n\ndata: two\n\n"
    (line,) = logs.request_lines()
    assert line["streaming"] is True
    assert line["provider_ms"] == 1000.0


def test_middleware_is_sync_and_async_capable():
    async def async_view(request):
        return HttpResponse("ok")

    assert observe_requests.sync_capable is True
    assert observe_requests.async_capable is True
    assert asyncio.iscoroutinefunction(observe_requests(async_view))
    assert not asyncio.iscoroutinefunction(observe_requests(lambda request: None))


@override_settings(DEBUG=True)
def test_asgi_stack_does_not_adapt_middleware(caplog):
    caplog.set_level(logging.DEBUG, logger="django.request")

    # With DEBUG on, Django logs each middleware it wraps to switch between
    # sync and async, which would cost a thread hop per request.
    ASGIHandler()

    adapted = [r.getMessage() for r in caplog.records if "adapted" in r.getMessage()]
    assert not [m for m in adapted if "saasllm.middleware.observe_requests" in m]


def test_async_middleware_path(logs):
    async def view(request):
        annotate(alias="chat-fast", tokens=13)
        add_provider_time(3600.0)
        return HttpResponse("ok")

    middleware = observe_requests(view)
    request = RequestFactory().get("/healthz", HTTP_X_REQUEST_ID="req-async")
    response = asyncio.run(middleware(request))

    assert response["X-Request-ID"] == "req-async"
    assert response["X-Gateway-Overhead-Ms"] == "0.0"
    (line,) = logs.request_lines()
    assert line["alias"] == "chat-fast"
    assert line["tokens"] == 13
    assert line["route"] == "unmatched"


def test_annotate_outside_request_does_nothing():
    annotate(team_id="acme", tokens=5)
    add_provider_time(1.0)

    assert current_request.get() is None


def test_annotate_keeps_fields_left_as_none():
    context = RequestContext(request_id="req")
    token = current_request.set(context)
    try:
        annotate(team_id="acme", alias="chat-fast")
        annotate(tokens=7)
    finally:
        current_request.reset(token)

    assert context.team_id == "acme"
    assert context.alias == "chat-fast"
    assert context.tokens == 7
    assert context.key_prefix is None


def test_annotate_through_request_object():
    request = RequestFactory().get("/")
    request.observability = RequestContext(request_id="req")

    annotate(request, key_prefix="abc123")
    add_provider_time(0.5, request)

    assert request.observability.key_prefix == "abc123"
    assert request.observability.provider_seconds == 0.5


def test_annotate_from_sync_to_async_thread():
    context = RequestContext(request_id="req")

    async def handler():
        current_request.set(context)
        await sync_to_async(annotate)(team_id="acme", tokens=3)
        await sync_to_async(add_provider_time)(2.0)

    asyncio.run(handler())

    assert context.team_id == "acme"
    assert context.tokens == 3
    assert context.provider_seconds == 2.0


def test_json_formatter_fields():
    record = logging.LogRecord(
        "saasllm.tests", logging.WARNING, __file__, 1, "failed %s", ("x",), None
    )
    record.request_id = "req-1"
    record.status = 502
    record.request = object()

    entry = json.loads(JsonFormatter().format(record))

    assert entry["level"] == "WARNING"
    assert entry["logger"] == "saasllm.tests"
    assert entry["message"] == "failed x"
    assert entry["request_id"] == "req-1"
    assert entry["status"] == 502
    assert "request" not in entry
    assert entry["time"].endswith("+00:00")


def test_json_formatter_exception_on_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "saasllm.tests", logging.ERROR, __file__, 1, "oops", (), sys.exc_info()
        )

    text = JsonFormatter().format(record)

    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["exception"]


def test_text_formatter_appends_fields():
    record = logging.LogRecord(
        "saasllm.requests", logging.INFO, __file__, 1, "GET healthz 200", (), None
    )
    record.request_id = "req-1"
    record.team_id = None

    text = TextFormatter().format(record)

    assert text.endswith("INFO saasllm.requests GET healthz 200 request_id=req-1")


def read_log_format(**overrides) -> subprocess.CompletedProcess:
    """Print settings.LOG_FORMAT in a new process, without the caller's LOG_FORMAT."""
    env = {name: value for name, value in os.environ.items() if name != "LOG_FORMAT"}
    env.update({"DATABASE_URL": "sqlite:///:memory:", **overrides})
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--verbosity",
            "0",
            "-c",
            "from django.conf import settings; print(settings.LOG_FORMAT)",
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("debug", "expected"), [("false", "json"), ("true", "text")])
def test_log_format_default_follows_debug(debug, expected):
    result = read_log_format(DEBUG=debug)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_invalid_log_format_rejected():
    result = read_log_format(LOG_FORMAT="xml")

    assert result.returncode != 0
    assert "LOG_FORMAT must be json or text, got 'xml'" in result.stderr


def test_call_line_names_alias_and_tokens(client, team, logs):
    job_id = client.post(
        "/api/jobs/create",
        {"job_type": "observed"},
        content_type="application/json",
        **team.headers,
    ).json()["job_id"]
    calls_before = (
        REGISTRY.get_sample_value(
            "saasllm_provider_call_duration_seconds_count", {"alias": "chat-fast"}
        )
        or 0.0
    )
    tokens_before = (
        REGISTRY.get_sample_value("saasllm_tokens_total", {"team_id": team.id}) or 0.0
    )

    response = client.post(
        f"/api/jobs/{job_id}/llm-call",
        {"model": "chat-fast", "messages": [{"role": "user", "content": "one two"}]},
        content_type="application/json",
        **team.headers,
    )

    assert response.status_code == 200
    tokens = response.json()["usage"]["total_tokens"]
    (line,) = [line for line in logs.request_lines() if line["route"] == "job-llm-call"]
    assert line["alias"] == "chat-fast"
    assert line["tokens"] == tokens
    assert line["provider_ms"] > 0
    assert "one two" not in logs.text
    assert (
        REGISTRY.get_sample_value(
            "saasllm_provider_call_duration_seconds_count", {"alias": "chat-fast"}
        )
        == calls_before + 1
    )
    assert (
        REGISTRY.get_sample_value("saasllm_tokens_total", {"team_id": team.id})
        == tokens_before + tokens
    )


def test_disallowed_host_logged_as_short_warning(client, caplog):
    host = "evil-" + "x" * 3000 + ".example"

    with caplog.at_level(logging.WARNING, logger="django.security.DisallowedHost"):
        response = client.get("/api/schema/", HTTP_HOST=host)

    records = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert response.status_code == 400
    assert len(records) == 1
    assert records[0].levelname == "WARNING"
    assert records[0].exc_info is None
    assert len(records[0].getMessage()) < 400
