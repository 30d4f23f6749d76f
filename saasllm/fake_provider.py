"""A fake LLM provider for tests and the local demo, served over real HTTP.

It serves OpenAI's chat-completions API (``POST /v1/chat/completions``, and
Azure's ``POST /openai/deployments/{deployment}/chat/completions``) and
Anthropic's Messages API (``POST /v1/messages``).

Replies are deterministic. The content is "Echo: " followed by the text of
the last user message, cut to 200 characters. Token counts follow one rule.
Prompt tokens are the whitespace-separated words of every message's text
(and Anthropic's ``system``). Completion tokens are the words of the reply,
or of the JSON arguments of a tool call.

With ``tools`` sent and ``tool_choice`` not "none", the reply is a call of
the first tool (or of the tool that ``tool_choice`` names) when the last user
message contains "use a tool" or ``tool_choice`` requires a call. Its
arguments are example values built from the tool's JSON schema. A JSON
``response_format`` gets JSON content: ``{"echo": "<text>"}`` for
``json_object``, example values of the schema for ``json_schema``.

The requested model name chooses a behaviour, so tests running in parallel
share no state:

- ``fail-<status>`` (``fail-500``, ``fail-429``, ``fail-401``, ``fail-400``,
  any status from 400 to 599): that HTTP status with the API's error JSON,
  whose message contains the model name and "upstream-secret-text";
  ``fail-429`` also sends ``Retry-After: 7``.
- ``slow-<seconds>`` (``slow-2.5``): waits, then answers normally.
- ``malformed``: status 200 with a body that is not JSON.
- ``bad-shape``: status 200 with JSON that lacks ``choices`` (``content``
  for Anthropic).
- ``stream-<count>x<ms>`` (``stream-50x20``): the reply is the words
  ``w1`` to ``w<count>``; a stream sends one chunk per word, ``<ms>``
  milliseconds apart.
- ``stream-fail-after-<n>``: a stream sends ``n`` chunks (the words ``w1``
  on, 10 ms apart) and then breaks its connection; a request without
  ``stream`` gets its connection closed at once.
- ``stream-reset-after-<n>``: as ``stream-fail-after-<n>``, but the
  connection is reset (a TCP RST) rather than closed, as a load balancer or
  firewall that drops a connection mid-reply does.
- ``flaky-<n>x<status>`` with any suffix (``flaky-2x503-retry-test``): the
  first ``n`` requests naming exactly that model get ``<status>``, later
  ones succeed. Counts are kept per server.
- Any model name ending in ``-no-usage`` (``stream-5x10-no-usage``) behaves
  as the name without it, but its streams never report usage, as some
  OpenAI-compatible servers do.

Each stream's end is appended to ``FakeProviderServer.stream_endings`` as
``(model, chunks sent, finished)``; ``finished`` is False when the client
went away first.

A request whose API key is ``invalid-key``, or that sends no key, gets 401.

Run it for the demo with ``python -m saasllm.fake_provider --port 8100``;
it listens on loopback addresses only.
"""

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

from aiohttp import web
from multidict import CIMultiDict

logger = logging.getLogger(__name__)

SECRET_MARKER = "upstream-secret-text"
INVALID_KEY = "invalid-key"
RETRY_AFTER_SECONDS = 7
MAX_ECHO_CHARACTERS = 200
MAX_SLOW_SECONDS = 300.0
MAX_STREAM_CHUNKS = 10_000
MAX_STREAM_INTERVAL_MS = 10_000
BROKEN_STREAM_INTERVAL_SECONDS = 0.01

_FAIL = re.compile(r"^fail-(\d{3})$")
_SLOW = re.compile(r"^slow-(\d+(?:\.\d+)?)$")
_STREAM = re.compile(r"^stream-(\d+)x(\d+)$")
_STREAM_FAIL = re.compile(r"^stream-(fail|reset)-after-(\d+)$")
_FLAKY = re.compile(r"^flaky-(\d+)x(\d{3})(?:-.*)?$")
NO_USAGE_SUFFIX = "-no-usage"


class ReceivedRequest(NamedTuple):
    """A request the fake provider received.

    ``path`` includes the query string. ``headers`` are case-insensitive.
    ``body`` is the parsed JSON, or None when the body was not JSON. Fields
    can be read by attribute, position or name (``request["body"]``).
    """

    path: str
    headers: CIMultiDict
    body: object

    def __getitem__(self, key):
        if isinstance(key, str):
            return getattr(self, key)
        return tuple.__getitem__(self, key)


# Replies


@dataclass
class Reply:
    """One reply, independent of the API shape it is sent in."""

    text: str | None
    tool_name: str | None = None
    tool_arguments: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    pieces: list[str] = field(default_factory=list)
    interval: float = 0.0
    break_after: int | None = None
    # Whether the break is a TCP RST instead of a close.
    reset: bool = False


def content_text(content: object) -> str:
    """Return the text of a message content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def count_words(text: str) -> int:
    return len(text.split())


def example_value(schema: object) -> object:
    """Return a value that matches a simple JSON schema."""
    if not isinstance(schema, dict):
        return "example"
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((name for name in kind if name != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: example_value(value) for name, value in properties.items()}
    if kind == "array":
        return [example_value(schema["items"])] if "items" in schema else []
    return {"integer": 1, "number": 1, "boolean": True, "null": None}.get(
        kind, "example"
    )


def choose_tool(
    tools: list[tuple[str, dict]], tool_choice: str | None, user_text: str
) -> tuple[str, dict] | None:
    """Pick the tool to call; ``tool_choice`` is None, "none", "required" or a name."""
    if not tools or tool_choice == "none":
        return None
    if tool_choice not in (None, "required"):
        return next((tool for tool in tools if tool[0] == tool_choice), None)
    if tool_choice == "required" or "use a tool" in user_text.lower():
        return tools[0]
    return None


def json_reply(response_format: object, text: str) -> str | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return json.dumps({"echo": text})
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return json.dumps(example_value(schema))
    return None


def build_reply(
    *,
    model: str,
    prompt_texts: list[str],
    user_text: str,
    tools: list[tuple[str, dict]],
    tool_choice: str | None,
    response_format: object,
    max_tokens: object,
) -> Reply:
    """Build the deterministic reply of a normal (not failing) request."""
    prompt_tokens = sum(count_words(text) for text in prompt_texts)
    reply = Reply(text=None, prompt_tokens=prompt_tokens)

    if match := _STREAM.match(model):
        count = min(int(match[1]), MAX_STREAM_CHUNKS)
        reply.interval = min(int(match[2]), MAX_STREAM_INTERVAL_MS) / 1000
        reply.text = " ".join(f"w{number}" for number in range(1, count + 1))
    elif match := _STREAM_FAIL.match(model):
        reply.break_after = int(match[2])
        reply.reset = match[1] == "reset"
        count = min(reply.break_after + 5, MAX_STREAM_CHUNKS)
        reply.text = " ".join(f"w{number}" for number in range(1, count + 1))
        reply.interval = BROKEN_STREAM_INTERVAL_SECONDS

    tool = choose_tool(tools, tool_choice, user_text)
    if tool is not None:
        reply.tool_name = tool[0]
        reply.tool_arguments = json.dumps(example_value(tool[1]))
        reply.finish_reason = "tool_calls"
        reply.completion_tokens = count_words(reply.tool_arguments)
        reply.pieces = [reply.tool_arguments]
        return reply

    if reply.text is None:
        echo = "Echo: " + user_text[:MAX_ECHO_CHARACTERS]
        reply.text = json_reply(response_format, echo) or echo.strip()
    words = reply.text.split()
    if isinstance(max_tokens, int) and 0 < max_tokens < len(words):
        words = words[:max_tokens]
        reply.text = " ".join(words)
        reply.finish_reason = "length"
    reply.completion_tokens = len(words)
    reply.pieces = [
        word if position == len(words) - 1 else word + " "
        for position, word in enumerate(words)
    ]
    return reply


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


# OpenAI chat completions


def openai_tools(body: dict) -> tuple[list[tuple[str, dict]], str | None]:
    tools = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            tools.append((function["name"], function.get("parameters") or {}))
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name")
    elif choice == "auto":
        choice = None
    return tools, choice


def openai_reply(body: dict, model: str) -> Reply:
    messages = body.get("messages") or []
    tools, tool_choice = openai_tools(body)
    return build_reply(
        model=model,
        prompt_texts=[
            content_text(message.get("content"))
            for message in messages
            if isinstance(message, dict)
        ],
        user_text=last_user_text(messages),
        tools=tools,
        tool_choice=tool_choice,
        response_format=body.get("response_format"),
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
    )


def openai_usage(reply: Reply) -> dict:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def openai_tool_call(reply: Reply, call_id: str, index: int | None = None) -> dict:
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": reply.tool_name, "arguments": reply.tool_arguments},
    }
    return call if index is None else {"index": index, **call}


def openai_completion(reply: Reply, model: str) -> dict:
    message = {"role": "assistant", "content": reply.text}
    if reply.tool_name:
        message["tool_calls"] = [openai_tool_call(reply, new_id("call_fake_"))]
    return {
        "id": new_id("chatcmpl-fake-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": openai_usage(reply),
    }


def openai_error(status: int, message: str) -> web.Response:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_exceeded",
    }
    error = {
        "message": message,
        "type": kinds.get(status, "server_error" if status >= 500 else "api_error"),
        "param": None,
        "code": None,
    }
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 429 else None
    return web.json_response({"error": error}, status=status, headers=headers)


async def stream_openai(
    request: web.Request, body: dict, reply: Reply, model: str
) -> web.StreamResponse:
    """Send the reply as chat.completion.chunk events, one per word."""
    include_usage = bool(
        (body.get("stream_options") or {}).get("include_usage")
    ) and not model.endswith(NO_USAGE_SUFFIX)
    completion_id = new_id("chatcmpl-fake-")
    created = int(time.time())
    call_id = new_id("call_fake_")

    def chunk(position: int, piece: str) -> dict:
        delta = {"role": "assistant"} if position == 0 else {}
        if reply.tool_name:
            delta["tool_calls"] = [openai_tool_call(reply, call_id, index=0)]
        else:
            delta["content"] = piece
        last = position == len(reply.pieces) - 1
        event = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason if last else None,
                }
            ],
        }
        if include_usage:
            event["usage"] = None
        return event

    response = await start_event_stream(request)
    if not await send_pieces(request, response, reply, chunk, event_name=None):
        return response
    if include_usage:
        usage_chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": openai_usage(reply),
        }
        await send_event(response, usage_chunk)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def openai_chat(request: web.Request) -> web.StreamResponse:
    deployment = request.match_info.get("deployment")
    if deployment is not None:
        key = request.headers.get("api-key", "")
    else:
        key = bearer_key(request.headers.get("Authorization", ""))
    body = request.get(BODY_KEY)
    if not isinstance(body, dict):
        return openai_error(400, "The request body must be a JSON object.")
    model = deployment or str(body.get("model") or "")
    behaviour = model.removesuffix(NO_USAGE_SUFFIX)

    if not key or key == INVALID_KEY:
        return openai_error(401, unauthorized_message(key))
    failure = await failure_or_delay(request, behaviour)
    if failure is not None:
        return openai_error(failure, failure_message(failure, model, key))
    if behaviour == "malformed":
        return malformed_response()
    if behaviour == "bad-shape":
        return web.json_response({"id": new_id("chatcmpl-fake-"), "model": model})

    reply = openai_reply(body, behaviour)
    if body.get("stream"):
        return await stream_openai(request, body, reply, model)
    if reply.break_after is not None:
        return break_connection(request, reset=reply.reset)
    return web.json_response(openai_completion(reply, model))


# Anthropic Messages


def anthropic_tools(body: dict) -> tuple[list[tuple[str, dict]], str | None]:
    tools = [
        (tool["name"], tool.get("input_schema") or {})
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and isinstance(tool.get("name"), str)
    ]
    choice = body.get("tool_choice") or {}
    kind = choice.get("type") if isinstance(choice, dict) else None
    names = {"none": "none", "any": "required", "tool": choice.get("name")}
    return tools, names.get(kind) if isinstance(choice, dict) else None


def anthropic_reply(body: dict, model: str) -> Reply:
    messages = body.get("messages") or []
    prompt_texts = [
        content_text(message.get("content"))
        for message in messages
        if isinstance(message, dict)
    ]
    prompt_texts.append(content_text(body.get("system")))
    tools, tool_choice = anthropic_tools(body)
    reply = build_reply(
        model=model,
        prompt_texts=prompt_texts,
        user_text=last_user_text(messages),
        tools=tools,
        tool_choice=tool_choice,
        response_format=None,
        max_tokens=body.get("max_tokens"),
    )
    reply.finish_reason = {"stop": "end_turn", "length": "max_tokens"}.get(
        reply.finish_reason, "tool_use"
    )
    return reply


def anthropic_message(reply: Reply, model: str) -> dict:
    if reply.tool_name:
        block = {
            "type": "tool_use",
            "id": new_id("toolu_fake_"),
            "name": reply.tool_name,
            "input": json.loads(reply.tool_arguments),
        }
    else:
        block = {"type": "text", "text": reply.text}
    return {
        "id": new_id("msg_fake_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": reply.finish_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.prompt_tokens,
            "output_tokens": reply.completion_tokens,
        },
    }


def anthropic_error(status: int, message: str) -> web.Response:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }
    error = {"type": kinds.get(status, "api_error"), "message": message}
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 429 else None
    return web.json_response(
        {"type": "error", "error": error}, status=status, headers=headers
    )


async def stream_anthropic(
    request: web.Request, reply: Reply, model: str
) -> web.StreamResponse:
    """Send the reply as Anthropic's message events, one delta per word."""
    message = anthropic_message(reply, model)
    block = message["content"][0]
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": reply.prompt_tokens, "output_tokens": 0}
    if block["type"] == "tool_use":
        block = {**block, "input": {}}
    else:
        block = {"type": "text", "text": ""}

    def delta(position: int, piece: str) -> dict:
        if reply.tool_name:
            change = {"type": "input_json_delta", "partial_json": piece}
        else:
            change = {"type": "text_delta", "text": piece}
        return {"type": "content_block_delta", "index": 0, "delta": change}

    response = await start_event_stream(request)
    await send_event(response, {"type": "message_start", "message": start}, True)
    await send_event(
        response,
        {"type": "content_block_start", "index": 0, "content_block": block},
        True,
    )
    if not await send_pieces(request, response, reply, delta, event_name=True):
        return response
    await send_event(response, {"type": "content_block_stop", "index": 0}, True)
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": reply.finish_reason, "stop_sequence": None},
        "usage": {"output_tokens": reply.completion_tokens},
    }
    await send_event(response, message_delta, True)
    await send_event(response, {"type": "message_stop"}, True)
    await response.write_eof()
    return response


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    key = request.headers.get("x-api-key", "")
    body = request.get(BODY_KEY)
    if not isinstance(body, dict):
        return anthropic_error(400, "The request body must be a JSON object.")
    model = str(body.get("model") or "")

    if not key or key == INVALID_KEY:
        return anthropic_error(401, unauthorized_message(key))
    failure = await failure_or_delay(request, model)
    if failure is not None:
        return anthropic_error(failure, failure_message(failure, model, key))
    if model == "malformed":
        return malformed_response()
    if model == "bad-shape":
        return web.json_response({"id": new_id("msg_fake_"), "type": "message"})

    reply = anthropic_reply(body, model)
    if body.get("stream"):
        return await stream_anthropic(request, reply, model)
    if reply.break_after is not None:
        return break_connection(request, reset=reply.reset)
    return web.json_response(anthropic_message(reply, model))


# Shared behaviour


def bearer_key(authorization: str) -> str:
    scheme, _, key = authorization.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def unauthorized_message(key: str) -> str:
    # Real providers echo part of a rejected key; this one echoes all of it
    # so tests can prove the gateway never passes it on.
    if not key:
        return f"No API key provided. {SECRET_MARKER}"
    return f"Incorrect API key provided: {key}. {SECRET_MARKER}"


def failure_message(status: int, model: str, key: str) -> str:
    message = f"The fake provider failed model {model} with status {status}"
    if status in (401, 403):
        message += f" for API key {key}"
    return f"{message}: {SECRET_MARKER}."


async def failure_or_delay(request: web.Request, model: str) -> int | None:
    """Return the error status of a ``fail-*`` or ``flaky-*`` model, or sleep for ``slow-*``."""
    if (match := _FAIL.match(model)) and 400 <= int(match[1]) <= 599:
        return int(match[1])
    if (match := _FLAKY.match(model)) and 400 <= int(match[2]) <= 599:
        counts = request.app[FLAKY_COUNTS_KEY]
        counts[model] = counts.get(model, 0) + 1
        if counts[model] <= int(match[1]):
            return int(match[2])
    if match := _SLOW.match(model):
        await asyncio.sleep(min(float(match[1]), MAX_SLOW_SECONDS))
    return None


def malformed_response() -> web.Response:
    return web.Response(
        body=b"<html>upstream proxy error</html>", content_type="application/json"
    )


def break_connection(request: web.Request, *, reset: bool = False) -> web.Response:
    """Drop the request's connection; with ``reset``, by a TCP RST."""
    transport = request.transport
    if transport is not None:
        if reset:
            # A zero linger time makes the close send RST instead of FIN.
            transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        transport.abort()
    return web.Response(status=500)


async def start_event_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    return response


async def send_event(
    response: web.StreamResponse, event: dict, named: bool = False
) -> None:
    name = f"event: {event['type']}\n" if named else ""
    await response.write(f"{name}data: {json.dumps(event)}\n\n".encode())


async def send_pieces(request, response, reply: Reply, make_event, event_name) -> bool:
    """Send one event per reply piece; return False if the stream was broken."""
    endings = request.app[STREAM_ENDINGS_KEY]
    model = request.get(BODY_KEY, {}).get("model") or request.match_info.get(
        "deployment"
    )
    sent = 0
    try:
        for position, piece in enumerate(reply.pieces):
            if reply.break_after is not None and position >= reply.break_after:
                break
            if position and reply.interval:
                await asyncio.sleep(reply.interval)
            await send_event(response, make_event(position, piece), bool(event_name))
            sent += 1
    except ConnectionError:
        # The client went away.
        endings.append((model, sent, False))
        return False
    except asyncio.CancelledError:
        endings.append((model, sent, False))
        raise
    endings.append((model, sent, reply.break_after is None))
    if reply.break_after is None:
        return True
    # A client reading a connection that fails discards what it has not read
    # yet, so the break waits until the chunks sent have been read.
    await asyncio.sleep(BROKEN_STREAM_INTERVAL_SECONDS * 4)
    break_connection(request, reset=reply.reset)
    return False


# Server

BODY_KEY = web.RequestKey("body", object)
REQUESTS_KEY = web.AppKey("requests", list | None)
FLAKY_COUNTS_KEY = web.AppKey("flaky_counts", dict)
STREAM_ENDINGS_KEY = web.AppKey("stream_endings", list)
IN_FLIGHT_KEY = web.AppKey("in_flight", dict)
PEAK_CONCURRENCY_KEY = web.AppKey("peak_concurrency", dict)


@web.middleware
async def record_requests(request: web.Request, handler) -> web.StreamResponse:
    """Parse the JSON body once, record the request, and log one line for it."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    request[BODY_KEY] = body
    requests = request.app[REQUESTS_KEY]
    if requests is not None:
        requests.append(
            ReceivedRequest(request.path_qs, CIMultiDict(request.headers), body)
        )

    model = request.match_info.get("deployment") or (
        body.get("model") if isinstance(body, dict) else None
    )
    in_flight = request.app[IN_FLIGHT_KEY]
    peaks = request.app[PEAK_CONCURRENCY_KEY]
    in_flight[model] = in_flight.get(model, 0) + 1
    peaks[model] = max(peaks.get(model, 0), in_flight[model])
    started = time.monotonic()
    try:
        response = await handler(request)
    finally:
        in_flight[model] -= 1
    logger.info(
        "%s %s model=%s status=%s %.0fms",
        request.method,
        request.path,
        model,
        response.status,
        (time.monotonic() - started) * 1000,
    )
    return response


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(
    requests: list | None,
    stream_endings: list | None = None,
    peak_concurrency: dict | None = None,
) -> web.Application:
    """Build the app; it appends each request to ``requests`` unless it is None."""
    app = web.Application(middlewares=[record_requests])
    app[REQUESTS_KEY] = requests
    app[FLAKY_COUNTS_KEY] = {}
    app[STREAM_ENDINGS_KEY] = stream_endings if stream_endings is not None else []
    app[IN_FLIGHT_KEY] = {}
    app[PEAK_CONCURRENCY_KEY] = peak_concurrency if peak_concurrency is not None else {}
    app.router.add_post("/v1/chat/completions", openai_chat)
    app.router.add_post("/chat/completions", openai_chat)
    app.router.add_post(
        "/openai/deployments/{deployment}/chat/completions", openai_chat
    )
    app.router.add_post("/v1/messages", anthropic_messages)
    app.router.add_get("/health", health)
    return app


class FakeProviderServer:
    """The fake provider on a background thread with its own event loop.

    ``port=0`` picks a free port, and ``base_url`` contains it after
    ``start()``. Point an OpenAI-compatible credential at
    ``openai_base_url`` and an Anthropic one at ``anthropic_base_url``:
    litellm appends ``/v1/messages`` to an Anthropic ``api_base``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.requests: list[ReceivedRequest] = []
        self.stream_endings: list[tuple[str, int, bool]] = []
        # The maximum number of requests for each model in progress at once.
        self.peak_concurrency: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    def start(self) -> None:
        """Start serving and return once the port is listening."""
        self._thread = threading.Thread(
            target=self._serve, name="fake-provider", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise RuntimeError("The fake provider failed to start.") from (
                self._startup_error
            )

    def stop(self) -> None:
        """Stop serving, cancel requests in flight, and join the thread."""
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already stopped
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        runner = web.AppRunner(
            create_app(self.requests, self.stream_endings, self.peak_concurrency),
            access_log=None,
            shutdown_timeout=0.5,
        )
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return

        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(_shut_down(runner))
            loop.close()


async def _shut_down(runner: web.AppRunner) -> None:
    await runner.cleanup()
    # Handlers still sleeping (slow-* models) outlive the cleanup's grace
    # period; cancel them so the loop closes with no pending task.
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def loopback_host(value: str) -> str:
    """Accept "localhost" or a loopback IP address for --host; reject others."""
    if value == "localhost":
        return value
    try:
        is_loopback = ipaddress.ip_address(value).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a loopback address; use 127.0.0.1, ::1 or localhost."
        )
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m saasllm.fake_provider",
        description="Serve a fake OpenAI and Anthropic provider on loopback.",
    )
    parser.add_argument(
        "--host",
        type=loopback_host,
        default="127.0.0.1",
        help="Loopback address to listen on (default 127.0.0.1).",
    )
    parser.add_argument(
        "--port", type=int, default=8100, help="TCP port to listen on (default 8100)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    # The demo runs for hours, so it records no requests; only tests read them.
    app = create_app(None)
    logger.info("Fake provider listening on http://%s:%s", args.host, args.port)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
