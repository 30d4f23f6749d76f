"""The fake provider itself: the API shapes and behaviours tests rely on."""

import argparse
import asyncio
import json
import time
import uuid

import aiohttp
import pytest

from saasllm.fake_provider import FakeProviderServer, loopback_host

KEY = "sk-fake-provider-test-key"


async def post(url, body, headers=None):
    """POST a JSON body; return the status, headers and raw body."""
    headers = {"Authorization": f"Bearer {KEY}", **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        return response.status, response.headers, await response.read()


def post_openai(fake_provider, body, **headers):
    url = fake_provider.openai_base_url + "/chat/completions"
    return asyncio.run(post(url, body, headers))


def post_anthropic(fake_provider, body, key=KEY):
    url = fake_provider.anthropic_base_url + "/v1/messages"
    return asyncio.run(post(url, body, {"x-api-key": key, "Authorization": ""}))


def sse_events(raw: bytes) -> list:
    """Return the data of each server-sent event, with "[DONE]" kept as text."""
    events = []
    for line in raw.decode().splitlines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def user(text):
    return [{"role": "user", "content": text}]


def test_chat_completion_shape_and_usage(fake_provider):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one two three"},
    ]

    status, _, raw = post_openai(fake_provider, {"model": "m1", "messages": messages})

    body = json.loads(raw)
    assert status == 200
    assert body["id"].startswith("chatcmpl-fake-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "m1"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Echo: one two three",
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 4,
        "total_tokens": 9,
    }


def test_echo_is_cut_to_200_characters(fake_provider):
    _, _, raw = post_openai(fake_provider, {"model": "m", "messages": user("x" * 500)})

    content = json.loads(raw)["choices"][0]["message"]["content"]
    assert content == "Echo: " + "x" * 200


def test_max_tokens_cuts_reply_with_length(fake_provider):
    body = {"model": "m", "max_tokens": 2, "messages": user("a b c d")}

    _, _, raw = post_openai(fake_provider, body)

    choice = json.loads(raw)["choices"][0]
    assert choice["message"]["content"] == "Echo: a"
    assert choice["finish_reason"] == "length"


def test_json_schema_response_format(fake_provider):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "tags": {"type": "array"}},
    }
    body = {
        "model": "m",
        "messages": user("hi"),
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": schema},
        },
    }

    _, _, raw = post_openai(fake_provider, body)

    content = json.loads(raw)["choices"][0]["message"]["content"]
    assert json.loads(content) == {"name": "example", "tags": []}


def test_tool_choice_none_answers_with_text(fake_provider):
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    body = {
        "model": "m",
        "messages": user("use a tool"),
        "tools": [tool],
        "tool_choice": "none",
    }

    _, _, raw = post_openai(fake_provider, body)

    assert json.loads(raw)["choices"][0]["message"]["content"] == "Echo: use a tool"


def test_fail_429_sends_retry_after_and_marker(fake_provider):
    status, headers, raw = post_openai(
        fake_provider, {"model": "fail-429", "messages": []}
    )

    assert status == 429
    assert headers["Retry-After"] == "7"
    message = json.loads(raw)["error"]["message"]
    assert "fail-429" in message
    assert "upstream-secret-text" in message


@pytest.mark.parametrize("authorization", ["", "Bearer invalid-key"])
def test_missing_or_invalid_key_is_401(fake_provider, authorization):
    status, _, _ = post_openai(
        fake_provider, {"model": "m", "messages": []}, Authorization=authorization
    )

    assert status == 401


def test_malformed_body_is_not_json(fake_provider):
    status, _, raw = post_openai(fake_provider, {"model": "malformed", "messages": []})

    assert status == 200
    with pytest.raises(ValueError):
        json.loads(raw)


def test_stream_sends_one_chunk_per_word_then_usage(fake_provider):
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": user("alpha beta"),
    }

    status, headers, raw = post_openai(fake_provider, body)

    events = sse_events(raw)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    chunks = [event for event in events[:-1] if event["choices"]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == (
        "Echo: alpha beta"
    )
    assert len(chunks) == 3
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 3,
        "total_tokens": 5,
    }
    assert events[-1] == "[DONE]"


def test_stream_count_and_interval(fake_provider):
    body = {"model": "stream-5x50", "stream": True, "messages": user("hi")}
    started = time.monotonic()

    _, _, raw = post_openai(fake_provider, body)

    elapsed = time.monotonic() - started
    events = sse_events(raw)
    assert [e["choices"][0]["delta"]["content"] for e in events[:-1]] == [
        "w1 ",
        "w2 ",
        "w3 ",
        "w4 ",
        "w5",
    ]
    assert events[-1] == "[DONE]"
    assert elapsed >= 0.2


def test_stream_fail_after_breaks_connection(fake_provider):
    body = {"model": "stream-fail-after-2", "stream": True, "messages": user("a b c")}
    url = fake_provider.openai_base_url + "/chat/completions"

    async def read_stream():
        received = b""
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {KEY}"}
            async with session.post(url, json=body, headers=headers) as response:
                with pytest.raises(aiohttp.ClientPayloadError):
                    async for chunk in response.content.iter_any():
                        received += chunk
        return received

    received = asyncio.run(read_stream())

    events = sse_events(received)
    assert len(events) == 2
    assert "[DONE]" not in events


def test_anthropic_message_shape(fake_provider):
    body = {
        "model": "claude-fake",
        "max_tokens": 50,
        "system": "Be brief.",
        "messages": user("one two"),
    }

    status, _, raw = post_anthropic(fake_provider, body)

    message = json.loads(raw)
    assert status == 200
    assert message["type"] == "message"
    assert message["content"] == [{"type": "text", "text": "Echo: one two"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {"input_tokens": 4, "output_tokens": 3}


def test_anthropic_checks_x_api_key(fake_provider):
    body = {"model": "claude-fake", "max_tokens": 5, "messages": user("hi")}

    status, _, raw = post_anthropic(fake_provider, body, key="invalid-key")

    assert status == 401
    assert json.loads(raw)["error"]["type"] == "authentication_error"


def test_anthropic_stream_events(fake_provider):
    body = {
        "model": "claude-fake",
        "max_tokens": 50,
        "stream": True,
        "messages": user("hi"),
    }

    _, _, raw = post_anthropic(fake_provider, body)

    types = [event["type"] for event in sse_events(raw)]
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_requests_are_recorded(fake_provider):
    marker = uuid.uuid4().hex

    post_openai(fake_provider, {"model": "m", "messages": user(marker)})

    request = next(r for r in fake_provider.requests if marker in str(r.body))
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request["body"] == request.body
    path, headers, body = request
    assert body["messages"] == user(marker)


def test_server_on_own_port_starts_and_stops():
    server = FakeProviderServer()
    server.start()
    port = server.port

    status, _, _ = asyncio.run(
        post(server.openai_base_url + "/chat/completions", {"model": "m"})
    )
    server.stop()

    assert port != 0
    assert status == 200
    assert len(server.requests) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_cli_accepts_loopback_hosts(host):
    assert loopback_host(host) == host


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_cli_rejects_other_hosts(host):
    with pytest.raises(argparse.ArgumentTypeError):
        loopback_host(host)
