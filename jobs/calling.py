"""The provider step of the call path: routed calls and relayed streams.

Everything here runs on the event loop between the two database steps of
``jobs.services`` (``prepare_call`` before, ``record_call`` after). Database
work happens only in ``database_step`` calls, and a call that ends in any way,
a client disconnect included, is taken out of flight.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from django.conf import settings
from django.http import StreamingHttpResponse

from catalog.providers import ProviderError, StreamChunk, complete_chat, stream_chat
from catalog.providers.accumulator import StreamAccumulator
from catalog.providers.routing import (
    Routed,
    RoutingFailed,
    complete_routed,
    open_routed_stream,
)
from catalog.providers.sse import encode_event
from jobs import services
from jobs.serializers import LLMCallSerializer
from jobs.services import CallContext, CallOutcome
from saasllm import metrics, observability, shutdown
from saasllm.api_handler import database_step

DONE_EVENT = b"data: [DONE]\n\n"


def request_data(serializer: LLMCallSerializer) -> dict | None:
    """Return the request body to store on the call, when bodies are stored."""
    if not settings.STORE_CALL_BODIES:
        return None
    return {
        "messages": serializer.validated_data["messages"],
        **serializer.provider_params(),
    }


def record_fields(serializer: LLMCallSerializer) -> dict:
    """Return the call's purpose and stored request body, for recording the call."""
    return {
        "purpose": serializer.validated_data.get("purpose", ""),
        "request_data": request_data(serializer),
    }


def size_of(data: dict) -> services.CallSize:
    return services.CallSize.of(data["messages"], data.get("max_tokens"))


def elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


async def call_provider(
    context: CallContext, messages: list[dict], params: dict
) -> CallOutcome:
    """Await a routed provider call and return how it ended.

    A call that ends any other way (the client went away, a bug) is taken
    out of flight before the exception propagates.
    """
    started = time.monotonic()
    metrics.calls_in_flight.inc()
    try:
        with shutdown.provider_wait():
            result, routed = await complete_routed(
                context.candidates, messages, params, complete_chat
            )
    except RoutingFailed as failed:
        record_provider_wait(context, started, failed.error.code)
        return CallOutcome(
            latency_ms=elapsed_ms(started),
            error=failed.error,
            served_by=failed.candidate,
            attempts=failed.attempts,
        )
    except BaseException as exc:
        if is_shutdown(exc):
            return stopped_outcome(context, started)
        record_provider_wait(context, started, "cancelled")
        await _abandon(context)
        raise
    finally:
        metrics.calls_in_flight.dec()
    record_provider_wait(context, started, None)
    return CallOutcome(
        latency_ms=elapsed_ms(started),
        result=result,
        served_by=routed.candidate,
        attempts=routed.attempts,
    )


def is_shutdown(exc: BaseException) -> bool:
    """Return True when ``exc`` is the cancellation of the shutdown deadline.

    The cancellation is then cleared, so the call path can record the call
    and respond.
    """
    return isinstance(exc, asyncio.CancelledError) and shutdown.absorb_cancellation()


def stopped_outcome(context: CallContext, started: float, **fields) -> CallOutcome:
    """Return the failed outcome of a call that shutdown cancelled."""
    record_provider_wait(context, started, shutdown.GatewayShutdown.code)
    return CallOutcome(
        latency_ms=elapsed_ms(started),
        error=shutdown.GatewayShutdown(),
        served_by=context.candidates[0],
        **fields,
    )


def record_provider_wait(
    context: CallContext, started: float, error_code: str | None
) -> None:
    """Count the time since ``started`` as provider time, in logs and metrics."""
    seconds = time.monotonic() - started
    observability.add_provider_time(seconds)
    metrics.observe_provider_call(context.alias.alias, seconds, error_code)


async def _abandon(context: CallContext) -> None:
    # Shielded so that a cancellation cannot skip it.
    await asyncio.shield(database_step(services.abandon_call, context=context))


@dataclass
class OpenedStream:
    """A provider stream whose first chunk has arrived."""

    first: StreamChunk
    chunks: AsyncIterator[StreamChunk]
    routed: Routed
    started: float
    alias: str


async def open_stream(
    context: CallContext, messages: list[dict], params: dict
) -> OpenedStream | CallOutcome:
    """Open a routed stream, retrying and falling back until a first chunk arrives.

    Returns the failed CallOutcome when no candidate got that far, so the
    caller can record the call and return an ordinary error response.
    """
    started = time.monotonic()
    try:
        with shutdown.provider_wait():
            first, chunks, routed = await open_routed_stream(
                context.candidates, messages, params, stream_chat
            )
    except RoutingFailed as failed:
        record_provider_wait(context, started, failed.error.code)
        return CallOutcome(
            latency_ms=elapsed_ms(started),
            error=failed.error,
            served_by=failed.candidate,
            attempts=failed.attempts,
            streamed=True,
        )
    except BaseException as exc:
        if is_shutdown(exc):
            return stopped_outcome(context, started, streamed=True)
        record_provider_wait(context, started, "cancelled")
        await _abandon(context)
        raise
    # The wait for the first chunk counts as provider time; the rest of the
    # stream's duration is recorded when the stream ends.
    observability.add_provider_time(time.monotonic() - started)
    return OpenedStream(
        first=first,
        chunks=chunks,
        routed=routed,
        started=started,
        alias=context.alias.alias,
    )


class ChunkFormatter:
    """OpenAI ``chat.completion.chunk`` objects under the gateway's own id.

    ``model`` is the alias the team requested, so nothing names the provider
    or its model.
    """

    def __init__(self, model: str):
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _base(self, choices: list) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def chunk(self, chunk: StreamChunk) -> dict:
        return self._base(
            [
                {
                    "index": 0,
                    "delta": chunk.delta,
                    "finish_reason": chunk.finish_reason,
                }
            ]
        )

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict:
        return {
            **self._base([]),
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def error_event(error: ProviderError) -> bytes:
    """Encode the one event that ends a stream broken by a provider error."""
    return encode_event(
        {"error": {"message": error.message, "type": "api_error", "code": error.code}}
    )


# Called once when a relayed stream ends, successfully or not, to record the
# call; returns events to send before the stream's final [DONE].
FinishStream = Callable[[CallOutcome], Awaitable[list[bytes]]]


async def relay_stream(
    opened: OpenedStream,
    *,
    messages: list[dict],
    formatter: ChunkFormatter,
    include_usage: bool,
    finish: FinishStream,
) -> AsyncIterator[bytes]:
    """Relay provider chunks as server-sent events, one event per chunk.

    Each chunk is sent the moment it arrives. When the provider finishes,
    the call is recorded first, then the usage chunk (if the client asked
    for it), the events ``finish`` returns and ``[DONE]`` are sent. A
    provider error mid-stream records a failed call with the tokens so far
    and sends one error event. A client that goes away closes this
    generator, which closes the provider's connection and records the call
    with its usage so far.
    """
    accumulator = StreamAccumulator()
    error_code = None
    metrics.calls_in_flight.inc()

    def outcome(**fields) -> CallOutcome:
        result, estimated = accumulator.result(messages)
        return CallOutcome(
            latency_ms=elapsed_ms(opened.started),
            result=result,
            served_by=opened.routed.candidate,
            attempts=opened.routed.attempts,
            streamed=True,
            usage_estimated=estimated,
            **fields,
        )

    try:
        chunk = opened.first
        while True:
            accumulator.add(chunk)
            if chunk.delta or chunk.finish_reason is not None:
                yield encode_event(formatter.chunk(chunk))
            waited = time.monotonic()
            try:
                with shutdown.provider_wait():
                    chunk = await anext(opened.chunks)
            except StopAsyncIteration:
                break
            finally:
                observability.add_provider_time(time.monotonic() - waited)
    except ProviderError as error:
        error_code = error.code
        await finish(outcome(error=error))
        yield error_event(error)
        return
    except BaseException as exc:
        # Stop the provider first: its tokens now cost without a reader.
        await opened.chunks.aclose()
        if not is_shutdown(exc):
            error_code = "cancelled"
            await asyncio.shield(finish(outcome(client_disconnected=True)))
            raise
        # Shutdown ended the stream: record it as failed and tell the client.
        error = shutdown.GatewayShutdown()
        error_code = error.code
        await finish(outcome(error=error))
        yield error_event(error)
        return
    finally:
        await opened.chunks.aclose()
        metrics.calls_in_flight.dec()
        metrics.observe_provider_call(
            opened.alias, time.monotonic() - opened.started, error_code
        )

    final = outcome()
    trailing = await finish(final)
    if include_usage:
        usage = formatter.usage(
            final.result.prompt_tokens, final.result.completion_tokens
        )
        yield encode_event(usage)
    for event in trailing:
        yield event
    yield DONE_EVENT


def event_stream_response(
    events: AsyncIterator[bytes], **headers
) -> StreamingHttpResponse:
    """Wrap server-sent events in a response that nothing along the way buffers."""
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # nginx and similar proxies buffer responses unless this header is "no".
    response["X-Accel-Buffering"] = "no"
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


async def stream_reply(
    context: CallContext,
    messages: list[dict],
    params: dict,
    *,
    include_usage: bool,
    finish: FinishStream,
    **headers,
) -> StreamingHttpResponse:
    """Open the provider stream and return the response that relays it.

    When no candidate produces a first chunk, ``finish`` records the failed
    call and its ProviderError is raised, for an ordinary error response.
    """
    opened = await open_stream(context, messages, params)
    if isinstance(opened, CallOutcome):
        await finish(opened)
        raise opened.error

    events = relay_stream(
        opened,
        messages=messages,
        formatter=ChunkFormatter(context.alias.alias),
        include_usage=include_usage,
        finish=finish,
    )
    return event_stream_response(events, **headers)
