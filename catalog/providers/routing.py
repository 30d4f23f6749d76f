"""Retries and fallbacks around provider calls.

A call has an ordered list of candidates: the requested alias first, then its
fallback aliases. Each candidate is tried, and retried on retryable failures
(429, 5xx, timeouts, connection errors) with exponential backoff and full
jitter, up to its own ``max_retries``. When a candidate's retries run out the
next candidate is tried, unless the provider rejected the request itself,
which no other provider would accept either. A stream is retried only until
its first chunk arrives: after that, chunks have reached the team.
"""

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from catalog.providers.base import ChatResult, ProviderTarget, StreamChunk
from catalog.providers.errors import ProviderBadResponse, ProviderError

logger = logging.getLogger(__name__)

# Upper bound of one backoff wait, in seconds.
MAX_BACKOFF_SECONDS = 30.0
# A provider asking to wait longer than this (Retry-After, in seconds) is not
# retried; the next candidate is tried instead.
MAX_RETRY_AFTER_SECONDS = 30
# Error codes after which no other candidate is tried.
FINAL_ERROR_CODES = frozenset({"provider_rejected_request"})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one alias is retried."""

    max_retries: int = 2
    backoff_ms: int = 500

    def delay(self, retry_number: int, retry_after: int | None = None) -> float:
        """Return the seconds to wait before retry ``retry_number`` (from 1).

        The wait is drawn from [0, backoff * 2^(n-1)], capped, and never
        shorter than the provider's Retry-After.
        """
        ceiling = min(
            MAX_BACKOFF_SECONDS, self.backoff_ms / 1000 * 2 ** (retry_number - 1)
        )
        return max(random.uniform(0, ceiling), float(retry_after or 0))


@dataclass(frozen=True)
class Candidate:
    """One alias that can serve a call, with its provider target and policy.

    ``context`` carries whatever the caller needs about the alias (its
    model row and prices) back to the caller with the result.
    """

    alias: str
    target: ProviderTarget
    policy: RetryPolicy = RetryPolicy()
    context: object = field(default=None, compare=False)


@dataclass(frozen=True)
class Routed:
    """The candidate that served a call and the attempts made in all."""

    candidate: Candidate
    attempts: int


class RoutingFailed(Exception):
    """Every candidate failed; ``error`` is the last provider error."""

    def __init__(self, error: ProviderError, *, candidate: Candidate, attempts: int):
        super().__init__(error.code)
        self.error = error
        self.candidate = candidate
        self.attempts = attempts


async def complete_routed(
    candidates: list[Candidate],
    messages: list[dict],
    params: dict,
    complete: Callable[[ProviderTarget, list[dict], dict], Awaitable[ChatResult]],
) -> tuple[ChatResult, Routed]:
    """Return the first successful completion of the candidates, in order.

    Raises RoutingFailed with the last error when all of them fail.
    """

    async def attempt(candidate: Candidate) -> ChatResult:
        return await complete(candidate.target, messages, params)

    return await _route(candidates, attempt)


async def open_routed_stream(
    candidates: list[Candidate],
    messages: list[dict],
    params: dict,
    stream: Callable[[ProviderTarget, list[dict], dict], AsyncIterator[StreamChunk]],
) -> tuple[StreamChunk, AsyncIterator[StreamChunk], Routed]:
    """Open the first candidate stream that yields a chunk.

    Returns that first chunk, the stream to read the rest from, and the
    route. Raises RoutingFailed when no candidate gets to a first chunk.
    """

    async def attempt(candidate: Candidate):
        chunks = stream(candidate.target, messages, params)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            raise ProviderBadResponse(
                operator_detail="The stream ended before its first chunk."
            ) from None
        except BaseException:
            await chunks.aclose()
            raise
        return first, chunks

    (first, chunks), routed = await _route(candidates, attempt)
    return first, chunks, routed


async def _route(candidates: list[Candidate], attempt):
    attempts = 0
    error: ProviderError | None = None
    candidate = candidates[0]
    for position, candidate in enumerate(candidates):
        if position:
            logger.warning(
                "Falling back from alias %s to alias %s after %s",
                candidates[position - 1].alias,
                candidate.alias,
                error.code,
            )
        retry_number = 0
        while True:
            attempts += 1
            try:
                result = await attempt(candidate)
            except ProviderError as exc:
                error = exc
            else:
                return result, Routed(candidate=candidate, attempts=attempts)
            wait = _retry_wait(candidate, error, retry_number + 1)
            if wait is None:
                break
            retry_number += 1
            logger.info(
                "Retrying alias %s in %.2f s (retry %d of %d) after %s",
                candidate.alias,
                wait,
                retry_number,
                candidate.policy.max_retries,
                error.code,
            )
            await asyncio.sleep(wait)
        if error.code in FINAL_ERROR_CODES:
            break
    raise RoutingFailed(error, candidate=candidate, attempts=attempts)


def _retry_wait(candidate: Candidate, error: ProviderError, retry_number: int):
    """Return the wait before the next retry, or None when there is none."""
    if not error.retryable or retry_number > candidate.policy.max_retries:
        return None
    if error.retry_after is not None and error.retry_after > MAX_RETRY_AFTER_SECONDS:
        return None
    return candidate.policy.delay(retry_number, error.retry_after)
