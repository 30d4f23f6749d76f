"""The OpenAI-compatible API over real HTTP, driven by the official openai SDK.

Every response that a test receives is recorded: status, headers and body,
SSE chunks included. The ``traffic`` fixture fails the test when any of it
names a provider, a provider model, a provider key or a provider's error text.
"""

import json
from datetime import UTC, datetime

import httpx2
import openai
import pytest
import time_machine

from catalog.crypto import encrypt_secret
from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from jobs.models import Job, LLMCall
from jobs.services import create_job
from jobs.tests.sse_client import stream_post
from saasllm.test_servers import ASGIServerThread
from teams.models import Team

pytestmark = pytest.mark.django_db(transaction=True)

ANTHROPIC_KEY = "sk-ant-fake-key-123"
# Strings that must never reach a team: provider names, provider models,
# provider keys, credential names and the fake provider's error text.
SECRETS = (
    "fake-gpt-small",
    "claude-fake",
    "fail-500",
    "fail-429",
    "stream-fail-after",
    "openai_compatible",
    "anthropic",
    "sk-provider-secret-abcdef123456",
    "sk-ant-",
    "upstream-secret-text",
    "fake provider",
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}


class RecordingStream(httpx2.SyncByteStream):
    def __init__(self, stream, buffer: bytearray):
        self.stream = stream
        self.buffer = buffer

    def __iter__(self):
        for part in self.stream:
            self.buffer.extend(part)
            yield part

    def close(self):
        self.stream.close()


class RecordingTransport(httpx2.HTTPTransport):
    """An HTTP transport that appends every response it receives to ``traffic``."""

    def __init__(self, traffic: list[bytearray]):
        super().__init__()
        self.traffic = traffic

    def handle_request(self, request):
        response = super().handle_request(request)
        buffer = bytearray(f"{response.status_code}\n".encode())
        for name, value in response.headers.raw:
            buffer.extend(name + b": " + value + b"\n")
        self.traffic.append(buffer)
        response.stream = RecordingStream(response.stream, buffer)
        return response


@pytest.fixture
def traffic(fake_provider):
    """Responses received in the test; none may name what only operators see."""
    received: list[bytearray] = []
    yield received
    secrets = (
        *SECRETS,
        fake_provider.openai_base_url,
        fake_provider.anthropic_base_url,
    )
    for response in received:
        text = response.decode(errors="replace")
        for secret in secrets:
            assert secret.lower() not in text.lower(), (secret, text[:2000])


@pytest.fixture
def server(team):
    gateway = ASGIServerThread()
    gateway.start()
    yield gateway.base_url
    gateway.stop()


@pytest.fixture
def http(server, traffic):
    """A plain HTTP client of the gateway that records its responses."""
    with httpx2.Client(
        base_url=server, transport=RecordingTransport(traffic), timeout=120
    ) as client:
        yield client


@pytest.fixture
def sdk_for(server, traffic):
    """Build an openai SDK client of the gateway with a given API key."""
    clients = []

    def build(api_key: str) -> openai.OpenAI:
        client = openai.OpenAI(
            base_url=server + "/v1",
            api_key=api_key,
            max_retries=0,
            http_client=httpx2.Client(transport=RecordingTransport(traffic)),
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def sdk(sdk_for, team):
    return sdk_for(team.key)


@pytest.fixture
def add_alias(access_group):
    """Add an alias to the team's access group, or to ``group`` when given."""

    def add(name, provider_model, provider="openai_compatible", group=access_group):
        alias = ModelAlias.objects.create(
            alias=name,
            provider=provider,
            provider_model=provider_model,
            input_price_per_million="1",
            output_price_per_million="2",
            max_retries=0,
        )
        group.aliases.add(alias)
        return alias

    return add


@pytest.fixture
def anthropic_alias(organization, add_alias, fake_provider):
    ProviderCredential.objects.create(
        organization=organization,
        provider="anthropic",
        name="fake anthropic",
        encrypted_api_key=encrypt_secret(ANTHROPIC_KEY),
        api_base=fake_provider.anthropic_base_url,
    )
    return add_alias("chat-smart", "claude-fake-1", provider="anthropic")


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def credits_of(team) -> tuple[int, int]:
    """Return the team's (credits_used, credits_held)."""
    row = Team.objects.get(pk=team.id)
    return row.credits_used, row.credits_held


def open_job(team) -> Job:
    return create_job(team=team.team, job_type="conversation")


# Chat completions


def test_completion_is_chat_completion(sdk):
    completion = sdk.chat.completions.create(
        model="chat-fast", messages=user("Summarise the quarterly report")
    )

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "chat-fast"
    assert completion.created > 0
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: Summarise the quarterly report"
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert completion.usage.prompt_tokens == 4
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == 9


def test_own_job_completed_and_charged(sdk, team):
    raw = sdk.chat.completions.with_raw_response.create(
        model="chat-fast", messages=user("Hello there")
    )

    completion = raw.parse()
    job = Job.objects.get(pk=raw.headers["X-Job-ID"])
    assert job.team_id == team.id
    assert job.job_type == "chat_completion"
    assert job.status == Job.Status.COMPLETED
    assert job.credits_charged == 1
    call = LLMCall.objects.get(job=job)
    assert completion.id == f"chatcmpl-{call.id.hex}"
    assert call.alias == "chat-fast"
    assert call.total_tokens == completion.usage.total_tokens
    assert credits_of(team) == (1, 0)


def test_job_type_header_names_own_job(sdk):
    raw = sdk.chat.completions.with_raw_response.create(
        model="chat-fast",
        messages=user("Hello"),
        extra_headers={"X-Job-Type": "ticket_triage"},
    )

    assert Job.objects.get(pk=raw.headers["X-Job-ID"]).job_type == "ticket_triage"


def test_job_type_header_too_long_is_422(sdk, team):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        sdk.chat.completions.create(
            model="chat-fast",
            messages=user("Hello"),
            extra_headers={"X-Job-Type": "t" * 101},
        )

    error = caught.value
    assert error.status_code == 422
    assert error.type == "invalid_request_error"
    assert error.code == "validation_error"
    assert error.param == "X-Job-Type"
    assert "100 characters" in error.message
    assert Job.objects.count() == 0
    assert credits_of(team) == (0, 0)


def test_job_id_header_attaches_call_to_job(sdk, team):
    job = open_job(team)

    raw = sdk.chat.completions.with_raw_response.create(
        model="chat-fast",
        messages=user("Hello"),
        extra_headers={"X-Job-ID": str(job.id)},
    )

    assert raw.headers["X-Job-ID"] == str(job.id)
    assert raw.parse().choices[0].message.content == "Echo: Hello"
    job.refresh_from_db()
    assert job.status == Job.Status.IN_PROGRESS
    assert job.calls.count() == 1
    assert job.credits_charged == 0
    assert Job.objects.count() == 1
    assert credits_of(team) == (0, 1)


def test_job_id_of_other_team_is_404(sdk, outsider):
    other_job = open_job(outsider)

    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(
            model="chat-fast",
            messages=user("Hello"),
            extra_headers={"X-Job-ID": str(other_job.id)},
        )

    error = caught.value
    assert error.type == "not_found_error"
    assert error.code == "job_not_found"
    assert error.response.headers.get("X-Job-ID") is None
    assert LLMCall.objects.count() == 0
    assert Job.objects.count() == 1


def test_unknown_job_id_is_404(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(
            model="chat-fast",
            messages=user("Hello"),
            extra_headers={"X-Job-ID": "not-a-job"},
        )

    assert caught.value.code == "job_not_found"


def test_max_completion_tokens_mapped(sdk, fake_provider):
    completion = sdk.chat.completions.create(
        model="chat-fast",
        messages=user("one two three four"),
        max_completion_tokens=2,
        temperature=0.5,
        seed=7,
    )

    assert completion.choices[0].message.content == "Echo: one"
    assert completion.choices[0].finish_reason == "length"
    sent = fake_provider.requests[-1].body
    assert sent["max_tokens"] == 2
    assert "max_completion_tokens" not in sent
    assert sent["temperature"] == 0.5
    assert sent["seed"] == 7


def test_unknown_fields_are_ignored(sdk, fake_provider):
    completion = sdk.chat.completions.create(
        model="chat-fast",
        messages=user("Hello"),
        extra_body={"logprobs": False, "store": False, "x_custom": {"a": 1}},
    )

    assert completion.choices[0].message.content == "Echo: Hello"
    assert "x_custom" not in fake_provider.requests[-1].body


def test_n_above_one_is_422(sdk):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        sdk.chat.completions.create(model="chat-fast", messages=user("Hi"), n=2)

    error = caught.value
    assert error.type == "invalid_request_error"
    assert error.code == "validation_error"
    assert error.param == "n"
    assert error.body["message"] == (
        "Invalid 'n': Only n=1 is supported. Send one request per completion."
    )


def test_invalid_message_names_its_param(sdk):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        sdk.chat.completions.create(
            model="chat-fast",
            messages=[{"role": "user", "content": "Hi"}, {"role": "robot"}],
        )

    assert caught.value.param == "messages[1].role"


# Errors


def test_bad_key_raises_authentication_error(sdk_for):
    client = sdk_for("sk-not-a-real-key-0123456789abcdef")

    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="chat-fast", messages=user("Hi"))

    error = caught.value
    assert error.status_code == 401
    assert error.type == "authentication_error"
    assert error.code == "invalid_api_key"
    assert error.param is None
    assert error.response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert Job.objects.count() == 0


def test_models_bad_key_is_401(sdk_for):
    client = sdk_for("sk-not-a-real-key-0123456789abcdef")

    with pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()

    assert caught.value.code == "invalid_api_key"


def test_alias_not_allowed_is_permission_error(sdk, add_alias, organization):
    hidden = AccessGroup.objects.create(name="premium", display_name="Premium")
    add_alias("chat-premium", "fake-gpt-large", group=hidden)

    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk.chat.completions.create(model="chat-premium", messages=user("Hi"))

    error = caught.value
    assert error.status_code == 403
    assert error.type == "permission_error"
    assert error.code == "model_not_allowed"
    assert Job.objects.count() == 0


def test_no_credits_is_402(sdk_for, team_factory):
    broke = team_factory("acme-broke", credits=0)

    with pytest.raises(openai.APIStatusError) as caught:
        sdk_for(broke.key).chat.completions.create(
            model="chat-fast", messages=user("Hi")
        )

    error = caught.value
    assert error.status_code == 402
    assert error.type == "insufficient_quota"
    assert error.code == "insufficient_credits"
    assert Job.objects.count() == 0


def test_team_rate_limit_is_rate_limit_error(sdk, team):
    Team.objects.filter(pk=team.id).update(requests_per_minute=1)
    # Five seconds into a minute, so both requests fall in one window.
    with time_machine.travel(datetime(2026, 12, 5, 9, 0, 5, tzinfo=UTC)):
        sdk.models.list()

        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(model="chat-fast", messages=user("Hi"))

    error = caught.value
    assert error.status_code == 429
    assert error.type == "rate_limit_error"
    assert error.code == "rate_limit_exceeded"
    headers = error.response.headers
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["X-RateLimit-Limit"] == "1"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert Job.objects.count() == 0


def test_provider_error_fails_own_job(sdk, team, add_alias):
    add_alias("chat-broken", "fail-500")

    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="chat-broken", messages=user("Hi"))

    error = caught.value
    assert error.status_code == 502
    assert error.type == "api_error"
    assert error.code == "provider_error"
    job = Job.objects.get(pk=error.response.headers["X-Job-ID"])
    assert job.status == Job.Status.FAILED
    assert job.credits_charged == 0
    assert job.calls.get().error_code == "provider_error"
    assert credits_of(team) == (0, 0)


def test_provider_busy_is_503_with_retry_after(sdk, team, add_alias):
    add_alias("chat-busy", "fail-429")

    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="chat-busy", messages=user("Hi"))

    error = caught.value
    assert error.status_code == 503
    assert error.type == "api_error"
    assert error.code == "provider_busy"
    assert error.response.headers["Retry-After"] == "7"
    assert Job.objects.get().status == Job.Status.FAILED
    assert credits_of(team) == (0, 0)


def test_provider_error_in_job_keeps_job_open(sdk, team, add_alias):
    add_alias("chat-broken", "fail-500")
    job = open_job(team)

    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="chat-broken",
            messages=user("Hi"),
            extra_headers={"X-Job-ID": str(job.id)},
        )

    assert caught.value.status_code == 502
    assert caught.value.response.headers["X-Job-ID"] == str(job.id)
    job.refresh_from_db()
    assert job.is_open
    assert job.calls.get().error_code == "provider_error"


def test_unknown_v1_path_is_openai_404(http):
    response = http.post("/v1/embeddings", json={"model": "chat-fast", "input": "x"})

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "No such endpoint under /v1.",
            "type": "not_found_error",
            "code": "not_found",
            "param": None,
        }
    }


def test_wrong_method_is_openai_405(http, team):
    response = http.get(
        "/v1/chat/completions", headers={"Authorization": f"Bearer {team.key}"}
    )

    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_malformed_json_is_openai_400(http, team):
    response = http.post(
        "/v1/chat/completions",
        content=b"{not json",
        headers={
            "Authorization": f"Bearer {team.key}",
            "Content-Type": "application/json",
        },
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_job_api_keeps_its_error_shape(http):
    response = http.post(
        "/api/jobs/create",
        json={"job_type": "x"},
        headers={"Authorization": "Bearer sk-not-a-real-key-0123456789abcdef"},
    )

    assert response.status_code == 401
    assert set(response.json()) == {"detail", "code"}


# Streaming


def test_stream_relays_chunks_and_usage(sdk, team):
    stream = sdk.chat.completions.create(
        model="chat-fast",
        messages=user("Tell me a short story"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    content = "".join(
        chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices
    )
    assert content == "Echo: Tell me a short story"
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert {chunk.model for chunk in chunks} == {"chat-fast"}
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage.prompt_tokens == 5
    assert usage.completion_tokens == 6
    assert usage.total_tokens == 11
    job = Job.objects.get()
    assert job.status == Job.Status.COMPLETED
    assert job.credits_charged == 1
    call = job.calls.get()
    assert call.streamed
    assert call.total_tokens == 11
    assert credits_of(team) == (1, 0)


def test_stream_without_usage_option(sdk):
    chunks = list(
        sdk.chat.completions.create(model="chat-fast", messages=user("Hi"), stream=True)
    )

    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_events_end_with_done(server, team, traffic):
    reply = stream_post(
        server,
        "/v1/chat/completions",
        {"model": "chat-fast", "messages": user("Hi"), "stream": True},
        team.key,
    )
    traffic.append(bytearray(str(reply.headers) + repr(reply.events), "utf-8"))

    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.done
    assert reply.text == "Echo: Hi"
    assert [event.event for event in reply.events] == [None] * len(reply.events)
    assert reply.headers["x-job-id"] == str(Job.objects.get().id)


def test_stream_in_job_keeps_job_open(sdk, team):
    job = open_job(team)

    with sdk.chat.completions.with_streaming_response.create(
        model="chat-fast",
        messages=user("Hi"),
        stream=True,
        extra_headers={"X-Job-ID": str(job.id)},
    ) as response:
        job_header = response.headers["X-Job-ID"]
        content = "".join(
            chunk.choices[0].delta.content or "" for chunk in response.parse()
        )

    assert job_header == str(job.id)
    assert content == "Echo: Hi"
    job.refresh_from_db()
    assert job.status == Job.Status.IN_PROGRESS
    assert job.calls.get().streamed
    assert Job.objects.count() == 1


def test_stream_fails_before_first_chunk(sdk, team, add_alias):
    add_alias("chat-broken", "fail-500")

    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="chat-broken", messages=user("Hi"), stream=True
        )

    assert caught.value.status_code == 502
    assert caught.value.code == "provider_error"
    assert Job.objects.get().status == Job.Status.FAILED
    assert credits_of(team) == (0, 0)


def test_stream_broken_midway_fails_own_job(sdk, team, add_alias):
    add_alias("chat-flaky", "stream-fail-after-2")
    stream = sdk.chat.completions.create(
        model="chat-flaky", messages=user("Hi"), stream=True
    )
    received = []

    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    assert received == ["w1 ", "w2 "]
    assert caught.value.code == "provider_unreachable"
    job = Job.objects.get()
    assert job.status == Job.Status.FAILED
    assert job.credits_charged == 0
    assert credits_of(team) == (0, 0)


# Tools and response formats


def test_tool_call_returned(sdk):
    completion = sdk.chat.completions.create(
        model="chat-fast",
        messages=user("Please use a tool for Paris"),
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        parallel_tool_calls=False,
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [tool_call] = choice.message.tool_calls
    assert tool_call.type == "function"
    assert tool_call.id
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "example", "days": 1}


def test_tool_call_streamed(sdk):
    chunks = list(
        sdk.chat.completions.create(
            model="chat-fast",
            messages=user("Please use a tool for Paris"),
            tools=[WEATHER_TOOL],
            stream=True,
        )
    )

    deltas = [
        call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert {delta.function.name for delta in deltas if delta.function.name} == {
        "get_weather"
    }
    arguments = "".join(delta.function.arguments or "" for delta in deltas)
    assert json.loads(arguments) == {"city": "example", "days": 1}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_result_message_accepted(sdk, fake_provider):
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city": "Paris"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
    ]

    completion = sdk.chat.completions.create(
        model="chat-fast", messages=messages, tools=[WEATHER_TOOL]
    )

    assert completion.choices[0].message.content == "Echo: Weather in Paris?"
    assert fake_provider.requests[-1].body["messages"][2]["tool_call_id"] == "call_1"


def test_json_object_format(sdk):
    completion = sdk.chat.completions.create(
        model="chat-fast",
        messages=user("Reply in JSON"),
        response_format={"type": "json_object"},
    )

    assert json.loads(completion.choices[0].message.content) == {
        "echo": "Echo: Reply in JSON"
    }


def test_json_schema_format(sdk, fake_provider):
    response_format = {
        "type": "json_schema",
        "json_schema": {
            "name": "ticket",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "priority": {"type": "string", "enum": ["high", "low"]},
                    "count": {"type": "integer"},
                },
                "required": ["priority", "count"],
                "additionalProperties": False,
            },
        },
    }

    completion = sdk.chat.completions.create(
        model="chat-fast",
        messages=user("Classify the ticket"),
        response_format=response_format,
    )

    assert json.loads(completion.choices[0].message.content) == {
        "priority": "high",
        "count": 1,
    }
    assert fake_provider.requests[-1].body["response_format"] == response_format


# Anthropic through litellm


def test_anthropic_alias_streams(sdk, anthropic_alias):
    chunks = list(
        sdk.chat.completions.create(
            model="chat-smart",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name three colours"},
            ],
            max_tokens=100,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    content = "".join(
        chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices
    )
    assert content == "Echo: Name three colours"
    assert {chunk.model for chunk in chunks} == {"chat-smart"}
    assert chunks[-1].usage.completion_tokens > 0
    call = LLMCall.objects.get()
    assert call.provider == "anthropic"
    assert call.streamed
    assert Job.objects.get().status == Job.Status.COMPLETED


def test_anthropic_alias_returns_tool_calls(sdk, anthropic_alias):
    completion = sdk.chat.completions.create(
        model="chat-smart",
        messages=user("Please use a tool for Paris"),
        tools=[WEATHER_TOOL],
        max_tokens=100,
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [tool_call] = choice.message.tool_calls
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "example", "days": 1}


def test_anthropic_alias_streams_tool_calls(sdk, anthropic_alias):
    chunks = list(
        sdk.chat.completions.create(
            model="chat-smart",
            messages=user("Please use a tool for Paris"),
            tools=[WEATHER_TOOL],
            max_tokens=100,
            stream=True,
        )
    )

    deltas = [
        call
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
    ]
    assert {delta.function.name for delta in deltas if delta.function.name} == {
        "get_weather"
    }
    arguments = "".join(delta.function.arguments or "" for delta in deltas)
    assert json.loads(arguments) == {"city": "example", "days": 1}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# Models


def test_models_lists_exactly_team_aliases(sdk, add_alias, organization):
    add_alias("chat-a", "fake-gpt-small")
    add_alias("chat-retired", "fake-gpt-small")
    ModelAlias.objects.filter(alias="chat-retired").update(
        status=ModelAlias.Status.INACTIVE
    )
    hidden = AccessGroup.objects.create(name="premium", display_name="Premium")
    add_alias("chat-premium", "fake-gpt-large", group=hidden)
    closed = AccessGroup.objects.create(
        name="closed", display_name="Closed", status=AccessGroup.Status.INACTIVE
    )
    add_alias("chat-closed", "fake-gpt-small", group=closed)

    models = sdk.models.list()

    assert [model.id for model in models.data] == ["chat-a", "chat-fast"]
    assert {model.object for model in models.data} == {"model"}
    assert {model.owned_by for model in models.data} == {"saasllm"}
    created = ModelAlias.objects.get(alias="chat-fast").created_at
    assert models.data[1].created == int(created.timestamp())


def test_models_list_shape(http, team):
    response = http.get("/v1/models", headers={"Authorization": f"Bearer {team.key}"})

    assert response.status_code == 200
    assert response.json()["object"] == "list"
    assert [model["id"] for model in response.json()["data"]] == ["chat-fast"]
    assert set(response.json()["data"][0]) == {"id", "object", "created", "owned_by"}


def test_model_retrieve(sdk):
    model = sdk.models.retrieve("chat-fast")

    assert model.id == "chat-fast"
    assert model.object == "model"
    assert model.owned_by == "saasllm"


def test_model_retrieve_unknown_is_404(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("chat-missing")

    assert caught.value.type == "not_found_error"
    assert caught.value.code == "model_not_found"


def test_model_retrieve_not_allowed_is_404(sdk, add_alias):
    hidden = AccessGroup.objects.create(name="premium", display_name="Premium")
    add_alias("chat-premium", "fake-gpt-large", group=hidden)

    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("chat-premium")

    assert caught.value.code == "model_not_found"


def test_models_list_query_count(client, team, add_alias, django_assert_num_queries):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {team.key}"}
    client.get("/v1/models", **headers)
    for number in range(5):
        add_alias(f"chat-extra-{number}", "fake-gpt-small")

    # The key's look-up, then the aliases.
    with django_assert_num_queries(2):
        response = client.get("/v1/models", **headers)

    assert len(response.json()["data"]) == 6
