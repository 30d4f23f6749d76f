"""Provider calls over real HTTP against the fake provider on 127.0.0.1."""

import asyncio
import datetime
import logging
import socket
import uuid

import pytest

from catalog.providers import (
    ChatResult,
    ProviderBadResponse,
    ProviderError,
    ProviderHTTPError,
    ProviderNotConfigured,
    ProviderTarget,
    ProviderTimeout,
    ProviderUnreachable,
    complete_chat,
    openai_compatible,
)
from catalog.providers.errors import parse_retry_after, redact_detail
from saasllm.errors import ApiError, api_exception_handler

KEY = "sk-provider-secret-abcdef123456"
SECRET_MARKER = "upstream-secret-text"


def unique_messages(text="Hello there provider"):
    """Return one user message with a marker that finds its request later."""
    marker = uuid.uuid4().hex
    return [{"role": "user", "content": f"{text} {marker}"}], marker


def received(fake_provider, marker):
    matches = [
        request for request in fake_provider.requests if marker in str(request.body)
    ]
    assert len(matches) == 1, f"expected one request with {marker}"
    return matches[0]


def openai_target(fake_provider, model="fake-gpt-small", **fields):
    return ProviderTarget(
        provider=fields.pop("provider", "openai_compatible"),
        model=model,
        api_key=fields.pop("api_key", KEY),
        api_base=fields.pop("api_base", fake_provider.openai_base_url),
        **fields,
    )


def anthropic_target(fake_provider, model="claude-fake", **fields):
    return ProviderTarget(
        provider="anthropic",
        model=model,
        api_key=KEY,
        api_base=fields.pop("api_base", fake_provider.anthropic_base_url),
        **fields,
    )


def call(target, messages=None, params=None) -> ChatResult:
    if messages is None:
        messages, _ = unique_messages()
    return asyncio.run(complete_chat(target, messages, params or {}))


def call_error(target, messages=None, params=None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        call(target, messages, params)
    return caught.value


def assert_public_message_hides_provider(error, target):
    for hidden in (target.provider, target.model, target.api_key, SECRET_MARKER):
        assert hidden not in error.message
    assert "openai" not in error.message.lower()
    assert "anthropic" not in error.message.lower()


@pytest.fixture
def closed_port():
    """A port bound on 127.0.0.1 without listening, so connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


# OpenAI-compatible providers


def test_openai_compatible_call_returns_content_and_tokens(fake_provider):
    result = call(
        openai_target(fake_provider),
        [{"role": "user", "content": "Hello there provider"}],
    )

    assert result.content == "Echo: Hello there provider"
    assert result.finish_reason == "stop"
    assert result.tool_calls is None
    assert result.prompt_tokens == 3
    assert result.completion_tokens == 4


def test_openai_compatible_call_sends_bearer_key_and_model(fake_provider):
    messages, marker = unique_messages()

    call(openai_target(fake_provider), messages)

    request = received(fake_provider, marker)
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.body["model"] == "fake-gpt-small"
    assert request.body["messages"] == messages


def test_only_sent_params_reach_provider(fake_provider):
    messages, marker = unique_messages()
    params = {"temperature": 0.2, "max_tokens": 50, "stop": ["END"]}

    call(openai_target(fake_provider), messages, params)

    body = received(fake_provider, marker).body
    assert body == {
        "model": "fake-gpt-small",
        "messages": messages,
        "temperature": 0.2,
        "max_tokens": 50,
        "stop": ["END"],
    }


def test_no_params_adds_no_defaults(fake_provider):
    messages, marker = unique_messages()

    call(openai_target(fake_provider), messages)

    assert set(received(fake_provider, marker).body) == {"model", "messages"}


def test_tool_call_returned_in_openai_shape(fake_provider):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    messages, _ = unique_messages("Please use a tool")

    result = call(openai_target(fake_provider), messages, {"tools": tools})

    assert result.finish_reason == "tool_calls"
    assert result.content is None
    assert len(result.tool_calls) == 1
    tool_call = result.tool_calls[0]
    assert tool_call["type"] == "function"
    assert tool_call["id"].startswith("call_")
    assert tool_call["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "example"}',
    }


def test_azure_deployment_url_and_header(fake_provider):
    messages, marker = unique_messages()
    target = openai_target(
        fake_provider,
        model="my-deployment",
        provider="azure",
        api_base=fake_provider.base_url + "/",
        api_version="2024-06-01",
    )

    result = call(target, messages)

    request = received(fake_provider, marker)
    assert request.path == (
        "/openai/deployments/my-deployment/chat/completions?api-version=2024-06-01"
    )
    assert request.headers["api-key"] == KEY
    assert "Authorization" not in request.headers
    assert "model" not in request.body
    assert result.content.startswith("Echo: Hello there provider")


def test_azure_call_defaults_api_version(fake_provider):
    messages, marker = unique_messages()
    target = openai_target(
        fake_provider, provider="azure", api_base=fake_provider.base_url
    )

    call(target, messages)

    path = received(fake_provider, marker).path
    assert path.endswith(f"?api-version={openai_compatible.DEFAULT_AZURE_API_VERSION}")


@pytest.mark.parametrize("provider", ["openai_compatible", "azure"])
def test_missing_api_base_is_model_unavailable(fake_provider, provider):
    target = openai_target(fake_provider, provider=provider, api_base="")

    error = call_error(target)

    assert isinstance(error, ProviderNotConfigured)
    assert error.status_code == 503
    assert error.code == "model_unavailable"
    assert error.retryable is False


@pytest.mark.parametrize(
    "api_base", ["127.0.0.1:8000", "ftp://127.0.0.1/v1", "http://"]
)
def test_invalid_api_base_is_model_unavailable(fake_provider, api_base):
    error = call_error(openai_target(fake_provider, api_base=api_base))

    assert isinstance(error, ProviderNotConfigured)
    assert error.code == "model_unavailable"


def test_named_provider_defaults_to_public_api_base():
    target = ProviderTarget(provider="groq", model="llama", api_key=KEY)

    url, headers, body = openai_compatible.build_request(target, [], {})

    assert url == "https://api.groq.com/openai/v1/chat/completions"
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body == {"model": "llama", "messages": []}


def test_unknown_provider_is_model_unavailable(fake_provider):
    error = call_error(openai_target(fake_provider, provider="no-such-provider"))

    assert isinstance(error, ProviderNotConfigured)
    assert error.code == "model_unavailable"


HTTP_FAILURES = [
    # model, status, code, upstream status, retryable, retry_after
    ("fail-500", 502, "provider_error", 500, True, None),
    ("fail-503", 502, "provider_error", 503, True, None),
    ("fail-401", 502, "provider_auth_failed", 401, False, None),
    ("fail-403", 502, "provider_auth_failed", 403, False, None),
    ("fail-429", 503, "provider_busy", 429, True, 7),
    ("fail-400", 502, "provider_rejected_request", 400, False, None),
    ("fail-404", 502, "provider_rejected_request", 404, False, None),
    ("fail-422", 502, "provider_rejected_request", 422, False, None),
    ("fail-409", 502, "provider_error", 409, False, None),
]


@pytest.mark.parametrize(
    ("model", "status", "code", "upstream_status", "retryable", "retry_after"),
    HTTP_FAILURES,
)
def test_openai_http_error_mapping(
    fake_provider, model, status, code, upstream_status, retryable, retry_after
):
    target = openai_target(fake_provider, model=model)

    error = call_error(target)

    assert isinstance(error, ProviderHTTPError)
    assert error.status_code == status
    assert error.code == code
    assert error.upstream_status == upstream_status
    assert error.retryable is retryable
    assert error.retry_after == retry_after
    assert_public_message_hides_provider(error, target)


def test_invalid_key_is_auth_failure(fake_provider):
    target = openai_target(fake_provider, api_key="invalid-key")

    error = call_error(target)

    assert isinstance(error, ProviderHTTPError)
    assert error.code == "provider_auth_failed"
    assert "invalid-key" not in error.message
    assert "invalid-key" not in error.operator_detail


def test_operator_detail_keeps_provider_text_without_key(fake_provider):
    error = call_error(openai_target(fake_provider, model="fail-401"))

    assert SECRET_MARKER in error.operator_detail
    assert "fail-401" in error.operator_detail
    assert KEY not in error.operator_detail
    assert "[redacted]" in error.operator_detail


def test_timeout_maps_to_provider_timeout(fake_provider):
    target = openai_target(fake_provider, model="slow-2", timeout=0.5)

    error = call_error(target)

    assert isinstance(error, ProviderTimeout)
    assert error.status_code == 504
    assert error.code == "provider_timeout"
    assert error.retryable is True
    assert_public_message_hides_provider(error, target)


def test_slow_model_within_timeout_answers(fake_provider):
    result = call(openai_target(fake_provider, model="slow-0.2", timeout=5))

    assert result.content.startswith("Echo: ")


def test_connection_refused_maps_to_unreachable(closed_port):
    target = ProviderTarget(
        provider="openai_compatible",
        model="fake-gpt-small",
        api_key=KEY,
        api_base=f"http://127.0.0.1:{closed_port}/v1",
    )

    error = call_error(target)

    assert isinstance(error, ProviderUnreachable)
    assert error.status_code == 502
    assert error.code == "provider_unreachable"
    assert error.retryable is True
    assert_public_message_hides_provider(error, target)


def test_dropped_connection_maps_to_unreachable(fake_provider):
    error = call_error(openai_target(fake_provider, model="stream-fail-after-0"))

    assert isinstance(error, ProviderUnreachable)
    assert error.code == "provider_unreachable"


@pytest.mark.parametrize("model", ["malformed", "bad-shape"])
def test_unreadable_body_maps_to_bad_response(fake_provider, model):
    target = openai_target(fake_provider, model=model)

    error = call_error(target)

    assert isinstance(error, ProviderBadResponse)
    assert error.status_code == 502
    assert error.code == "provider_bad_response"
    assert error.retryable is False
    assert_public_message_hides_provider(error, target)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[]", "choices"),
        (b'{"choices": []}', "choices"),
        (b'{"choices": [{"finish_reason": "stop"}]}', "message"),
        (b'{"choices": [{"message": {"content": 7}}]}', "content"),
        (
            b'{"choices": [{"message": {"content": "x"}}],'
            b' "usage": {"prompt_tokens": "3"}}',
            "prompt_tokens",
        ),
        (
            b'{"choices": [{"message": {"content": "x"}}],'
            b' "usage": {"completion_tokens": -1}}',
            "completion_tokens",
        ),
        (b'{"choices": [{"message": {"tool_calls": "x"}}]}', "tool_calls"),
    ],
)
def test_parse_completion_rejects_wrong_shapes(body, expected):
    with pytest.raises(ProviderBadResponse) as caught:
        openai_compatible.parse_completion(body)

    assert expected in caught.value.operator_detail


def test_parse_completion_without_usage_counts_zero_tokens():
    body = b'{"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}'

    result = openai_compatible.parse_completion(body)

    assert result == ChatResult(
        content="hi",
        finish_reason="stop",
        tool_calls=None,
        prompt_tokens=0,
        completion_tokens=0,
    )


def test_provider_failure_logged_without_key_or_prompt(fake_provider, caplog):
    messages, marker = unique_messages("private prompt words")

    with caplog.at_level(logging.WARNING, logger="catalog.providers"):
        call_error(openai_target(fake_provider, model="fail-500"), messages)

    records = [r for r in caplog.records if r.name == "catalog.providers"]
    assert len(records) == 1
    logged = records[0].getMessage()
    assert records[0].levelno == logging.WARNING
    assert "fail-500" in logged
    assert "provider_error" in logged
    assert KEY not in logged
    assert "private prompt words" not in logged
    assert marker not in logged


def test_busy_error_renders_retry_after(fake_provider):
    error = call_error(openai_target(fake_provider, model="fail-429"))

    response = api_exception_handler(error, {})

    assert response.status_code == 503
    assert response.data == {"detail": error.message, "code": "provider_busy"}
    assert response.headers["Retry-After"] == "7"


def test_provider_error_is_api_error():
    assert issubclass(ProviderError, ApiError)


def test_target_repr_hides_key():
    target = ProviderTarget(provider="openai", model="gpt-4o-mini", api_key=KEY)

    assert KEY not in repr(target)


# The shared session


def test_calls_in_one_loop_share_a_session(fake_provider):
    target = openai_target(fake_provider)

    async def two_calls():
        await complete_chat(target, unique_messages()[0], {})
        first = await openai_compatible.provider_session()
        await complete_chat(target, unique_messages()[0], {})
        second = await openai_compatible.provider_session()
        return first, second

    first, second = asyncio.run(two_calls())

    assert first is second


def test_new_loop_gets_new_session(fake_provider):
    async def session_after_call():
        await complete_chat(openai_target(fake_provider), unique_messages()[0], {})
        return await openai_compatible.provider_session()

    first = asyncio.run(session_after_call())
    second = asyncio.run(session_after_call())

    assert first is not second
    assert first.closed
    assert second.closed


def test_many_concurrent_calls_share_the_pool(fake_provider):
    target = openai_target(fake_provider, model="slow-1")

    async def many_calls():
        return await asyncio.gather(
            *(complete_chat(target, unique_messages()[0], {}) for _ in range(250))
        )

    results = asyncio.run(many_calls())

    # aiohttp's default cap of 100 connections would hold the provider at
    # 100 requests in progress.
    assert fake_provider.peak_concurrency["slow-1"] > 100
    assert len(results) == 250
    assert all(result.content.startswith("Echo: ") for result in results)


# Providers served through litellm


def test_anthropic_call_through_litellm_returns_tokens(fake_provider):
    messages, marker = unique_messages()

    result = call(anthropic_target(fake_provider), messages, {"max_tokens": 100})

    assert result.content == f"Echo: Hello there provider {marker}"
    assert result.finish_reason == "stop"
    assert result.prompt_tokens == 4
    assert result.completion_tokens == 5
    request = received(fake_provider, marker)
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.body["model"] == "claude-fake"
    assert request.body["max_tokens"] == 100


def test_anthropic_tool_call_in_openai_shape(fake_provider):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}},
                },
            },
        }
    ]
    messages, _ = unique_messages("Please use a tool")

    result = call(anthropic_target(fake_provider), messages, {"tools": tools})

    assert result.finish_reason == "tool_calls"
    assert result.tool_calls[0]["type"] == "function"
    assert result.tool_calls[0]["function"]["name"] == "lookup"
    assert result.tool_calls[0]["function"]["arguments"] == '{"id": 1}'


@pytest.mark.parametrize(
    ("model", "error_class", "status", "code", "retry_after"),
    [
        ("fail-500", ProviderHTTPError, 502, "provider_error", None),
        ("fail-401", ProviderHTTPError, 502, "provider_auth_failed", None),
        ("fail-429", ProviderHTTPError, 503, "provider_busy", 7),
        ("fail-400", ProviderHTTPError, 502, "provider_rejected_request", None),
        ("malformed", ProviderBadResponse, 502, "provider_bad_response", None),
        ("bad-shape", ProviderBadResponse, 502, "provider_bad_response", None),
        ("stream-fail-after-0", ProviderUnreachable, 502, "provider_unreachable", None),
    ],
)
def test_anthropic_error_mapping(
    fake_provider, model, error_class, status, code, retry_after
):
    target = anthropic_target(fake_provider, model=model)

    error = call_error(target)

    assert type(error) is error_class
    assert error.status_code == status
    assert error.code == code
    assert error.retry_after == retry_after
    assert_public_message_hides_provider(error, target)
    assert KEY not in error.operator_detail


def test_anthropic_timeout(fake_provider):
    error = call_error(anthropic_target(fake_provider, model="slow-2", timeout=0.5))

    assert isinstance(error, ProviderTimeout)
    assert error.code == "provider_timeout"


def test_anthropic_connection_refused(closed_port):
    target = ProviderTarget(
        provider="anthropic",
        model="claude-fake",
        api_key=KEY,
        api_base=f"http://127.0.0.1:{closed_port}",
    )

    error = call_error(target)

    assert isinstance(error, ProviderUnreachable)
    assert error.code == "provider_unreachable"


def test_litellm_sends_no_retries(fake_provider):
    messages, marker = unique_messages()

    call_error(anthropic_target(fake_provider, model="fail-500"), messages)

    assert len([r for r in fake_provider.requests if marker in str(r.body)]) == 1


# Helpers


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("bad key sk-live-abcdefghijklmnop", "sk-live-abcdefghijklmnop"),
        ("header Bearer abc.def.ghijklmnop", "abc.def.ghijklmnop"),
        ("google AIzaSyA1234567890abcdefghijklmnop", "AIzaSyA1234567890"),
        ("aws AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP"),
        ("see https://host/path?key=secret123&x=1 now", "secret123"),
        ("token a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8", "a1b2c3d4e5f6a7b8c9d0"),
    ],
)
def test_redact_detail_removes_secrets(text, hidden):
    assert hidden not in redact_detail(text)


def test_redact_detail_removes_given_secret_and_truncates():
    detail = redact_detail("plainsecret " + "x " * 2000, secrets=("plainsecret",))

    assert "plainsecret" not in detail
    assert len(detail) <= 1003


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7), ("1.2", 2), ("0", 0), ("-3", 0), ("", None), ("soon", None)],
)
def test_parse_retry_after(header, seconds):
    assert parse_retry_after(header) == seconds


def test_parse_retry_after_http_date():
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    header = moment.strftime("%a, %d %b %Y %H:%M:%S GMT")

    assert 28 <= parse_retry_after(header) <= 31
