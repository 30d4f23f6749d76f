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
from catalog.providers.base import ChatResult, ProviderTarget
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
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise ProviderNotConfigured(
            operator_detail=redact_detail(f"Invalid API base URL: {exc}")
        ) from None
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        raise ProviderUnreachable(
            operator_detail=redact_detail(f"{type(exc).__name__}: {exc}")
        ) from None
    except aiohttp.ClientError as exc:
        raise ProviderBadResponse(
            operator_detail=redact_detail(f"{type(exc).__name__}: {exc}")
        ) from None

    if not 200 <= response.status < 300:
        raise ProviderHTTPError(
            response.status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            operator_detail=error_detail(payload, secrets=(target.api_key,)),
        )
    return parse_completion(payload)


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
