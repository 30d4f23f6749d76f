"""Native async client for providers that speak OpenAI's chat-completions API.

Every call in a process goes through one shared ``aiohttp.ClientSession`` per
running event loop, so connections to a provider are kept alive and reused.
The session is created on first use, never at import.
"""

import asyncio
import json
import threading
import weakref
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
from django.conf import settings

from catalog.models import Provider
from catalog.providers.base import ChatResult, ProviderTarget, StreamChunk
from catalog.providers.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderHTTPError,
    ProviderNotConfigured,
    ProviderTimeout,
    ProviderUnreachable,
    parse_retry_after,
    redact_detail,
)
from catalog.providers.sse import SSEDecoder

DEFAULT_API_BASES = {
    Provider.OPENAI: "https://api.openai.com/v1",
    Provider.GROQ: "https://api.groq.com/openai/v1",
    Provider.TOGETHER: "https://api.together.xyz/v1",
    Provider.DEEPSEEK: "https://api.deepseek.com",
    Provider.MISTRAL: "https://api.mistral.ai/v1",
    Provider.FIREWORKS: "https://api.fireworks.ai/inference/v1",
}
OPENAI_COMPATIBLE_PROVIDERS = frozenset(
    [*DEFAULT_API_BASES, Provider.AZURE, Provider.OPENAI_COMPATIBLE]
)
# Azure OpenAI's GA data-plane version, used when the credential sets none.
DEFAULT_AZURE_API_VERSION = "2024-10-21"
# aiohttp allows 100 connections by default; the gateway keeps far more
# provider calls in flight at once, and each waits on its own connection.
DEFAULT_MAX_CONNECTIONS = 2000
# A chat completion is a few kilobytes; a body past this is a broken provider.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
# One event of a stream carries a few tokens; a line past this is broken.
MAX_STREAM_EVENT_BYTES = 4 * 1024 * 1024
# Fields of a streamed delta that reach teams. Anything else a provider adds
# stays behind, so provider-specific data never leaks into a relayed chunk.
RELAYED_DELTA_FIELDS = (
    "role",
    "content",
    "tool_calls",
    "function_call",
    "refusal",
    "reasoning_content",
)

_sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_sessions_lock = threading.Lock()


async def provider_session() -> aiohttp.ClientSession:
    """Return the running event loop's shared session, creating it on first use."""
    loop = asyncio.get_running_loop()
    with _sessions_lock:
        entry = _sessions.get(loop)
        if entry is not None and not entry[0].closed:
            return entry[0]
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=getattr(
                    settings, "PROVIDER_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS
                ),
                limit_per_host=0,
            ),
            # Each call sets its own deadline with asyncio.timeout.
            timeout=aiohttp.ClientTimeout(total=None),
        )
        closer = _close_at_loop_shutdown(session)
        _sessions[loop] = (session, closer)
    # asyncio.run, asgiref and uvicorn call loop.shutdown_asyncgens() before
    # they close a loop. That runs the generator's finally block while the
    # loop still runs, so the session and its sockets close cleanly. The
    # registry keeps the generator alive because the loop only keeps a weak
    # reference to it.
    await closer.__anext__()
    return session


async def _close_at_loop_shutdown(
    session: aiohttp.ClientSession,
) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await session.close()


async def complete_openai_compatible(
    target: ProviderTarget, messages: list[dict], params: dict
) -> ChatResult:
    """Send one chat completion and return its result or raise a ProviderError."""
    url, headers, body = build_request(target, messages, params)
    session = await provider_session()
    try:
        async with (
            asyncio.timeout(target.timeout),
            session.post(
                url, data=json.dumps(body), headers=headers, allow_redirects=False
            ) as response,
        ):
            payload = await _read_body(response)
    except TimeoutError:
        raise ProviderTimeout(
            operator_detail=f"No complete response within {target.timeout} seconds."
        ) from None
    except aiohttp.ClientError as exc:
        raise client_error(exc) from None

    if not 200 <= response.status < 300:
        raise _http_error(response, payload, target)
    return parse_completion(payload)


async def stream_openai_compatible(
    target: ProviderTarget, messages: list[dict], params: dict
) -> AsyncIterator[StreamChunk]:
    """Stream one chat completion as StreamChunks, asking the provider for usage.

    ``target.timeout`` bounds the wait for the response headers and then
    each wait for more data, not the whole stream, so a long reply that
    keeps arriving is never cut. The provider's connection is closed
    whenever the stream ends early: an error, a timeout, or the consumer
    closing or cancelling the iterator.
    """
    stream_params = {
        **params,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    url, headers, body = build_request(target, messages, stream_params)
    headers["Accept"] = "text/event-stream"
    session = await provider_session()
    try:
        async with asyncio.timeout(target.timeout):
            response = await session.post(
                url, data=json.dumps(body), headers=headers, allow_redirects=False
            )
    except TimeoutError:
        raise ProviderTimeout(
            operator_detail=f"No response within {target.timeout} seconds."
        ) from None
    except aiohttp.ClientError as exc:
        raise client_error(exc) from None

    finished = False
    try:
        if not 200 <= response.status < 300:
            payload = await _read_with_timeout(_read_body(response), target)
            raise _http_error(response, payload, target)
        if response.content_type != "text/event-stream":
            # Some compatible servers ignore "stream" and send one completion.
            payload = await _read_with_timeout(_read_body(response), target)
            yield completion_as_chunk(parse_completion(payload))
        else:
            async for chunk in _relay_events(response, target):
                yield chunk
        finished = True
    finally:
        if finished:
            response.release()
        else:
            response.close()


async def _relay_events(
    response: aiohttp.ClientResponse, target: ProviderTarget
) -> AsyncIterator[StreamChunk]:
    decoder = SSEDecoder(MAX_STREAM_EVENT_BYTES)
    finish_seen = False
    chunks_seen = 0
    while True:
        data = await _read_with_timeout(response.content.readany(), target)
        try:
            events = decoder.feed(data) if data else decoder.close()
        except ValueError as exc:
            raise ProviderBadResponse(operator_detail=str(exc)) from None
        for event in events:
            if event.data.strip() == "[DONE]":
                return
            chunk = parse_stream_event(event.event, event.data, target)
            if chunk is None:
                continue
            finish_seen = finish_seen or chunk.finish_reason is not None
            chunks_seen += 1
            yield chunk
        if not data:
            break
    if not chunks_seen:
        raise ProviderBadResponse(
            operator_detail="The event stream ended without a chunk."
        )
    if not finish_seen:
        raise ProviderUnreachable(
            operator_detail="The stream ended before the completion finished."
        )


async def _read_with_timeout(awaitable, target: ProviderTarget):
    try:
        async with asyncio.timeout(target.timeout):
            return await awaitable
    except TimeoutError:
        raise ProviderTimeout(
            operator_detail=f"No stream data within {target.timeout} seconds."
        ) from None
    except aiohttp.ClientError as exc:
        raise client_error(exc) from None


def client_error(exc: aiohttp.ClientError) -> ProviderError:
    """Map an aiohttp client exception to the ProviderError teams see."""
    detail = redact_detail(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return ProviderNotConfigured(
            operator_detail=redact_detail(f"Invalid API base URL: {exc}")
        )
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return ProviderUnreachable(operator_detail=detail)
    return ProviderBadResponse(operator_detail=detail)


def _http_error(
    response: aiohttp.ClientResponse, payload: bytes, target: ProviderTarget
) -> ProviderHTTPError:
    return ProviderHTTPError(
        response.status,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        operator_detail=error_detail(payload, secrets=(target.api_key,)),
    )


def parse_stream_event(
    event_name: str | None, data: str, target: ProviderTarget
) -> StreamChunk | None:
    """Map one chat.completion.chunk event to a StreamChunk; None when it is empty.

    An ``error`` event, or a chunk with an ``error`` member, raises the
    provider's error, because providers report failures mid-stream that way.
    """
    try:
        payload = json.loads(data)
    except ValueError:
        raise ProviderBadResponse(
            operator_detail=f"A stream event ({len(data)} characters) is not JSON."
        ) from None
    if not isinstance(payload, dict):
        raise _bad_shape("an object in each stream event")
    if event_name == "error" or payload.get("error"):
        raise ProviderError(
            operator_detail=error_detail(data.encode(), secrets=(target.api_key,))
        )

    usage = payload.get("usage")
    tokens = _usage_tokens(usage) if usage is not None else None
    choices = payload.get("choices") or []
    if not isinstance(choices, list):
        raise _bad_shape("a 'choices' list in each stream event")
    delta, finish_reason = {}, None
    if choices:
        choice = choices[0]
        raw_delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(raw_delta, dict | None):
            raise _bad_shape("an object 'choices[0].delta'")
        delta = relayed_delta(raw_delta or {})
        finish_reason = choice.get("finish_reason")
        if finish_reason is not None and not isinstance(finish_reason, str):
            raise _bad_shape("a string 'finish_reason'")
    if not delta and finish_reason is None and tokens is None:
        return None
    return StreamChunk(delta=delta, finish_reason=finish_reason, usage=tokens)


def completion_as_chunk(result: ChatResult) -> StreamChunk:
    """Return a whole completion as the one chunk of a stream."""
    delta = {"role": "assistant"}
    if result.content is not None:
        delta["content"] = result.content
    if result.tool_calls:
        delta["tool_calls"] = [
            {"index": index, **call} for index, call in enumerate(result.tool_calls)
        ]
    reported = result.prompt_tokens or result.completion_tokens
    return StreamChunk(
        delta=delta,
        finish_reason=result.finish_reason or "stop",
        usage=(result.prompt_tokens, result.completion_tokens) if reported else None,
    )


def relayed_delta(delta: dict) -> dict:
    """Return the fields of a streamed delta that the gateway relays."""
    relayed = {
        name: delta[name]
        for name in RELAYED_DELTA_FIELDS
        if delta.get(name) is not None
    }
    content = relayed.get("content")
    if content is not None and not isinstance(content, str):
        relayed["content"] = _message_content(content)
    tool_calls = relayed.get("tool_calls")
    if tool_calls is not None and not (
        isinstance(tool_calls, list)
        and all(isinstance(call, dict) for call in tool_calls)
    ):
        raise _bad_shape("a list of objects in 'delta.tool_calls'")
    return relayed


def build_request(
    target: ProviderTarget, messages: list[dict], params: dict
) -> tuple[str, dict, dict]:
    """Return the URL, headers and JSON body of a chat-completions request."""
    base = (target.api_base or DEFAULT_API_BASES.get(target.provider, "")).rstrip("/")
    if not base:
        raise ProviderNotConfigured(
            operator_detail=f"Provider {target.provider} requires an API base URL "
            "on its credential."
        )

    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if target.provider == Provider.AZURE:
        version = target.api_version or DEFAULT_AZURE_API_VERSION
        url = (
            f"{base}/openai/deployments/{quote(target.model, safe='')}"
            f"/chat/completions?api-version={quote(version, safe='')}"
        )
        headers["api-key"] = target.api_key
        # Azure takes the deployment from the URL, not the body.
        return url, headers, {"messages": messages, **params}

    headers["Authorization"] = f"Bearer {target.api_key}"
    return (
        f"{base}/chat/completions",
        headers,
        {"model": target.model, "messages": messages, **params},
    )


async def _read_body(response: aiohttp.ClientResponse) -> bytes:
    chunks = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ProviderBadResponse(
                operator_detail=f"Response body exceeds {MAX_RESPONSE_BYTES} bytes."
            )
        chunks.append(chunk)
    return b"".join(chunks)


def error_detail(payload: bytes, *, secrets: tuple[str, ...] = ()) -> str:
    """Extract the provider's error message from an error body, redacted."""
    text = payload.decode("utf-8", errors="replace")
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        text = error["message"]
    elif isinstance(error, str):
        text = error
    return redact_detail(text, secrets=secrets)


def parse_completion(payload: bytes) -> ChatResult:
    """Map an OpenAI chat-completion body to a ChatResult.

    Raises ProviderBadResponse when the body is not JSON or lacks
    ``choices[0].message``, or when a field has the wrong type.
    """
    try:
        data = json.loads(payload)
    except ValueError:
        raise ProviderBadResponse(
            operator_detail=f"The response body ({len(payload)} bytes) is not JSON."
        ) from None

    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise _bad_shape("a non-empty 'choices' list")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise _bad_shape("'choices[0].message'")

    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise _bad_shape("a string 'finish_reason'")
    prompt_tokens, completion_tokens = _usage_tokens(data.get("usage"))
    return ChatResult(
        content=_message_content(message.get("content")),
        finish_reason=finish_reason,
        tool_calls=_tool_calls(message.get("tool_calls")),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def _message_content(content: object) -> str | None:
    if content is None or isinstance(content, str):
        return content
    # Some compatible servers send content as a list of typed parts.
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return "".join(
            part["text"]
            for part in content
            if part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    raise _bad_shape("a string 'message.content'")


def _tool_calls(tool_calls: object) -> list[dict] | None:
    if not tool_calls:
        return None
    if not isinstance(tool_calls, list) or not all(
        isinstance(call, dict) for call in tool_calls
    ):
        raise _bad_shape("a list of objects in 'message.tool_calls'")
    return tool_calls


def _usage_tokens(usage: object) -> tuple[int, int]:
    if usage is None:
        return 0, 0
    if not isinstance(usage, dict):
        raise _bad_shape("an object 'usage'")
    counts = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name, 0)
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _bad_shape(f"a non-negative integer 'usage.{name}'")
        counts.append(value)
    return counts[0], counts[1]


def _bad_shape(expected: str) -> ProviderError:
    return ProviderBadResponse(
        operator_detail=f"The response JSON does not contain {expected}."
    )
