"""Calls to providers without an OpenAI-compatible API, through the litellm SDK.

litellm is imported on the first such call only: the import takes seconds and
about 280 MB, which processes that never call these providers should not pay.
"""

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Iterator
from types import ModuleType

import aiohttp

from catalog.models import Provider
from catalog.providers.base import ChatResult, ProviderTarget, StreamChunk
from catalog.providers.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    ProviderUnreachable,
    parse_retry_after,
    redact_detail,
)

logger = logging.getLogger(__name__)

# litellm's model prefix for each provider it serves for the gateway.
LITELLM_PREFIXES = {
    Provider.ANTHROPIC: "anthropic",
    Provider.GEMINI: "gemini",
    Provider.VERTEX_AI: "vertex_ai",
    Provider.BEDROCK: "bedrock",
    Provider.COHERE: "cohere",
}

_CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "service_callback",
    "_async_input_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


@functools.cache
def load_litellm() -> ModuleType:
    """Import litellm once and switch off its console output and callbacks.

    Settings set LITELLM_LOCAL_MODEL_COST_MAP before this import, so litellm
    reads its bundled price map instead of downloading one. In litellm 1.110.2
    only the proxy server imports the telemetry package, so the SDK sends none.
    """
    import litellm

    litellm.suppress_debug_info = True
    # litellm attaches its own console handler, which prints every record a
    # second time. Records still reach Django's LOGGING handlers by propagation.
    litellm_logger = logging.getLogger("LiteLLM")
    for handler in list(litellm_logger.handlers):
        litellm_logger.removeHandler(handler)
    for name in _CALLBACK_LISTS:
        callbacks = getattr(litellm, name, None)
        if isinstance(callbacks, list):
            callbacks.clear()
    return litellm


async def complete_with_litellm(
    target: ProviderTarget, messages: list[dict], params: dict
) -> ChatResult:
    """Send one chat completion through litellm and map its result and errors."""
    litellm = load_litellm()
    try:
        response = await litellm.acompletion(
            **litellm_arguments(target, messages, params)
        )
    except Exception as exc:
        error = map_litellm_error(exc, target)
        if error is None:
            raise
        raise error from None
    return to_chat_result(response)


async def stream_with_litellm(
    target: ProviderTarget, messages: list[dict], params: dict
) -> AsyncIterator[StreamChunk]:
    """Stream one chat completion through litellm as OpenAI-shaped StreamChunks.

    litellm translates each provider's own events (Anthropic's message
    events, Gemini's candidates) into OpenAI chunks and, with
    ``include_usage``, reports usage on the last one. ``target.timeout``
    bounds each wait for the next chunk.
    """
    litellm = load_litellm()
    stream_params = {
        **params,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    try:
        async with asyncio.timeout(target.timeout):
            response = await litellm.acompletion(
                **litellm_arguments(target, messages, stream_params)
            )
    except TimeoutError:
        raise ProviderTimeout(
            operator_detail=f"No response within {target.timeout} seconds."
        ) from None
    except Exception as exc:
        raise _mapped(exc, target) from None

    iterator = aiter(response)
    try:
        while True:
            try:
                async with asyncio.timeout(target.timeout):
                    chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise ProviderTimeout(
                    operator_detail=f"No stream data within {target.timeout} seconds."
                ) from None
            except Exception as exc:
                raise _mapped(exc, target) from None
            stream_chunk = to_stream_chunk(chunk)
            if stream_chunk is not None:
                yield stream_chunk
    finally:
        await _close_stream(response)


def _mapped(exc: Exception, target: ProviderTarget) -> Exception:
    error = map_litellm_error(exc, target)
    if error is None:
        return exc
    return error


async def _close_stream(response) -> None:
    """Close the provider connection under a litellm stream, if it is open."""
    stream = getattr(response, "completion_stream", None)
    closer = getattr(stream, "aclose", None)
    if closer is None:
        return
    try:
        await closer()
    except Exception:
        logger.debug("Closing a litellm stream failed", exc_info=True)


def litellm_arguments(
    target: ProviderTarget, messages: list[dict], params: dict
) -> dict:
    """Return the keyword arguments of ``litellm.acompletion`` for one call."""
    arguments = {
        **params,
        "model": f"{LITELLM_PREFIXES[target.provider]}/{target.model}",
        "messages": messages,
        "timeout": target.timeout,
        # Retries are the gateway's decision, made on ProviderError.retryable.
        "num_retries": 0,
        "max_retries": 0,
    }
    if target.provider == Provider.VERTEX_AI and target.api_key.lstrip().startswith(
        "{"
    ):
        # A Vertex AI credential stores a service-account JSON document.
        arguments["vertex_credentials"] = target.api_key
    else:
        # NOTE: Bedrock takes this as an API key (bearer token). litellm reads
        # the region from AWS_REGION_NAME or AWS_REGION in the environment,
        # because the credential has no field for it.
        arguments["api_key"] = target.api_key
    if target.api_base:
        arguments["api_base"] = target.api_base
    if target.api_version:
        arguments["api_version"] = target.api_version
    return arguments


def map_litellm_error(exc: Exception, target: ProviderTarget) -> ProviderError | None:
    """Translate a litellm or OpenAI SDK exception; return None for any other.

    litellm 1.110.2 reports a refused connection as a 500 InternalServerError
    and an unreadable body as an APIConnectionError, so the class alone
    misleads. The exceptions it chains from tell what happened: an HTTP
    status error carries the provider's real status and headers.
    """
    import httpx
    import openai

    if not isinstance(exc, openai.OpenAIError):
        return None
    detail = redact_detail(str(exc), secrets=(target.api_key,))
    chain = list(_exception_chain(exc))
    timeout_errors = (TimeoutError, httpx.TimeoutException, openai.APITimeoutError)
    connection_errors = (
        ConnectionError,
        httpx.NetworkError,
        httpx.RemoteProtocolError,
        aiohttp.ClientConnectionError,
    )

    status_error = next(
        (error for error in chain if isinstance(error, httpx.HTTPStatusError)), None
    )
    if status_error is not None:
        headers = status_error.response.headers
        return ProviderHTTPError(
            status_error.response.status_code,
            retry_after=parse_retry_after(headers.get("retry-after")),
            operator_detail=detail,
        )
    if any(isinstance(error, timeout_errors) for error in chain):
        return ProviderTimeout(operator_detail=detail)
    if any(isinstance(error, connection_errors) for error in chain):
        return ProviderUnreachable(operator_detail=detail)
    if isinstance(exc, openai.APIConnectionError | openai.APIResponseValidationError):
        # Connected, but litellm could not parse or translate the response.
        return ProviderBadResponse(operator_detail=detail)

    upstream_status = getattr(exc, "status_code", None)
    if isinstance(upstream_status, int):
        return ProviderHTTPError(upstream_status, operator_detail=detail)
    return ProviderError(operator_detail=detail)


def _exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def to_chat_result(response) -> ChatResult:
    """Map litellm's ModelResponse to a ChatResult with OpenAI-shaped tool calls."""
    try:
        choice = response.choices[0]
        message = choice.message
    except (AttributeError, IndexError, TypeError):
        raise ProviderBadResponse(
            operator_detail="The litellm response has no choices[0].message."
        ) from None

    usage = getattr(response, "usage", None)
    return ChatResult(
        content=message.content,
        finish_reason=choice.finish_reason,
        tool_calls=_tool_calls(getattr(message, "tool_calls", None)),
        prompt_tokens=getattr(usage, "prompt_tokens", None) or 0,
        completion_tokens=getattr(usage, "completion_tokens", None) or 0,
    )


def to_stream_chunk(chunk) -> StreamChunk | None:
    """Map one of litellm's streamed chunks to a StreamChunk; None when it is empty."""
    usage = getattr(chunk, "usage", None)
    tokens = None
    if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
        tokens = (usage.prompt_tokens or 0, usage.completion_tokens or 0)
    choices = getattr(chunk, "choices", None) or []
    delta, finish_reason = {}, None
    if choices:
        choice = choices[0]
        finish_reason = getattr(choice, "finish_reason", None)
        message = getattr(choice, "delta", None)
        if message is not None:
            delta = _stream_delta(message)
    if not delta and finish_reason is None and tokens is None:
        return None
    return StreamChunk(delta=delta, finish_reason=finish_reason, usage=tokens)


def _stream_delta(message) -> dict:
    delta = {}
    for name in ("role", "content", "refusal", "reasoning_content"):
        value = getattr(message, name, None)
        if value is not None:
            delta[name] = value
    tool_calls = getattr(message, "tool_calls", None)
    if tool_calls:
        delta["tool_calls"] = [
            {
                "index": getattr(call, "index", position) or 0,
                **({"id": call.id} if getattr(call, "id", None) else {}),
                **({"type": "function"} if getattr(call, "id", None) else {}),
                "function": {
                    key: value
                    for key, value in (
                        ("name", getattr(call.function, "name", None)),
                        ("arguments", getattr(call.function, "arguments", None)),
                    )
                    if value is not None
                },
            }
            for position, call in enumerate(tool_calls)
        ]
    return delta


def _tool_calls(tool_calls) -> list[dict] | None:
    if not tool_calls:
        return None
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {
                "name": call.function.name,
                "arguments": call.function.arguments,
            },
        }
        for call in tool_calls
    ]
