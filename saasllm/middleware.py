"""Middleware: an ASGI wrapper in front of Django, and Django middleware."""

import asyncio
import logging
from functools import partial

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpResponse
from django.utils.decorators import sync_and_async_middleware

from saasllm import metrics
from saasllm.errors import page_not_found
from saasllm.observability import (
    REQUEST_ID_HEADER,
    RequestContext,
    current_request,
    redact_keys,
    request_id_from_header,
)

request_logger = logging.getLogger("saasllm.requests")

OVERHEAD_HEADER = "X-Gateway-Overhead-Ms"
# Probes and scrapes arrive every few seconds. Their successful requests are
# logged at DEBUG so that they do not drown the other lines.
# The status logged for a client that closed its connection before the
# response started, as nginx logs it.
CLIENT_CLOSED_REQUEST = 499
QUIET_ROUTES = frozenset({"health", "healthz", "readyz", "metrics"})


class RequestBodyLimitMiddleware:
    """Stop reading a request body one byte past DATA_UPLOAD_MAX_MEMORY_SIZE.

    Django's ASGI handler (5.2) reads the whole body into a temporary file
    before any Django middleware runs, and it has no size limit of its own.
    This wrapper hands Django at most the limit plus one byte and then ends
    the body, so an oversized upload costs no memory or disk beyond that.
    When the view reads the body, Django raises RequestDataTooBig and the API
    returns 413 through the usual middleware, CORS headers included. With a
    Content-Length above the limit, no byte of the body reaches Django, and
    the 413 does not wait for the upload.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if scope["type"] != "http" or limit is None:
            return await self.app(scope, receive, send)
        receive = LimitedReceive(receive, limit, scope)
        if is_chunked(scope):
            scope, receive = await with_content_length(scope, receive)
        return await self.app(scope, receive, send)


def is_chunked(scope: dict) -> bool:
    """Return True for a request body sent in chunks, without a Content-Length."""
    headers = dict(scope.get("headers", []))
    return (
        b"content-length" not in headers
        and b"chunked" in headers.get(b"transfer-encoding", b"").lower()
    )


async def with_content_length(scope: dict, receive):
    """Read a chunked body and return a scope with its Content-Length and its replay.

    Django (5.2) reads a request without Content-Length as empty, so a
    chunked body would reach the views as no body at all. ``receive`` is a
    LimitedReceive, so at most the limit plus one byte is read here, and an
    oversized body still gets 413.
    """
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # The client went away, and Django reads the disconnect at once.
            return scope, replay([message], receive)
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(parts)
    headers = [
        (name, value)
        for name, value in scope["headers"]
        if name.lower() != b"transfer-encoding"
    ]
    headers.append((b"content-length", str(len(body)).encode()))
    first = {"type": "http.request", "body": body, "more_body": False}
    return {**scope, "headers": headers}, replay([first], receive)


def replay(messages: list[dict], receive):
    """Return a ``receive`` that returns ``messages`` first, then calls ``receive``."""
    pending = list(messages)

    async def replaying_receive() -> dict:
        if pending:
            return pending.pop(0)
        return await receive()

    return replaying_receive


class LimitedReceive:
    """An ASGI ``receive`` callable that ends the body after ``limit + 1`` bytes."""

    def __init__(self, receive, limit: int, scope: dict):
        self.receive = receive
        self.remaining = limit + 1
        declared = content_length(scope)
        self.is_cut = declared is not None and declared > limit
        self.is_end_sent = False

    async def __call__(self) -> dict:
        if self.is_cut:
            if not self.is_end_sent:
                self.is_end_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return await self.discard_until_disconnect()

        message = await self.receive()
        if message["type"] != "http.request":
            return message
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if len(body) < self.remaining or (
            len(body) == self.remaining and not more_body
        ):
            self.remaining -= len(body)
            return message

        self.is_cut = True
        self.is_end_sent = True
        return {
            "type": "http.request",
            "body": body[: self.remaining],
            "more_body": False,
        }

    async def discard_until_disconnect(self) -> dict:
        """Discard the rest of a cut body and return the next other message.

        Django calls ``receive`` again while the view runs, to notice a
        disconnect, and fails on any further body message.
        """
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                return message


def content_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


@sync_and_async_middleware
def reject_nul_in_path(get_response):
    """Return 404 for a path with a NUL character.

    PostgreSQL rejects NUL in text, so an id containing one would reach the
    database only to fail there with a 500; no object's id contains one.
    """

    def reject(request):
        return "\x00" in request.path

    if iscoroutinefunction(get_response):

        async def middleware(request):
            if reject(request):
                return page_not_found(request)
            return await get_response(request)

    else:

        def middleware(request):
            if reject(request):
                return page_not_found(request)
            return get_response(request)

    return middleware


@sync_and_async_middleware
def observe_requests(get_response):
    """Give each request an id, time it, log one line and count it in the metrics.

    The id comes from a valid X-Request-ID header or is generated, and every
    response carries it back. X-Gateway-Overhead-Ms is the time until the
    response leaves this middleware, minus the time spent waiting on
    providers (``saasllm.observability.add_provider_time``). List this
    middleware first, so that the time covers the other middleware.

    A streaming response is passed on untouched: its headers are set, its
    content is neither read nor wrapped. Its overhead header covers the time
    until its headers are sent, and its log line and metrics are written
    when the server closes the response, with the full duration.
    """

    if iscoroutinefunction(get_response):

        async def middleware(request):
            context, token = start_observing(request)
            try:
                response = await get_response(request)
            except asyncio.CancelledError:
                # The client went away before the response started.
                record_request(
                    request,
                    HttpResponse(status=CLIENT_CLOSED_REQUEST),
                    context,
                    milliseconds(context.overhead_seconds()),
                )
                current_request.reset(token)
                raise
            except BaseException:
                current_request.reset(token)
                raise
            return finish_observing(request, response, context)

    else:

        def middleware(request):
            context, token = start_observing(request)
            try:
                response = get_response(request)
            except BaseException:
                current_request.reset(token)
                raise
            return finish_observing(request, response, context)

    return middleware


def start_observing(request):
    context = RequestContext(
        request_id=request_id_from_header(request.META.get("HTTP_X_REQUEST_ID"))
    )
    request.observability = context
    return context, current_request.set(context)


def finish_observing(request, response, context: RequestContext):
    overhead_ms = milliseconds(context.overhead_seconds())
    response[REQUEST_ID_HEADER] = context.request_id
    response[OVERHEAD_HEADER] = f"{overhead_ms:.1f}"
    if not response.streaming:
        record_request(request, response, context, overhead_ms)

    # The context stays current until the server closes the response:
    # Django logs 4xx and 5xx responses after the middleware has returned,
    # and a stream's code runs then too and may add provider time.
    # NOTE: _resource_closers is Django's private list of callbacks that
    # HttpResponseBase.close() runs (Django 3.0 to 5.2). A streaming response
    # that is never closed writes no log line.
    if response.streaming:
        response._resource_closers.append(
            partial(record_request, request, response, context, overhead_ms)
        )
    response._resource_closers.append(partial(forget_context, context))
    return response


def forget_context(context: RequestContext) -> None:
    # Under WSGI the server closes the response on the request's thread,
    # whose context would otherwise keep the id for the next log records.
    # Under ASGI close() runs in another context, where this does nothing.
    if current_request.get() is context:
        current_request.set(None)


def record_request(request, response, context: RequestContext, overhead_ms: float):
    """Write the request's log line and count it in the metrics."""
    elapsed = context.elapsed_seconds()
    route = route_name(request)
    metrics.count_request(
        route=route, method=request.method, status=response.status_code, seconds=elapsed
    )
    metrics.refresh_database_pool_gauges()

    duration_ms = milliseconds(elapsed)
    level = logging.INFO
    if route in QUIET_ROUTES and response.status_code < 400:
        level = logging.DEBUG
    request_logger.log(
        level,
        "%s %s %s %.1f ms",
        request.method,
        route,
        response.status_code,
        duration_ms,
        extra={
            "request_id": context.request_id,
            "method": request.method,
            "route": route,
            # A client may put a whole key in the URL instead of its prefix.
            "path": redact_keys(request.path),
            "status": response.status_code,
            "duration_ms": duration_ms,
            "overhead_ms": overhead_ms,
            "provider_ms": milliseconds(context.provider_seconds),
            "team_id": context.team_id,
            "key_prefix": context.key_prefix,
            "alias": context.alias,
            "tokens": context.tokens,
            "streaming": response.streaming,
        },
    )


def route_name(request) -> str:
    """Return the matched URL pattern's name, or "unmatched" for an unknown path.

    Metrics use this instead of the path, whose ids would create a series
    per job.
    """
    match = getattr(request, "resolver_match", None)
    return match.view_name if match is not None else "unmatched"


def milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 1)
