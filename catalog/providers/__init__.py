"""Provider calls: ``complete_chat`` and ``stream_chat``, for every provider.

OpenAI-compatible providers go through a native aiohttp client; the others go
through the litellm SDK. Both return a ChatResult (or StreamChunks) or raise a
ProviderError, which the API renders without naming the provider, its model
or its key.
"""

import logging
from collections.abc import AsyncIterator

from catalog.providers.base import ChatResult, ProviderTarget, StreamChunk
from catalog.providers.errors import (
    ProviderBadResponse,
    ProviderError,
    ProviderHTTPError,
    ProviderNotConfigured,
    ProviderTimeout,
    ProviderUnreachable,
)
from catalog.providers.litellm_sdk import (
    LITELLM_PREFIXES,
    complete_with_litellm,
    stream_with_litellm,
)
from catalog.providers.openai_compatible import (
    OPENAI_COMPATIBLE_PROVIDERS,
    complete_openai_compatible,
    stream_openai_compatible,
)

__all__ = [
    "ChatResult",
    "ProviderBadResponse",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderNotConfigured",
    "ProviderTarget",
    "ProviderTimeout",
    "ProviderUnreachable",
    "StreamChunk",
    "complete_chat",
    "stream_chat",
]

logger = logging.getLogger(__name__)


async def complete_chat(
    target: ProviderTarget, messages: list[dict], params: dict
) -> ChatResult:
    """Send one chat completion to the target's provider.

    ``params`` holds only the optional OpenAI parameters the caller sent; they
    are passed on unchanged and nothing is added. Raises a ProviderError
    subclass on any provider failure, after logging it for operators.
    """
    try:
        if target.provider in OPENAI_COMPATIBLE_PROVIDERS:
            return await complete_openai_compatible(target, messages, params)
        if target.provider in LITELLM_PREFIXES:
            return await complete_with_litellm(target, messages, params)
        raise ProviderNotConfigured(
            operator_detail=f"Unknown provider {target.provider!r}."
        )
    except ProviderError as error:
        log_provider_error(target, error)
        raise


async def stream_chat(
    target: ProviderTarget, messages: list[dict], params: dict
) -> AsyncIterator[StreamChunk]:
    """Stream one chat completion from the target's provider as StreamChunks.

    The provider is always asked for a usage report. Raises a ProviderError
    subclass on any provider failure, before or after the first chunk, after
    logging it for operators. Closing the iterator closes the provider's
    connection.
    """
    if target.provider in OPENAI_COMPATIBLE_PROVIDERS:
        chunks = stream_openai_compatible(target, messages, params)
    elif target.provider in LITELLM_PREFIXES:
        chunks = stream_with_litellm(target, messages, params)
    else:
        error = ProviderNotConfigured(
            operator_detail=f"Unknown provider {target.provider!r}."
        )
        log_provider_error(target, error)
        raise error
    try:
        async for chunk in chunks:
            yield chunk
    except ProviderError as error:
        log_provider_error(target, error)
        raise
    finally:
        await chunks.aclose()


# Failures only an operator can fix, logged as errors rather than warnings.
OPERATOR_ERROR_CODES = frozenset({"provider_auth_failed", "model_unavailable"})


def log_provider_error(target: ProviderTarget, error: ProviderError) -> None:
    level = logging.ERROR if error.code in OPERATOR_ERROR_CODES else logging.WARNING
    logger.log(
        level,
        "Provider call failed: provider=%s model=%s code=%s "
        "upstream_status=%s retryable=%s detail=%s",
        target.provider,
        target.model,
        error.code,
        error.upstream_status,
        error.retryable,
        error.operator_detail,
    )
